"""Performance evaluation (绩效评估): indicators and scores per department, item and handler,
per month, quarter, half-year and year (domain.md). Pure: replay and the worker feed the
same :class:`IndicatorBook`; the worker keeps its accumulators in a Faust table.

What is counted, per scope and **month** (local time of the instant that counts):

- ``received``: cases submitted (first ``submitted``); ``accepted``: first ``accepted``
  (an acceptance deemed by Art. 32 has no event and is not counted); ``decided``: first
  ``decided`` — by the handling department (the item's), the item, and the handler who
  took the step (``department/actor``);
- for each decision with a decision clock (``timed``): the counted working days from the
  clock start to the decision (start day not counted, Art. 45 suspensions left out, as
  the deadline rules count them): ``on_time`` (within the promised limit), ``early``
  (within ``early_share`` of it), ``overdue`` (beyond the legal limit plus a regular
  extension); their sum (mean) and a histogram in hundredths of a working day (p90,
  nearest rank: exact to 0.01 day and bounded however many cases a month has);
- ``supplement``: cases with a correction notice (first ``supplement_requested``);
- alerts by rule and severity, in the month of their ``event_time`` (department, item,
  handler = the alert's ``actor``); every version counts: an escalated alert was counted
  as red when it was raised and counts as escalated when it escalates; a retracted alert
  counts no more (its retraction takes its versions back);
- ``complaints``: complaints received about the department (and item, when named).

Rates are fractions (0–1) of ``timed`` decisions (on-time, early, overdue) or of the cases
received (supplement rate; complaints per 1,000 cases received). The score follows
``scoring`` in the rule set (``rules/ruleset/scoring.yaml``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jiancha.producers.contract import Alert, Step

from .case import CaseState, StepEvent
from .checks.deadlines import legal_deadline, regular_extension
from .counted_time import DAY
from .memo import BoundedMemo
from .rulebook import RuleSet, RuleSetError

Kind = Literal["department", "item", "handler"]
KINDS: tuple[Kind, ...] = ("department", "item", "handler")
#: (month "YYYY-MM", scope kind, scope name)
Key = tuple[str, str, str]
HUNDREDTH = DAY / 100  # 864 s: the histogram's resolution


# --- scoring configuration --------------------------------------------------------------


class Deduction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: float = Field(ge=0)
    cap_per_month: float | None = Field(None, ge=0)


class Bonus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: float = Field(1, ge=0)
    step: float = Field(0.10, gt=0, le=1)
    cap: float = Field(5, ge=0)


class ScoringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: float = 100
    min_score: float = 0
    max_score: float | None = 100
    early_share: float = Field(0.5, gt=0, le=1)
    deductions: dict[Literal["yellow", "red", "escalated"], Deduction] = Field(
        default_factory=lambda: {"yellow": Deduction(points=5, cap_per_month=20),
                                 "red": Deduction(points=10), "escalated": Deduction(points=15)})
    bonus: Bonus = Field(default_factory=Bonus)
    rule_points: dict[str, dict[Literal["yellow", "red", "escalated"], float]] = Field(
        default_factory=dict)

    @classmethod
    def from_ruleset(cls, rs: RuleSet) -> ScoringConfig:
        try:
            return cls.model_validate(rs.scoring or {})
        except ValidationError as exc:
            problems = "; ".join(f"scoring.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                 for e in exc.errors())
            raise RuleSetError(problems) from None

    def points(self, rule: str, severity: str) -> float:
        override = self.rule_points.get(rule, {})
        if severity in override:
            return override[severity]  # type: ignore[index]
        d = self.deductions.get(severity)  # type: ignore[call-overload]
        return d.points if d is not None else 0.0


# --- the accumulator ------------------------------------------------------------------


_ENCODED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


@dataclass
class Acc:
    """The counts of one scope in one month (merged over partitions and months)."""

    received: int = 0
    accepted: int = 0
    decided: int = 0
    timed: int = 0
    on_time: int = 0
    early: int = 0
    overdue: int = 0
    seconds: int = 0  # counted working seconds to decision, summed over timed decisions
    days: dict[int, int] = field(default_factory=dict)  # hundredths of a working day -> n
    supplement: int = 0
    complaints: int = 0
    alerts: dict[str, dict[str, int]] = field(default_factory=dict)  # rule -> severity -> n

    _INTS = ("received", "accepted", "decided", "timed", "on_time", "early", "overdue",
             "seconds", "supplement", "complaints")

    def merge(self, other: Acc) -> Acc:
        for name in self._INTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, n in other.days.items():
            self.days[k] = self.days.get(k, 0) + n
        for rule, by_sev in other.alerts.items():
            mine = self.alerts.setdefault(rule, {})
            for sev, n in by_sev.items():
                mine[sev] = mine.get(sev, 0) + n
        return self

    def severity(self, severity: str) -> int:
        return sum(by.get(severity, 0) for by in self.alerts.values())

    def encode(self) -> bytes:
        """JSON, keys sorted, counts of zero left out; the histogram's keys written as
        strings (and sorted as strings) by orjson itself."""
        fields = self.__dict__
        d: dict[str, Any] = {n: fields[n] for n in self._INTS if fields[n]}
        if self.days:
            d["days"] = self.days
        if self.alerts:
            d["alerts"] = self.alerts
        return orjson.dumps(d, option=_ENCODED)

    @classmethod
    def decode(cls, raw: bytes | str) -> Acc:
        d = orjson.loads(raw)
        acc = cls(**{n: int(d.get(n, 0)) for n in cls._INTS})
        acc.days = {int(k): int(v) for k, v in (d.get("days") or {}).items()}
        acc.alerts = {r: {s: int(n) for s, n in by.items()} for r, by in (d.get("alerts") or {}).items()}
        return acc

    def p90_days(self) -> float | None:
        """The 90th percentile (nearest rank) of the counted days, to 0.01 day."""
        total = sum(self.days.values())
        if not total:
            return None
        rank = math.ceil(0.9 * total)
        seen = 0
        for k in sorted(self.days):
            seen += self.days[k]
            if seen >= rank:
                return k / 100
        raise AssertionError("unreachable")


# --- feeding ----------------------------------------------------------------------------


_QUARTER_HOUR = 900


def _month_of_quarter(key: tuple[int, Any]) -> str | None:
    """The local month of a quarter hour (bucket, zone), None where it straddles two."""
    bucket, tz = key
    first = bucket * _QUARTER_HOUR
    month = datetime.fromtimestamp(first, tz).strftime("%Y-%m")
    last = datetime.fromtimestamp(first + _QUARTER_HOUR - 1e-3, tz).strftime("%Y-%m")
    return month if month == last else None


_QUARTERS: BoundedMemo[tuple[int, Any], str | None] = BoundedMemo(_month_of_quarter, 100_000)


def month_of(instant: datetime | float, tz: Any) -> str:
    """The local month (``YYYY-MM``) of an instant. Asked for nearly every event: kept per
    quarter hour, where the whole quarter hour lies in one month (every zone's offset
    since long is a multiple of 15 minutes; a quarter hour that straddles two months in
    some zone is computed for each instant)."""
    ts = instant.timestamp() if isinstance(instant, datetime) else instant
    month = _QUARTERS[(int(ts // _QUARTER_HOUR), tz)]
    return month if month is not None else datetime.fromtimestamp(ts, tz).strftime("%Y-%m")


#: the steps an event counts in the indicators with (the first of its kind in a case)
_COUNTED = frozenset({Step.submitted, Step.accepted, Step.decided, Step.supplement_requested})
#: the same, read once (an enum's member read from its class costs ten times a global's)
_SUBMITTED, _ACCEPTED, _SUPPLEMENT_REQUESTED = (Step.submitted, Step.accepted,
                                                Step.supplement_requested)

#: rules whose event time is an instant in a window (its start; for a burst the decision
#: that took the count above the limit), not a deadline
_AT_START = frozenset({"actor.burst", "department.denial_spike"})
_TICK = timedelta(microseconds=1)


def alert_month(alert: Alert, tz: Any) -> str:
    """The month an alert counts in: that of its event time, where a deadline at exactly
    00:00 is the end (24:00) of the day before (a limit ending on 30 November counts in
    November)."""
    at = alert.event_time if alert.rule in _AT_START else alert.event_time - _TICK
    return month_of(at, tz)


def alert_scopes(alert: Alert) -> list[tuple[Kind, str]]:
    """Where an alert counts: its department, its item, and its handler (the actor)."""
    dept = alert.department
    scopes: list[tuple[Kind, str | None]] = [
        ("department", dept), ("item", alert.item_code),
        ("handler", f"{dept}/{alert.actor}" if dept and alert.actor and alert.actor != "applicant"
         else None)]
    return [(kind, name) for kind, name in scopes if name]


def alert_counts(alert: Alert) -> tuple[tuple[str, ...], int]:
    """The severities an alert version changes the counts of, and by how much: +1 for
    its own severity; a retraction takes back what its earlier versions counted, the red
    and, when it had escalated, the escalation (-1 each)."""
    if alert.status != "retracted":
        return (alert.severity,), 1
    return (("red", "escalated") if alert.severity == "escalated" else (alert.severity,)), -1


def alert_tally(alert: Alert, tz: Any) -> tuple[str, list[str], int]:
    """An alert version's change of the alert counts as the alert store keeps it beside
    the alert itself, so that each version counts exactly once however often it is
    delivered: (month, fields ``[kind, name, rule, severity]`` as JSON, step)."""
    severities, step = alert_counts(alert)
    fields = [orjson.dumps([kind, name, alert.rule, severity]).decode()
              for kind, name in alert_scopes(alert) for severity in severities]
    return alert_month(alert, tz), fields, step


def merge_tally(month: str, fields: Mapping[bytes | str, bytes | str | int],
                into: dict[Key, Acc]) -> dict[Key, Acc]:
    """Add a month's alert tally (the hash :func:`alert_tally` fields count in) to the
    accumulators ``into``."""
    for raw_field, raw_value in fields.items():
        kind, name, rule, severity = orjson.loads(raw_field)
        by = into.setdefault((month, kind, name), Acc()).alerts.setdefault(rule, {})
        by[severity] = by.get(severity, 0) + int(raw_value)
    return into


class Counted(NamedTuple):
    """What one event adds to the indicators (:meth:`IndicatorBook.counted`): one more
    ``attr`` in each named scope of ``month``; a decision with its ``timing`` (counted
    seconds, on time, early, overdue) when its clock start is known."""

    month: str
    scopes: tuple[tuple[str, str | None], ...]
    attr: str
    timing: tuple[int, bool, bool, bool] | None = None


class IndicatorBook:
    """Accumulators by (month, kind, name). :meth:`acc` is the storage: a dict here, a
    Faust table in the worker (which sets :attr:`partition` before each call)."""

    def __init__(self, engine: Any, store: MutableMapping[Key, Acc] | None = None) -> None:
        self.engine = engine
        self.catalog = engine.catalog
        self.wt = engine.working_time
        self.scoring = ScoringConfig.from_ruleset(engine.ruleset)
        self.store: MutableMapping[Key, Acc] = store if store is not None else {}
        self.partition = -1

    # storage hook
    def acc(self, key: Key) -> Acc:
        """The accumulator of ``key``, created if new, to be changed in place."""
        acc = self.store.get(key)
        if acc is None:
            acc = self.store[key] = Acc()
        return acc

    def _count(self, month: str, scopes: Iterable[tuple[str, str | None]], attr: str) -> None:
        """One more of ``attr`` (a count of :class:`Acc`) in each named scope (per event:
        no keyword dictionary, no dispatch on what is counted)."""
        for kind, name in scopes:
            if name:
                acc = self.acc((month, kind, name))
                setattr(acc, attr, getattr(acc, attr) + 1)

    def _decided(self, month: str, scopes: Iterable[tuple[str, str | None]],
                 timing: tuple[int, bool, bool, bool]) -> None:
        """A timed decision in each named scope (per decision: its fields by name)."""
        seconds, on_time, early, overdue = timing
        hundredths = round(seconds / HUNDREDTH)
        for kind, name in scopes:
            if name:
                acc = self.acc((month, kind, name))
                acc.decided += 1
                acc.timed += 1
                acc.seconds += seconds
                acc.on_time += on_time
                acc.early += early
                acc.overdue += overdue
                days = acc.days
                days[hundredths] = days.get(hundredths, 0) + 1

    def on_event(self, event: StepEvent, state: CaseState) -> None:
        """After an accepted event was added to its case (and evaluated): ``state`` ends
        with its fact."""
        counted = self.counted(event, state)
        if counted is not None:
            self.add(counted)

    def counted(self, event: StepEvent, state: CaseState) -> Counted | None:
        """What :meth:`on_event` adds for the event, read from ``state`` and recorded
        nowhere (None: nothing): the worker reads it as the event is judged, while
        ``state`` is just as the event left it, and adds it once the batch's alerts are
        stored."""
        step = event.step
        if step not in _COUNTED:
            return None
        facts = state.facts
        last = facts[-1] if facts else None
        if last is not None and last.event_id == event.event_id and last.department == event.department:
            for f in facts:
                if f.step is step and f is not last:
                    return None  # only the first of its kind counts
            at = last.at
        else:  # (not a state that ends with the event: counted by its kind all the same)
            if sum(1 for f in facts if f.step is step) != 1:
                return None
            at = event.occurred_at.timestamp()
        item = self.catalog[state.item_code]
        dept = item.department
        month = month_of(at, self.wt.tz)
        if step is _SUBMITTED:
            return Counted(month, (("department", dept), ("item", item.code)), "received")
        if step is _SUPPLEMENT_REQUESTED:
            return Counted(month, (("department", dept), ("item", item.code)), "supplement")
        actor = event.actor
        scopes = (("department", dept), ("item", item.code),
                  ("handler", f"{dept}/{actor}" if actor and actor != "applicant" else None))
        if step is _ACCEPTED:
            return Counted(month, scopes, "accepted")
        return Counted(month, scopes, "decided", self.timing(state, at))

    def add(self, counted: Counted) -> None:
        """Add what :meth:`counted` read."""
        if counted.timing is None:
            self._count(counted.month, counted.scopes, counted.attr)
        else:
            self._decided(counted.month, counted.scopes, counted.timing)

    def timing(self, state: CaseState, decided_at: float) -> tuple[int, bool, bool, bool] | None:
        """(counted working seconds, on time, early, beyond the legal limit) of a decision
        (``decided_at``: epoch seconds)."""
        view = self.engine.view(state)
        start = view.clock_start_at
        if start is None:
            return None
        seconds = round(self.wt.counted_seconds_at(start[0], decided_at, view.pauses_at))
        item = view.item
        ext = regular_extension(view)
        extension = int(ext.attrs["days"]) if ext is not None else 0
        if item.legal_unit == "calendar":  # not a number of working seconds: its end instant
            end = legal_deadline(view, extension)
            overdue = end is not None and decided_at > end
        else:
            overdue = seconds > (item.legal_days + extension) * DAY
        promised = item.promised_days * DAY
        return (seconds, seconds <= promised, seconds <= self.scoring.early_share * promised,
                overdue)

    def on_alert(self, alert: Alert) -> None:
        """Every alert version stored anew (new, escalated or retracted; not a repeat)."""
        month = alert_month(alert, self.wt.tz)
        severities, step = alert_counts(alert)
        for kind, name in alert_scopes(alert):
            by = self.acc((month, kind, name)).alerts.setdefault(alert.rule, {})
            for severity in severities:
                by[severity] = by.get(severity, 0) + step

    def on_complaint(self, department: str | None, item_code: str | None, received_at: float) -> None:
        """A complaint seen for the first time."""
        self._count(month_of(received_at, self.wt.tz),
                    (("department", department), ("item", item_code)), "complaints")

    def snapshot(self) -> dict[Key, Acc]:
        return dict(self.store)


# --- periods and reports ------------------------------------------------------------------


class PeriodError(ValueError):
    pass


def period_months(period: str) -> list[str]:
    """``2026-11`` (month), ``2026-Q4`` (quarter), ``2026-H2`` (half-year), ``2026`` (year)."""
    p = period.strip().upper()
    try:
        if len(p) == 4 and p.isdigit():
            return [f"{p}-{m:02d}" for m in range(1, 13)]
        year, rest = p.split("-", 1)
        if not (len(year) == 4 and year.isdigit()):
            raise ValueError
        if rest.startswith("Q") and rest[1:] in ("1", "2", "3", "4"):
            q = int(rest[1:])
            return [f"{year}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)]
        if rest.startswith("H") and rest[1:] in ("1", "2"):
            h = int(rest[1:])
            return [f"{year}-{m:02d}" for m in range(6 * h - 5, 6 * h + 1)]
        if len(rest) == 2 and rest.isdigit() and 1 <= int(rest) <= 12:
            return [f"{year}-{rest}"]
    except ValueError:
        pass
    raise PeriodError(f"period {period!r}: expected YYYY-MM, YYYY-Qn, YYYY-Hn or YYYY")


def current_periods(now: datetime, tz: Any) -> list[str]:
    """The periods an evaluator watches at ``now``: this and last month, this and last
    quarter, this half-year and this year."""
    loc = now.astimezone(tz)
    y, m = loc.year, loc.month
    py, pm = (y, m - 1) if m > 1 else (y - 1, 12)
    q = (m - 1) // 3 + 1
    pqy, pq = (y, q - 1) if q > 1 else (y - 1, 4)
    out = [f"{y}-{m:02d}", f"{py}-{pm:02d}", f"{y}-Q{q}", f"{pqy}-Q{pq}",
           f"{y}-H{1 if m <= 6 else 2}", f"{y}"]
    return list(dict.fromkeys(out))


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def score_parts(acc: Acc, cfg: ScoringConfig) -> dict[str, float]:
    """A month's score in its parts, which sum to :func:`month_score`: the start, minus the
    deductions per severity (after their monthly caps), plus the early-decision bonus, plus
    ``clamp`` (what the score's bounds take or give back, mostly 0)."""
    deductions: dict[str, float] = {}
    for severity, d in cfg.deductions.items():
        points = sum(cfg.points(rule, severity) * by.get(severity, 0) for rule, by in acc.alerts.items())
        if d.cap_per_month is not None:
            points = min(points, d.cap_per_month)
        deductions[severity] = points
    # rules with per-rule points but a severity without a deduction entry
    for rule, by in acc.alerts.items():
        for severity, n in by.items():
            if severity not in cfg.deductions:
                deductions[severity] = deductions.get(severity, 0.0) + cfg.points(rule, severity) * n
    bonus = 0.0
    if acc.timed:
        steps = math.floor(Fraction(acc.early, acc.timed) / Fraction(str(cfg.bonus.step)))
        bonus = min(cfg.bonus.cap, steps * cfg.bonus.points)
    raw = cfg.start - sum(deductions.values()) + bonus
    score = raw if cfg.max_score is None else min(raw, cfg.max_score)
    score = round(max(cfg.min_score, score), 2)
    return {"start": cfg.start, **{f"deduction_{s}": -p for s, p in deductions.items()},
            "bonus": bonus, "clamp": round(score - raw, 2), "score": score}


def month_score(acc: Acc, cfg: ScoringConfig) -> float:
    return score_parts(acc, cfg)["score"]


def mean_parts(monthly: list[dict[str, float]]) -> dict[str, float]:
    """The parts of a period's score (the mean of its monthly scores): the mean of each
    part, ``clamp`` taking the rounding so that the parts still sum to the score."""
    names = list(dict.fromkeys(k for parts in monthly for k in parts))
    out = {k: round(sum(p.get(k, 0.0) for p in monthly) / len(monthly), 2) for k in names}
    out["clamp"] = round(out["score"] - sum(v for k, v in out.items() if k not in ("score", "clamp")), 2)
    return out


INDICATORS = ("received", "accepted", "decided", "on_time_rate", "early_rate", "overdue_rate",
              "mean_days", "p90_days", "yellow", "red", "escalated", "complaints",
              "complaints_per_1000", "supplement_rate")


def indicator_values(acc: Acc) -> dict[str, Any]:
    return {
        "received": acc.received, "accepted": acc.accepted, "decided": acc.decided,
        "timed": acc.timed, "on_time": acc.on_time, "early": acc.early, "overdue": acc.overdue,
        "on_time_rate": _rate(acc.on_time, acc.timed), "early_rate": _rate(acc.early, acc.timed),
        "overdue_rate": _rate(acc.overdue, acc.timed),
        "mean_days": round(acc.seconds / acc.timed / DAY, 2) if acc.timed else None,
        "p90_days": acc.p90_days(),
        "yellow": acc.severity("yellow"), "red": acc.severity("red"),
        "escalated": acc.severity("escalated"),
        "complaints": acc.complaints,
        "complaints_per_1000": round(1000 * acc.complaints / acc.received, 2) if acc.received else None,
        "supplement_cases": acc.supplement,
        "supplement_rate": _rate(acc.supplement, acc.received),
    }


def report_rows(accs: Mapping[Key, Acc], period: str, kind: str, cfg: ScoringConfig,
                catalog: Any = None, scope: str | None = None, department: str | None = None,
                ) -> list[dict[str, Any]]:
    """One row per scope of ``kind`` active in ``period``, ranked: score (best first),
    then on-time rate, then name. ``department`` keeps the scopes of one department."""
    months = period_months(period)
    wanted = set(months)
    per_scope: dict[str, dict[str, Acc]] = {}
    for (month, k, name), acc in accs.items():
        if k != kind or month not in wanted or (scope is not None and name != scope):
            continue
        per_scope.setdefault(name, {}).setdefault(month, Acc()).merge(acc)
    rows = []
    for name, by_month in per_scope.items():
        dept = _department_of(kind, name, catalog)
        if department is not None and dept != department:
            continue
        total = Acc()
        for acc in by_month.values():
            total.merge(acc)
        monthly = [score_parts(by_month[m], cfg) for m in months if m in by_month]
        row: dict[str, Any] = {"period": period, "scope": kind, "name": name, "department": dept}
        if kind == "department" and catalog is not None and name in catalog.departments:
            row["name_zh"] = catalog.departments[name].name_zh
        elif kind == "item" and catalog is not None and name in catalog:
            row["name_zh"] = catalog[name].name_zh
        row.update(indicator_values(total))
        row["score"] = round(sum(p["score"] for p in monthly) / len(monthly), 2) if monthly else None
        if monthly:
            row["score_parts"] = {k: v for k, v in mean_parts(monthly).items() if k != "score"}
        row["months"] = len(monthly)
        rows.append(row)
    rows.sort(key=lambda r: (-(r["score"] if r["score"] is not None else -1),
                             -(r["on_time_rate"] if r["on_time_rate"] is not None else -1), r["name"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def _department_of(kind: str, name: str, catalog: Any) -> str | None:
    if kind == "department":
        return name
    if kind == "handler":
        return name.partition("/")[0]
    if catalog is not None and name in catalog:
        return str(catalog[name].department)
    return None


def full_report(accs: Mapping[Key, Acc], cfg: ScoringConfig, catalog: Any = None) -> dict[str, Any]:
    """Every period with data (months, quarters, half-years, years) and every scope kind:
    what ``jiancha replay --indicators OUT.json`` writes."""
    months = sorted({k[0] for k in accs})
    periods: list[str] = []
    for m in months:
        y, mm = m.split("-")
        q, h = (int(mm) - 1) // 3 + 1, 1 if int(mm) <= 6 else 2
        periods += [m, f"{y}-Q{q}", f"{y}-H{h}", y]
    periods = sorted(dict.fromkeys(periods), key=_period_order)
    return {"periods": {p: {kind: report_rows(accs, p, kind, cfg, catalog) for kind in KINDS}
                        for p in periods}}


def _period_order(p: str) -> tuple[str, int, str]:
    """Within a year: months, then quarters, half-years, the year."""
    rank = 3 if len(p) == 4 else 1 if "-Q" in p else 2 if "-H" in p else 0
    return (p[:4], rank, p)


# --- wire form (Redis mirror, HTTP API) -----------------------------------------------------


def encode_field(kind: str, name: str, partition: int) -> bytes:
    return orjson.dumps([kind, name, partition])


def merge_fields(month: str, fields: Mapping[bytes | str, bytes | str]) -> dict[Key, Acc]:
    """Merge the per-partition accumulators of one month (the Redis hash of that month)."""
    out: dict[Key, Acc] = {}
    for raw_field, raw_value in fields.items():
        kind, name, _ = orjson.loads(raw_field)
        key = (month, kind, name)
        out.setdefault(key, Acc()).merge(Acc.decode(raw_value))
    return out


COLUMNS = ("rank", "name", "name_zh", "score", "received", "accepted", "decided", "on_time_rate",
           "early_rate", "overdue_rate", "mean_days", "p90_days", "yellow", "red", "escalated",
           "complaints", "complaints_per_1000", "supplement_rate")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def rows_csv(rows: list[dict[str, Any]], columns: Iterable[str] = ("period", "scope", *COLUMNS)) -> str:
    cols = list(columns)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    return buf.getvalue()


def rows_markdown(rows: list[dict[str, Any]], columns: Iterable[str] = COLUMNS) -> str:
    cols = list(columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"
