"""Department and handler windows: ``actor.burst``, ``department.denial_spike`` and
``department.silent`` as pure functions (no Faust), so that the worker and replay judge
the same way.

Department windows are **tumbling, in event time, aligned to local time** (a one-day
window runs 00:00–24:00 Asia/Shanghai). A window is *closed* once the clock passes its
end plus the allowed lateness; only then is it judged, so an alert says what the whole
window held and the worker and replay raise the same alert (same id, same text). A
record whose window is already closed is *late* and left out (counted by the worker's
metric).

- ``actor.burst``: one handler (department + actor) decides more than ``max_decisions``
  distinct cases within *any* ``window_minutes`` (a sliding count, not a window of the
  clock: a burst across 10:10 is found). A decision is counted once final, when the
  clock passes its time plus the allowed lateness (nothing before it can still come on
  time), in event-time order whatever order decisions came in; one that comes after
  that is late. The handler keeps only its decisions not yet final and the latest
  ``max_decisions`` + 1 decisions of distinct cases within ``window_minutes`` before
  the last final one (:func:`burst_step`); a handler idle for longer is dropped. A
  burst raises one alert, however long it lasts: decisions that take the count above the
  limit less than ``window_minutes`` apart are one burst (:meth:`WindowRules.burst_advance`).
  Its id is rule + handler + the instant of the first decision that took the count above
  the limit, which is also its event time.
- ``department.denial_spike``: in a department window (``window_hours``, default one
  day) the refusal share (``decided`` with ``outcome: deny`` and ``rejected_at_intake``,
  among all decisions and refusals at intake) is far above the department's own baseline,
  the share over the previous ``baseline_windows`` windows: above ``ratio`` × baseline
  and above baseline + ``min_increase``, with at least ``min_decisions`` in the window
  and ``min_baseline_decisions`` in the baseline.
- ``department.silent``: no event from a department for ``working_hours`` office hours
  (``office_hours`` on working days of the official calendar) after its last event; it
  fires with no event, when the clock reaches that instant plus the allowed lateness.
  Only departments whose usual traffic makes silence meaningful are judged: at least
  ``min_events_per_hour`` per office hour over the ``baseline_days`` working days
  before the day of the last event (a small department sending two cases a week is
  not a broken feed).

Department alert ids are deterministic: rule + scope + window start (for silence: the
instant of the last event, which starts the silence).

What happens to a record and to what falls due is written once, in :class:`WindowFlow`,
over a :class:`WindowStore` of plain JSON-able values: dicts in replay
(:class:`WindowTracker`, with heaps of what falls due), Faust tables in the worker
(``agents/windows.py``, with a timer scanning them).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from jiancha.producers.contract import Alert, Severity, Step, make_alert_id

from .case import Fact
from .counted_time import DAY, ORIGIN, WorkingTime
from .memo import BoundedMemo
from .rulebook import RuleSet

BURST = "actor.burst"
DENIAL = "department.denial_spike"
SILENT = "department.silent"
WINDOW_RULES = frozenset({BURST, DENIAL, SILENT})

#: how many refusal / decision event ids an alert quotes as evidence
MAX_EVIDENCE = 50


#: the steps of a decision or a refusal at intake (:attr:`WindowRecord.outcome`)
_OUTCOME_STEPS = frozenset({"decided", "rejected_at_intake"})


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


# --- the record a window sees ---------------------------------------------------------


class WindowRecord(NamedTuple):
    """What the windows need from one accepted event (compact on the repartition topic).
    A named tuple: one is built per event twice (forwarded, then taken in), and a frozen
    dataclass costs several times as much to build."""

    event_id: str
    case_id: str
    department: str
    actor: str
    step: str
    at: float  # occurred_at, epoch seconds
    refused: bool = False  # a refusal (deny or rejected at intake)

    @property
    def outcome(self) -> bool:
        """A decision or a refusal at intake (the denominator of the refusal share)."""
        return self.step in _OUTCOME_STEPS

    @property
    def decision(self) -> bool:
        return self.step == "decided"

    @property
    def handler(self) -> str:
        """The burst scope: department and handler (handler ids are per department)."""
        return f"{self.department}/{self.actor}"

    @classmethod
    def from_fields(cls, fields: list[Any]) -> WindowRecord:
        eid, case, dept, actor, step, at, refused = fields
        return cls(str(eid), str(case), str(dept), str(actor), str(step), float(at),
                   bool(refused))


_REJECTED_AT_INTAKE, _DECIDED = Step.rejected_at_intake, Step.decided
#: each step's name as a plain str (a member of a StrEnum is a str subclass)
_STEP_NAME = {step: str(step) for step in Step}


def fact_fields(case_id: str, fact: Fact) -> list[Any]:
    """An accepted event's window record as a JSON-able list, its form on the repartition
    topic (:meth:`WindowRecord.from_fields` reads it back), from the fact its case took in:
    its time is in epoch seconds there already (a zone-aware ``timestamp()`` and an enum's
    ``value`` cost more than the rest of it; the enum's members are read once)."""
    step = fact.step
    refused = step is _REJECTED_AT_INTAKE or (
        step is _DECIDED and fact.attrs.get("outcome") == "deny")
    return [fact.event_id, case_id, fact.department, fact.actor, _STEP_NAME[step], fact.at,
            refused]


def record_of(fields: list[Any]) -> WindowRecord:
    """The record of fields :func:`fact_fields` made (as ``WindowRecord(*fields)``, built in
    C: the named tuple's own constructor is a Python function, called per event)."""
    return _new_tuple(WindowRecord, fields)  # type: ignore[no-any-return]


_new_tuple = tuple.__new__


# --- window values (JSON-able) ----------------------------------------------------------


def burst_add(value: dict[str, Any] | None, rec: WindowRecord) -> dict[str, Any]:
    """Add a decision to a handler's value: ``{"q": [[at, case_id, event_id], ...]}``, the
    decisions not yet final, sorted (so that they are counted in event time whatever order
    they came in); a copy of one already held is left out (forwarded again after a
    takeover). ``value`` is changed in place (see :func:`own_window`) and returned; None
    starts one. :meth:`WindowRules.burst_advance` counts them once final."""
    if value is None:
        value = {}
    pending = value.get("q")
    if pending is None:
        pending = value["q"] = []
    entry = [rec.at, rec.case_id, rec.event_id]
    if not pending or pending[-1] < entry:  # in order: the usual case
        pending.append(entry)
    else:
        i = bisect_left(pending, entry)
        if i == len(pending) or pending[i] != entry:
            pending.insert(i, entry)
    return value


def own_window(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of a window value that :func:`burst_add` and :func:`dept_add` may change in
    place (its lists and dicts copied too, not what they hold: entries are replaced, never
    changed): taken once per window and batch, not per record."""
    if not value:
        return {}
    return {k: v.copy() if isinstance(v, (dict, list)) else v for k, v in value.items()}


def burst_step(kept: list[list[Any]], entry: list[Any], size: float, limit: int) -> bool:
    """Count a final decision ``entry`` (``[at, case_id, event_id]``; decisions come in
    event-time order) into ``kept``: the latest decision of each case less than ``size``
    seconds before it, oldest first, at most ``limit`` + 1 (enough to tell whether more
    than ``limit`` are). True when, with it, more than ``limit`` cases were decided within
    ``size`` seconds."""
    at, case = entry[0], entry[1]
    old = 0
    while old < len(kept) and at - kept[old][0] >= size:
        old += 1
    if old:
        del kept[:old]
    for i, other in enumerate(kept):
        if other[1] == case:  # the case decided again: counted once, at its latest decision
            del kept[i]
            break
    kept.append(entry)
    if len(kept) > limit + 1:
        del kept[0]
    return len(kept) > limit


def span_add(spans: list[list[Any]], at: float, event_id: str, merge: float) -> list[list[Any]]:
    """Add an event to a department's sorted, disjoint spans ``[first, first_event, last,
    last_event]`` of events not yet final; events closer than ``merge`` seconds join one
    span. The result does not depend on the order events are added in (ties: the
    smallest event id first, the largest last). ``spans`` is changed in place and returned.

    Spans are sorted by start and by end alike (disjoint), so only the spans around ``at``
    are looked at, and the list is spliced, not copied (a backlog leaves hundreds of spans
    before the silence is judged)."""
    n = len(spans)
    if n and spans[-1][2] <= at:
        # at or after the last span's end (events mostly come in time order): it joins
        # that span or starts one after it (spans are farther apart than ``merge``, so no
        # earlier span can be within reach)
        last = spans[-1]
        if last[2] + merge < at:
            spans.append([at, event_id, at, event_id])
        else:
            first = (last[0], last[1]) if (last[0], last[1]) < (at, event_id) else (at, event_id)
            end = (last[2], last[3]) if (last[2], last[3]) > (at, event_id) else (at, event_id)
            spans[-1] = [*first, *end]
        return spans
    new: list[Any] = [at, event_id, at, event_id]
    # the first span that does not end more than ``merge`` before the event
    lo = bisect_left(spans, at - merge, key=_SPAN_END)
    while lo > 0 and not spans[lo - 1][2] + merge < at:
        lo -= 1
    while lo < n and spans[lo][2] + merge < at:
        lo += 1
    hi = lo
    while hi < n and not new[2] + merge < spans[hi][0]:
        sp = spans[hi]
        if (sp[0], sp[1]) < (new[0], new[1]):
            new[0], new[1] = sp[0], sp[1]
        if (sp[2], sp[3]) > (new[2], new[3]):
            new[2], new[3] = sp[2], sp[3]
        hi += 1
    spans[lo:hi] = [new]
    return spans


def spans_after(spans: list[list[Any]], at: float) -> list[list[Any]]:
    """The spans that end after ``at`` (those before it are final)."""
    return spans[bisect_right(spans, at, key=_SPAN_END):]


#: a span's end (its last event's time), looked up in C: bisect calls it per probe
_SPAN_END = itemgetter(2)


def dept_add(value: dict[str, Any] | None, rec: WindowRecord) -> dict[str, Any]:
    """Add an event to a department window: ``n`` events, ``d`` decisions and refusals at
    intake, ``r`` refusals, ``e`` refusal event ids (evidence, capped). ``value`` is
    changed in place (see :func:`own_window`) and returned; None starts one."""
    if value is None:
        value = {}
    value["n"] = int(value.get("n", 0)) + 1
    if rec.step in _OUTCOME_STEPS:  # rec.outcome, without a call per record
        value["d"] = int(value.get("d", 0)) + 1
        if rec.refused:
            value["r"] = int(value.get("r", 0)) + 1
            ev = value.get("e")
            if ev is None:
                ev = value["e"] = []
            if len(ev) < MAX_EVIDENCE:
                ev.append(rec.event_id)
    return value


# --- configuration ---------------------------------------------------------------------


def _office_hours(spec: Any) -> tuple[tuple[time, time], ...]:
    out = []
    for part in spec or ("09:00-12:00", "14:00-18:00"):
        a, b = str(part).split("-")
        start, end = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
        if end <= start:
            raise ValueError(f"office_hours {part!r}: the end must be after the start")
        out.append((start, end))
    return tuple(sorted(out))


@dataclass(frozen=True)
class WindowConfig:
    lateness: float
    burst_on: bool
    burst_size: float
    burst_max: int
    denial_on: bool
    dept_size: float
    baseline_windows: int
    min_decisions: int
    min_baseline_decisions: int
    ratio: float
    min_increase: float
    silent_on: bool
    silent_hours: float
    office: tuple[tuple[time, time], ...]
    min_events_per_hour: float
    baseline_days: int

    @classmethod
    def from_ruleset(cls, rs: RuleSet) -> WindowConfig:
        def params(rule: str) -> Mapping[str, Any]:
            return rs.rules[rule].params if rule in rs.rules else {}

        def on(rule: str) -> bool:
            return rule in rs.rules and rs.rules[rule].enabled

        b, d, s = params(BURST), params(DENIAL), params(SILENT)
        cfg = cls(
            lateness=rs.settings.allowed_lateness.total_seconds(),
            burst_on=on(BURST),
            burst_size=float(b.get("window_minutes", 10)) * 60,
            burst_max=int(b.get("max_decisions", 20)),
            denial_on=on(DENIAL),
            dept_size=float(d.get("window_hours", 24)) * 3600,
            baseline_windows=int(d.get("baseline_windows", 28)),
            min_decisions=int(d.get("min_decisions", 20)),
            min_baseline_decisions=int(d.get("min_baseline_decisions", 50)),
            ratio=float(d.get("ratio", 3.0)),
            min_increase=float(d.get("min_increase", 0.25)),
            silent_on=on(SILENT),
            silent_hours=float(s.get("working_hours", 4)),
            office=_office_hours(s.get("office_hours")),
            min_events_per_hour=float(s.get("min_events_per_hour", 2.0)),
            baseline_days=int(s.get("baseline_days", 10)),
        )
        if cfg.burst_size <= 0:
            raise ValueError(f"actor.burst.window_minutes must be positive (got {cfg.burst_size / 60:g})")
        if cfg.dept_size <= 0 or 86_400 % cfg.dept_size:
            raise ValueError("department.denial_spike.window_hours: a window must divide a day "
                             f"evenly (got {cfg.dept_size / 60:g} min)")
        return cfg

    @property
    def office_seconds_per_day(self) -> float:
        return sum((datetime.combine(datetime.min, b) - datetime.combine(datetime.min, a))
                   .total_seconds() for a, b in self.office)

    @property
    def history_windows(self) -> int:
        """Closed department windows kept for the baselines (denial share, silence rate)."""
        silence_span = (self.baseline_days * 7 / 5 + 12) * 86_400  # weekends and a holiday week
        return max(self.baseline_windows, math.ceil(silence_span / self.dept_size)) + 1


# --- the rules ------------------------------------------------------------------------------


class WindowRules:
    """The three window rules over one rule set and calendar: window arithmetic, judging a
    closed window, and the silence deadline. Stateless; the drivers keep the values."""

    def __init__(self, ruleset: RuleSet, wt: WorkingTime,
                 departments: Mapping[str, Any] | None = None) -> None:
        self.ruleset = ruleset
        self.wt = wt
        self.cfg = WindowConfig.from_ruleset(ruleset)
        self.departments = dict(departments or {})
        self._due_cache: BoundedMemo[float, float] = BoundedMemo(self._silence_due, 10_000)
        self._fixed_since = datetime.combine(ORIGIN, time(), wt.tz).timestamp()
        #: the zone's fixed offset since ORIGIN (a float, as :meth:`offset` gives it), or None
        self._fixed = None if wt.fixed_offset is None else float(wt.fixed_offset)
        #: how long silence takes at least (:meth:`silence_due_floor`), less its second
        self._floor_span = max(0.0, self.cfg.silent_hours * 3600 - 3600)
        #: from a span's end to when its silence may first be found (its floor, or its end
        #: if the floor is before it), plus the allowed lateness
        self.span_check_delay = max(self._floor_span - 1.0, 0.0) + self.cfg.lateness
        self._office_seconds = [(_seconds_of(a), _seconds_of(b)) for a, b in self.cfg.office]
        #: events closer than this join one span (no silence can fit between them)
        self.merge_seconds = min(60.0, self.cfg.silent_hours * 3600 / 2)

    @property
    def tz(self) -> Any:
        return self.wt.tz

    # window arithmetic: tumbling windows aligned to local time
    def offset(self, at: float) -> float:
        fixed = self.wt.fixed_offset  # Asia/Shanghai since 2004: no zone lookup per record
        if fixed is not None and at >= self._fixed_since:
            return float(fixed)
        off = datetime.fromtimestamp(at, self.tz).utcoffset()
        return off.total_seconds() if off is not None else 0.0

    def window_start(self, at: float, size: float) -> float:
        off = self._fixed if self._fixed is not None and at >= self._fixed_since else self.offset(at)
        return math.floor((at + off) / size) * size - off

    def is_late(self, window_end: float, now: float) -> bool:
        return window_end + self.cfg.lateness <= now

    def closes_at(self, window_end: float) -> float:
        return window_end + self.cfg.lateness

    # --- actor.burst: a sliding count per handler --------------------------------------------

    def burst_late(self, at: float, now: float, final: float = 0.0) -> bool:
        """Whether a decision at ``at`` that came at ``now`` is late: the allowed lateness
        after it has passed, or by ``final``, the time its department's handlers were
        last counted to (every decision on time for that was in then: this one is a copy
        forwarded again after a takeover)."""
        return self.is_late(at, max(now, final))

    def burst_next(self, value: Mapping[str, Any]) -> float | None:
        """When :meth:`burst_advance` must next run on a handler's value, as an instant
        that is due once the allowed lateness after it has passed (as a window's end).

        If the handler holds more decisions than the limit, a burst may start at any of
        those not yet final: the first of them. Else none can (a decision that comes
        later does not count with an earlier one, and reschedules): they are counted all
        at once when the handler is idle, after its last decision can no longer count
        with a later one (a second's margin against rounding), and it is dropped. So a
        handler below the limit costs one count per idle spell, not one per decision,
        and alerts are raised at the same instants."""
        pending, kept = value.get("q"), value.get("k")
        if pending and len(pending) + len(kept or ()) > self.cfg.burst_max:
            return float(pending[0][0])
        last = max(pending[-1][0] if pending else -_NEVER, kept[-1][0] if kept else -_NEVER)
        return None if last == -_NEVER else float(last) + self.cfg.burst_size + 1.0

    def burst_advance(self, handler: str, value: dict[str, Any], t: float,
                      now: datetime) -> list[Alert]:
        """Count a handler's decisions that are final by ``t`` (the allowed lateness after
        them has passed: none before them can still come on time) in event-time order
        (:func:`burst_step`), and return an alert for each burst one of them starts.

        A decision that takes the count above the limit less than ``window_minutes``
        after the last one that did (``value["e"]``) goes on with that burst: a handler
        deciding steadily just above the limit makes one burst, not one per decision.

        ``value`` is changed in place; it is left empty (:meth:`burst_next` None: drop it)
        once the handler's decisions can no longer count with any to come."""
        cfg = self.cfg
        pending = value.get("q") or []
        kept = value.get("k")
        if kept is None:
            kept = value["k"] = []
        over = value.get("e")
        alerts: list[Alert] = []
        n, lat, size, limit = 0, cfg.lateness, cfg.burst_size, cfg.burst_max
        while n < len(pending) and pending[n][0] + lat <= t:
            entry = pending[n]
            n += 1
            if burst_step(kept, entry, size, limit):
                if (over is None or entry[0] - over >= size) and cfg.burst_on:
                    alerts.append(self._burst_alert(handler, kept, now))
                over = value["e"] = entry[0]
        if n:
            del pending[:n]
            if not pending:
                del value["q"]
        if not kept or (not pending and self.is_late(kept[-1][0] + size + 1.0, t)):
            del value["k"]  # the last burst too: it was no later than kept[-1]
            value.pop("e", None)
        return alerts

    def _burst_alert(self, handler: str, kept: list[list[Any]], now: datetime) -> Alert:
        """The alert of a burst whose decision ``kept[-1]`` took the count above the limit
        (``kept``: the decisions counted, oldest first). Its id is the handler and that
        instant, its event time: one alert per burst, the same in the worker and in
        replay, and under redelivery."""
        cfg = self.cfg
        department, _, actor = handler.partition("/")
        first, at = float(kept[0][0]), float(kept[-1][0])
        a, b = datetime.fromtimestamp(first, self.tz), datetime.fromtimestamp(at, self.tz)
        details = {"count": len(kept), "limit": cfg.burst_max,
                   "minutes": _num(cfg.burst_size / 60),
                   # the first and the last decision counted
                   "window_start": a.isoformat(), "window_end": b.isoformat(),
                   "window_text": f"{a:%Y-%m-%d %H:%M}–{b:%H:%M}" if a.date() == b.date()
                   else f"{a:%Y-%m-%d %H:%M}–{b:%Y-%m-%d %H:%M}"}
        return self.render(BURST, "yellow", make_alert_id(BURST, handler, _iso(at, self.tz)),
                           department=department, actor=actor, event_time=at, now=now,
                           details=details, evidence=[e[2] for e in kept[:MAX_EVIDENCE]])

    # --- judging closed windows -------------------------------------------------------------

    def close_denial(self, department: str, start: float, value: Mapping[str, Any],
                     history: Mapping[str, Any], now: datetime) -> tuple[Alert | None, dict[str, Any]]:
        """Judge a closed department window against the baseline in ``history`` (closed
        windows before it: ``{str(int(start)): [events, decisions, refusals]}``) and return
        the alert (or None) and the history with this window added (pruned)."""
        cfg = self.cfg
        decided, refused = int(value.get("d", 0)), int(value.get("r", 0))
        since = start - cfg.baseline_windows * cfg.dept_size
        base_d = base_r = 0
        for key, (_, d, r) in history.items():
            if since <= float(key) < start:
                base_d += d
                base_r += r
        alert = None
        if cfg.denial_on and decided >= cfg.min_decisions and base_d >= cfg.min_baseline_decisions:
            share, baseline = refused / decided, base_r / base_d
            threshold = max(baseline * cfg.ratio, baseline + cfg.min_increase)
            if share > threshold:
                end = start + cfg.dept_size
                details = {
                    "refused": refused, "decisions": decided, "share": round(share, 4),
                    "share_pct": _num(share * 100), "baseline": round(baseline, 4),
                    "baseline_pct": _num(baseline * 100), "threshold": round(threshold, 4),
                    "baseline_decisions": base_d, "baseline_windows": cfg.baseline_windows,
                    **self._window_details(start, end),
                }
                alert = self.render(DENIAL, "yellow",
                                    make_alert_id(DENIAL, department, _iso(start, self.tz)),
                                    department=department, actor=None, event_time=start, now=now,
                                    details=details, evidence=list(value.get("e") or []))
        new = {k: v for k, v in history.items()
               if float(k) >= start - (cfg.history_windows - 1) * cfg.dept_size}
        new[str(int(start))] = [int(value.get("n", 0)), decided, refused]
        return alert, dict(sorted(new.items(), key=lambda kv: float(kv[0])))

    # --- silence ------------------------------------------------------------------------

    def silence_due(self, last_at: float) -> float:
        """The instant at which ``working_hours`` office hours on working days have passed
        since ``last_at``."""
        return self._due_cache[last_at]

    def _silence_due(self, last_at: float) -> float:
        fixed = self.wt.fixed_offset
        if fixed is not None and last_at >= self._fixed_since:
            return self._silence_due_fixed(last_at, fixed)
        return self._silence_due_zoned(last_at)

    def _silence_due_fixed(self, last_at: float, offset: int) -> float:
        """:meth:`_silence_due_zoned` in epoch arithmetic, for a zone of fixed offset (a
        backlog asks it for nearly every event; the datetime walk was most of the cost)."""
        remaining = self.cfg.silent_hours * 3600
        local = last_at + offset
        day = int(local // DAY)
        into_day = local - day * DAY
        segments = self._office_seconds
        for _ in range(800):
            if self.wt.is_workday(date.fromordinal(day + _UNIX_EPOCH_ORDINAL)):
                for a, b in segments:
                    seg_a = max(into_day, a)
                    span = b - seg_a
                    if span <= 0:
                        continue
                    if span >= remaining:
                        return day * DAY + seg_a + remaining - offset
                    remaining -= span
            day += 1
            into_day = 0.0
        raise ValueError("office_hours leave no working time to count silence in")

    def _silence_due_zoned(self, last_at: float) -> float:
        remaining = self.cfg.silent_hours * 3600
        start = datetime.fromtimestamp(last_at, self.tz)
        day = start.date()
        for _ in range(800):
            if self.wt.is_workday(day):
                for a, b in self.cfg.office:
                    seg_a = max(start, datetime.combine(day, a, self.tz))
                    seg_b = datetime.combine(day, b, self.tz)
                    span = (seg_b - seg_a).total_seconds()
                    if span <= 0:
                        continue
                    if span >= remaining:
                        return (seg_a + timedelta(seconds=remaining)).timestamp()
                    remaining -= span
            day += timedelta(1)
        raise ValueError("office_hours leave no working time to count silence in")

    def silence_due_floor(self, last_at: float) -> float:
        """A bound :meth:`silence_due` is never below: ``working_hours`` office hours take at
        least as long on the clock (less an hour for a daylight-saving jump in some zone,
        and a second against rounding). In a busy feed the next event comes long before
        it, and the due instant need not be computed."""
        return last_at + self._floor_span - 1.0

    def silence_advance(self, last: tuple[float, str] | None, spans: list[list[Any]],
                        judged: float, f: float) -> tuple[tuple[float, str] | None, list[list[Any]],
                                                          float, list[tuple[float, str]]]:
        """Move a department's silence bookkeeping to time ``f``.

        ``last`` is the department's last *final* event (nothing earlier can still come
        on time: its time plus the allowed lateness has passed), ``spans`` the events
        seen after it (:func:`span_add`), ``judged`` the last event whose silence was
        judged. The silence after ``last`` is judged once ``f`` reaches its due instant
        plus the allowed lateness: there is one if no event came before then. Events
        arrive out of order (from independent partitions); spans make the answer
        independent of that order. Returns the new ``last``, ``spans``, ``judged`` and
        the starts ``(at, event_id)`` of silences found.
        """
        lat = self.cfg.lateness
        found: list[tuple[float, str]] = []
        if last is not None and spans and spans[0][2] <= last[0]:
            spans = spans_after(spans, last[0])
        i, n = 0, len(spans)  # spans[i:] are still open (one slice at the end, not one per span)
        while True:
            nxt = spans[i] if i < n else None
            nxt_final = nxt is not None and nxt[2] + lat <= f
            if (last is not None and judged < last[0]
                    and (floor := self.silence_due_floor(last[0])) + lat <= f
                    # a final span that starts before the floor: no silence after ``last``,
                    # and it is taken in next (the due instant is not needed)
                    and not (nxt_final and nxt[0] < floor)):
                due = self.silence_due(last[0]) + lat
                if due <= f:
                    judged = last[0]
                    if nxt is None or nxt[0] >= due:
                        found.append(last)
            if nxt_final:
                last = (float(nxt[2]), str(nxt[3]))
                i += 1
                continue
            return last, spans[i:], judged, found

    def silence_next(self, last: Sequence[Any] | None, spans: list[list[Any]],
                     judged: float, now: float | None = None) -> float | None:
        """When :meth:`silence_advance` must next run, or earlier: given ``now``, a silence's
        due instant is replaced by its floor while that is still after ``now``, so the due
        instant is computed only if no event has moved the department's last event on by
        then (a check at the floor finds nothing and asks again).

        The spans need no check when they become final, only by the floor of the first
        one's silence (plus the allowed lateness): no silence after any of them can be
        found earlier, and :meth:`silence_advance` takes in every span final by then at
        once, with the same result as one by one (a span's silence is found only if the
        next span starts after it is due, so not while that one is final already). A busy
        department is then checked about once per floor, not once per span."""
        lat = self.cfg.lateness
        nxt = None
        if last is not None and judged < last[0]:
            floor = self.silence_due_floor(last[0]) + lat
            nxt = floor if now is not None and floor > now else self.silence_due(last[0]) + lat
        if spans:
            first = spans[0][2] + self.span_check_delay
            if nxt is None or first < nxt:
                nxt = first
        return nxt

    def silence_rate(self, last_at: float, history: Mapping[str, Any]) -> float:
        """Events per office hour over the ``baseline_days`` working days before the day
        of ``last_at`` (from the closed department windows in ``history``)."""
        day = datetime.fromtimestamp(last_at, self.tz).date()
        index = self.wt.workdays_before(day) - self.cfg.baseline_days
        first = self.wt.nth_workday(max(0, index))
        lo = datetime.combine(first, time(), self.tz).timestamp()
        hi = datetime.combine(day, time(), self.tz).timestamp()
        events = sum(v[0] for k, v in history.items() if lo <= float(k) < hi)
        hours = self.cfg.baseline_days * self.cfg.office_seconds_per_day / 3600
        return events / hours if hours else 0.0

    def judge_silence(self, department: str, last_at: float, last_event: str,
                      history: Mapping[str, Any], now: datetime) -> Alert | None:
        """The silence alert once due (the caller checks ``silence_due`` + lateness)."""
        if not self.cfg.silent_on:
            return None
        rate = self.silence_rate(last_at, history)
        if rate < self.cfg.min_events_per_hour:
            return None
        due = self.silence_due(last_at)
        details = {
            "hours": _num(self.cfg.silent_hours), "last_event_at": _iso(last_at, self.tz),
            "last_text": _text(last_at, self.tz), "rate": _num(round(rate, 1)),
            "min_rate": _num(self.cfg.min_events_per_hour),
        }
        return self.render(SILENT, "yellow", make_alert_id(SILENT, department, _iso(last_at, self.tz)),
                           department=department, actor=None, event_time=due, now=now,
                           details=details, evidence=[last_event] if last_event else [])

    # --- rendering ----------------------------------------------------------------------

    def _window_details(self, start: float, end: float) -> dict[str, Any]:
        a, b = datetime.fromtimestamp(start, self.tz), datetime.fromtimestamp(end, self.tz)
        if b - a >= timedelta(days=1) and a.time() == time():
            text = a.strftime("%Y-%m-%d") if b - a == timedelta(days=1) else \
                f"{a:%Y-%m-%d}–{(b - timedelta(1)):%Y-%m-%d}"
        else:
            text = f"{a:%Y-%m-%d %H:%M}–{b:%H:%M}"
        return {"window_start": a.isoformat(), "window_end": b.isoformat(), "window_text": text}

    def render(self, rule: str, severity: Severity, alert_id: str, *, department: str | None,
               actor: str | None, event_time: float | datetime, now: datetime,
               details: dict[str, Any], evidence: list[str], case_id: str | None = None,
               item_code: str | None = None) -> Alert:
        return render_alert(self.ruleset, self.departments, self.tz, rule, severity, alert_id,
                            department=department, actor=actor, event_time=event_time, now=now,
                            details=details, evidence=evidence, case_id=case_id,
                            item_code=item_code)


def render_alert(ruleset: RuleSet, departments: Mapping[str, Any], tz: Any, rule: str,
                 severity: Severity, alert_id: str, *, department: str | None,
                 actor: str | None, event_time: float | datetime, now: datetime,
                 details: dict[str, Any], evidence: list[str], case_id: str | None = None,
                 item_code: str | None = None, prefix: tuple[str, str] = ("", "")) -> Alert:
    """An alert about a department, handler or complaint (no case view): the rule set's
    text filled from ``details`` plus department names."""
    config = ruleset.rules[rule]
    dept = departments.get(department) if department else None
    fields = _Blank(details)
    fields.update(department=department or "?", actor=actor or "?", case_id=case_id or "?",
                  department_zh=getattr(dept, "name_zh", department or "?"),
                  department_en=getattr(dept, "name_en", department or "?"))
    when = event_time if isinstance(event_time, datetime) else datetime.fromtimestamp(event_time, tz)
    return Alert(
        alert_id=alert_id, rule=rule, severity=severity, case_id=case_id, item_code=item_code,
        department=department, actor=actor, detected_at=now.astimezone(tz),
        event_time=when.astimezone(tz),
        message_zh=prefix[0] + config.message_zh.format_map(fields),
        message_en=prefix[1] + config.message_en.format_map(fields),
        legal_basis=config.basis, evidence=list(evidence), details=details,
    )


_UNIX_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NEVER = float("inf")


def _seconds_of(t: time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def _iso(at: float, tz: Any) -> str:
    return datetime.fromtimestamp(at, tz).isoformat()


def _text(at: float, tz: Any) -> str:
    return datetime.fromtimestamp(at, tz).strftime("%Y-%m-%d %H:%M")


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else round(x, 1)


# --- the one flow, for the worker and replay -------------------------------------------------

#: What falls due in a window store: a handler's decisions to count, a department window to close.
COUNT, CLOSE = 0, 1


class WindowStore(Protocol):
    """Where a window driver keeps its values (plain JSON-able dicts and lists, see
    :class:`WindowFlow`): dicts in replay (:class:`WindowTracker`), Faust tables in the
    worker (``agents/windows.py``). A value handed out is the flow's to change in place
    until it is put back; a department's state is not changed in place (it is copied, then
    put back): a store may hand out the one it keeps."""

    def state(self, department: str, /) -> Mapping[str, Any]:
        """The department's state: ``h`` its closed windows (baselines), ``dc`` the time its
        windows are closed through, ``bc`` the time its handlers were counted to, ``L`` its
        last final event ``[at, event_id]``, ``s`` the last event whose silence was judged."""
        ...

    def put_state(self, department: str, value: dict[str, Any], /) -> None: ...

    def window(self, department: str, start: float, at: float, /) -> dict[str, Any] | None:
        """The open department window starting at ``start`` (``at``: an instant in it)."""
        ...

    def put_window(self, department: str, start: float, at: float, value: dict[str, Any], /
                   ) -> None: ...

    def drop_window(self, department: str, start: float, /) -> None: ...

    def handler(self, handler: str, /) -> dict[str, Any] | None: ...

    def put_handler(self, handler: str, value: dict[str, Any] | None, /) -> None:
        """None: the handler is dropped (idle: nothing of it can count any more)."""
        ...

    def spans(self, department: str, /) -> list[list[Any]]:
        """The department's spans of events after its last final event (:func:`span_add`)."""
        ...

    def put_spans(self, department: str, spans: list[list[Any]], /) -> None:
        """After an event was added, or the spans left open once silence was judged (a
        store may instead leave the final ones to be dropped when it next reads them)."""
        ...


class WindowFlow:
    """Records into the windows, and what falls due out of them, written once for the
    worker and both replays: each brings its :class:`WindowStore`, the time (given to each
    call: ``t`` in epoch seconds and ``now`` the same instant as a datetime) and does what
    it must with the alerts returned (the worker stores them before it writes the states
    that record them; replay takes them at once). What is due is the caller's to find
    (replay keeps heaps; the worker scans its tables on a timer): :meth:`advance` takes it.
    """

    def __init__(self, rules: WindowRules, on_late: Callable[[str], None],
                 on_duplicate: Callable[[], None] | None = None) -> None:
        self.rules = rules
        #: a late record, by the rule it was late for ("department" or ``actor.burst``)
        self.on_late = on_late
        self.on_duplicate = on_duplicate

    def observe(self, store: WindowStore, rec: WindowRecord, t: float,
                source: tuple[str, int] | None = None) -> None:
        """Take a record in at ``t`` (epoch seconds): into its department window unless that
        is closed, into its handler's decisions unless final already, into its department's
        spans unless its last final event is later. ``source``: the upstream partition
        and offset it was read from, when it may come twice (forwarded again after a
        takeover: records from one upstream partition come in its order, so one at or
        before the last counted from there is a copy, counted once)."""
        r = self.rules
        cfg = r.cfg
        event_id, _, dept, _, step, at, _ = rec
        st = store.state(dept)
        start = r.window_start(at, cfg.dept_size)
        end = start + cfg.dept_size
        if r.is_late(end, t) or end <= st.get("dc", 0):
            self.on_late("department")
        else:
            value = store.window(dept, start, at)
            if value is None:
                value = {}
            if source is None:
                store.put_window(dept, start, at, dept_add(value, rec))
            else:
                up, offset = source
                counted = value.get("u")
                if counted is None:
                    counted = value["u"] = {}
                if int(counted.get(up, -1)) >= offset:
                    if self.on_duplicate is not None:
                        self.on_duplicate()
                else:
                    dept_add(value, rec)
                    counted[up] = offset
                    store.put_window(dept, start, at, value)
        if step == "decided" and cfg.burst_on:
            if r.burst_late(at, t, st.get("bc", 0)):
                self.on_late(BURST)
            else:
                handler = rec.handler
                store.put_handler(handler, burst_add(store.handler(handler), rec))
        last = st.get("L")
        if last is None or at > last[0]:
            store.put_spans(dept, span_add(store.spans(dept), at, event_id, r.merge_seconds))

    def count(self, store: WindowStore, handler: str, t: float, now: datetime) -> list[Alert]:
        """Count a handler's decisions final by ``t`` (:meth:`WindowRules.burst_advance`)."""
        r = self.rules
        value = store.handler(handler)
        if value is None:
            return []
        dept = handler.partition("/")[0]
        st = dict(store.state(dept))
        st["bc"] = max(st.get("bc", 0), t)  # see WindowRules.burst_late
        alerts = r.burst_advance(handler, value, t, now)
        store.put_handler(handler, value if r.burst_next(value) is not None else None)
        store.put_state(dept, st)
        return alerts

    def close(self, store: WindowStore, department: str, start: float, now: datetime
              ) -> list[Alert]:
        """Close and judge a department window (:meth:`WindowRules.close_denial`)."""
        r = self.rules
        value = store.window(department, start, start)
        if value is None:
            return []
        st = dict(store.state(department))
        st["dc"] = max(st.get("dc", 0), start + r.cfg.dept_size)
        alert, st["h"] = r.close_denial(department, start, value, st.get("h") or {}, now)
        store.drop_window(department, start)
        store.put_state(department, st)
        return [] if alert is None else [alert]

    def judge_silence(self, store: WindowStore, department: str, t: float, now: datetime
                      ) -> list[Alert]:
        """A department's silence bookkeeping moved to ``t``
        (:meth:`WindowRules.silence_advance`), and the silences found judged."""
        r = self.rules
        st = store.state(department)
        old = st.get("L")
        old_last = (float(old[0]), str(old[1])) if old else None
        judged_before = st.get("s", 0)
        last, spans, judged, found = r.silence_advance(old_last, store.spans(department),
                                                       judged_before, t)
        alerts = []
        for at, event_id in found:
            alert = r.judge_silence(department, at, event_id, st.get("h") or {}, now)
            if alert is not None:
                alerts.append(alert)
        if last != old_last or judged != judged_before:
            new = dict(st)
            new["L"], new["s"] = list(last) if last else None, judged
            store.put_state(department, new)
            store.put_spans(department, spans)
        return alerts

    def advance(self, store: WindowStore, due: Iterable[tuple[int, str, float]],
                silences: Iterable[str], t: float, now: datetime) -> list[Alert]:
        """What is due by ``t``: ``due`` the handlers to count (:data:`COUNT`, handler,
        when) and the windows to close (:data:`CLOSE`, department, start), in the order
        they fall due (a count before a close at the same instant); then ``silences``,
        the departments whose silence may be due."""
        alerts: list[Alert] = []
        for kind, scope, start in due:
            if kind == COUNT:
                alerts.extend(self.count(store, scope, t, now))
            else:
                alerts.extend(self.close(store, scope, start, now))
        for dept in silences:
            alerts.extend(self.judge_silence(store, dept, t, now))
        return alerts


# --- the replay driver ------------------------------------------------------------------------


class WindowTracker:
    """The window flow with its values in plain dicts, driven by an event-time clock
    (replay, tests): the :class:`WindowStore` of :class:`WindowFlow`, with heaps of what
    falls due.

    ``observe(record, now)`` closes what is due by ``now`` and then adds the record (unless
    it is late); ``advance(now)`` counts final decisions, closes windows and judges
    silences due by ``now``. Both return the alerts raised.
    """

    def __init__(self, rules: WindowRules) -> None:
        self.rules = rules
        self.flow = WindowFlow(rules, self._late)
        #: handler -> its decisions (:func:`burst_add`, :meth:`WindowRules.burst_advance`)
        self.burst: dict[str, dict[str, Any]] = {}
        self.dept: dict[tuple[str, float], dict[str, Any]] = {}
        #: department -> its state (:meth:`WindowStore.state`; a department without one
        #: reads as empty)
        self.state: dict[str, Mapping[str, Any]] = _Absent(_EMPTY)
        #: department -> its spans (:func:`span_add`; a new list for one without)
        self.spans: dict[str, list[list[Any]]] = _Absent(None)
        #: (due, kind, scope, start): a department window closing (CLOSE, its start), a
        #: handler's decisions to count (COUNT, start = due; superseded unless in _burst_at)
        self._closing: list[tuple[float, int, str, float]] = []
        self._burst_at: dict[str, float] = {}
        self._silence: list[tuple[float, str]] = []  # (next check, department)
        self._scheduled: dict[str, float] = {}
        self.late = 0
        self._store = _TrackerStore(self)

    # --- the store ----------------------------------------------------------------------

    def _late(self, rule: str) -> None:
        self.late += 1

    def state_of(self, department: str) -> Mapping[str, Any]:
        return self.state[department]

    def put_state(self, department: str, value: dict[str, Any]) -> None:
        self.state[department] = value

    def window(self, department: str, start: float, at: float) -> dict[str, Any] | None:
        return self.dept.get((department, start))

    def put_window(self, department: str, start: float, at: float, value: dict[str, Any]) -> None:
        key = (department, start)
        if key not in self.dept:
            heapq.heappush(self._closing, (self.rules.closes_at(start + self.rules.cfg.dept_size),
                                           CLOSE, department, start))
        self.dept[key] = value

    def drop_window(self, department: str, start: float) -> None:
        del self.dept[department, start]

    def handler(self, handler: str) -> dict[str, Any] | None:
        return self.burst.get(handler)

    def put_handler(self, handler: str, value: dict[str, Any] | None) -> None:
        if value is None:
            del self.burst[handler]
            return
        self.burst[handler] = value
        # a count scheduled later moves earlier; one scheduled earlier stays (it counts
        # what is due then and schedules the next)
        nxt = self.rules.burst_next(value)
        if nxt is not None:
            due = self.rules.closes_at(nxt)
            if due < self._burst_at.get(handler, _NEVER):
                self._burst_at[handler] = due
                heapq.heappush(self._closing, (due, COUNT, handler, due))

    def spans_of(self, department: str) -> list[list[Any]]:
        return self.spans[department]

    def put_spans(self, department: str, spans: list[list[Any]]) -> None:
        self.spans[department] = spans

    # --- the driver -----------------------------------------------------------------------

    def observe(self, rec: WindowRecord, now: datetime | None, t: float | None = None
                ) -> list[Alert]:
        """``t``: ``now`` in epoch seconds, if the caller has it; ``now`` None: the instant
        ``t`` (given), built only if an alert is rendered (alerts give it in the rule
        set's zone whatever its offset)."""
        if t is None:
            assert now is not None
            t = now.timestamp()
        alerts = self.advance(now, t) if self.may_be_due(t) else _NONE
        dept = rec.department
        at = rec.at
        rules = self.rules
        lat = rules.cfg.lateness
        # The department's spans that became final since its last silence check are
        # taken in at the next check (see silence_next), not each as it becomes final;
        # a record that may precede or join one of them takes them in first, as a check
        # at their end would have (it is then compared with the last final event).
        spans = self.spans.get(dept)
        if spans and spans[0][2] + lat <= t and at <= t - lat + rules.merge_seconds:
            alerts = alerts + self.flow.judge_silence(self._store, dept, t,
                                                      self._instant(t) if now is None else now)
        self.flow.observe(self._store, rec, t)
        # a record after the last final event moves the next silence check to no earlier
        # than the floor of its silence: one scheduled by then still comes in time
        if self._scheduled.get(dept, _NEVER) > at + rules.span_check_delay:
            last = self.state[dept].get("L")
            if last is None or at > last[0]:
                self._schedule(dept, t)
        return alerts if alerts else []  # nothing the record added is due yet (it would be late)

    def _schedule(self, dept: str, now: float) -> None:
        st = self.state.get(dept) or _EMPTY
        nxt = self.rules.silence_next(st.get("L"), self.spans.get(dept, []), st.get("s", 0), now)
        if nxt is not None and nxt < self._scheduled.get(dept, _NEVER):
            self._scheduled[dept] = nxt
            heapq.heappush(self._silence, (nxt, dept))

    def next_due(self) -> float | None:
        """The earliest instant (epoch) at which :meth:`advance` may close or judge
        something (a superseded silence check included)."""
        closing, silence = self._closing, self._silence
        if not closing:
            return silence[0][0] if silence else None
        if silence and silence[0][0] < closing[0][0]:
            return silence[0][0]
        return closing[0][0]

    def may_be_due(self, now: float) -> bool:
        """Whether :meth:`advance` to ``now`` (epoch) could close or judge something."""
        return bool((self._closing and self._closing[0][0] <= now)
                    or (self._silence and self._silence[0][0] <= now))

    def advance(self, now: datetime | None, t: float | None = None) -> list[Alert]:
        """What is due by ``now`` (``t``: the same in epoch seconds; ``now`` None: as
        :meth:`observe` takes it)."""
        if now is None:
            assert t is not None
            now = self._instant(t)
        elif t is None:
            t = now.timestamp()
        closing = self._closing
        # most calls are a silence check only: no generator over the closings then
        due = self._due(t) if closing and closing[0][0] <= t else ()
        return self.flow.advance(self._store, due, self._silences(t), t, now)

    def _instant(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.rules.tz)

    def _due(self, t: float) -> Iterator[tuple[int, str, float]]:
        """The counts and closings due by ``t``, in order, taken off the heap one by one (a
        count schedules the next as it goes)."""
        closing = self._closing
        while closing and closing[0][0] <= t:
            _, kind, scope, start = heapq.heappop(closing)
            if kind == COUNT:
                if self._burst_at.get(scope) != start:
                    continue  # superseded
                del self._burst_at[scope]  # the count reschedules it (put_handler)
            yield kind, scope, start

    def _silences(self, t: float) -> Iterator[str]:
        """The departments whose silence check is due by ``t``; each is scheduled again
        once judged (when the flow asks for the next)."""
        silence = self._silence
        while silence and silence[0][0] <= t:
            when, dept = heapq.heappop(silence)
            if self._scheduled.get(dept) != when:
                continue  # superseded
            del self._scheduled[dept]
            yield dept
            self._schedule(dept, t)


class _TrackerStore:
    """:class:`WindowTracker` as a :class:`WindowStore` (its own ``state`` and ``spans``
    are the dicts tests read)."""

    __slots__ = (
        "drop_window",
        "handler",
        "put_handler",
        "put_spans",
        "put_state",
        "put_window",
        "spans",
        "state",
        "window",
    )

    def __init__(self, tracker: WindowTracker) -> None:
        # the tracker's dicts where they are the store's methods (a call less per record)
        self.state = tracker.state.__getitem__
        self.put_state = tracker.state.__setitem__
        self.window = tracker.window
        self.put_window = tracker.put_window
        self.drop_window = tracker.drop_window
        self.handler = tracker.burst.get
        self.put_handler = tracker.put_handler
        self.spans = tracker.spans.__getitem__
        self.put_spans = tracker.spans.__setitem__


class _Absent(dict[str, Any]):
    """A dict whose missing keys read as ``empty`` (a new list if None), not stored."""

    __slots__ = ("empty",)

    def __init__(self, empty: Any) -> None:
        super().__init__()
        self.empty = empty

    def __missing__(self, key: str) -> Any:
        return [] if self.empty is None else self.empty


_EMPTY: Mapping[str, Any] = {}
_NONE: list[Alert] = []  # no alerts (never changed: returned as a new list)
