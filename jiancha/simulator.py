"""Department traffic simulator: realistic approval cases, a share of them with one violation.

Two modes share one case planner:

- **file** (:func:`generate_cases`, :func:`generate_file`): a deterministic batch of cases
  submitted over the working hours of a span of working days, every step planned in
  advance, written as JSON Lines for ``jiancha send`` or ``jiancha replay``;
- **live** (:func:`run_live`): cases start at ``rate`` per real second while the
  (simulated) clock shows office hours; each step is sent when the clock reaches its
  ``occurred_at``.

Times are planned in *office seconds*: each working day (official calendar, Art. 82)
contributes 7 office hours, 09:00–12:00 and 14:00–18:00 local, so every step falls in
office hours and "N working days later" is plain arithmetic.

A clean case follows its item's required steps (``submitted`` by the applicant with a
hashed ``applicant_id``, ``accepted``, ``reviewed`` by handler A — and by each
co-handling department for a joint item —, ``decided`` by handler B, ``fee_charged`` at
the standard where the item has one, ``delivered``, ``completed``), decided within the
promised limit and delivered within 10 working days. Some clean cases carry one
correction notice or a lawful (Art. 45) suspension; a few are refused, with a reason.

A violating case has exactly one of :data:`VIOLATION_KINDS`; :data:`VIOLATION_RULES`
names the rule that should catch it.

Each case's item is drawn by its rough share of a city's daily volume (``volume_share`` in
the catalog, a relative weight: identity cards, passports, vehicles, business and property
registration far ahead of an environmental report), so the alerts fall where a city's do.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import inspect
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from jiancha.producers.contract import SCHEMA_VERSION, ApprovalEvent, Step
from jiancha.rules.calendar import OfficialCalendar
from jiancha.rules.catalog import Item, load_catalog
from jiancha.rules.clock import Clock, SimulatedClock, make_clock
from jiancha.rules.counted_time import WorkingTime

if TYPE_CHECKING:
    from jiancha.producers.client import DepartmentProducer
    from jiancha.settings import ClockSettings, SimulatorSettings

__all__ = [
    "VIOLATION_KINDS",
    "VIOLATION_RULES",
    "CasePlanner",
    "LiveSimulator",
    "OfficeHours",
    "Simulation",
    "expected_violations",
    "generate_cases",
    "generate_file",
    "run_live",
    "simulate",
    "write_jsonl",
]

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")

#: violation kind -> the rule that should raise it (domain.md)
VIOLATION_RULES: dict[str, str] = {
    "skipped_review": "process.skipped_step",
    "decided_late": "deadline.promise_broken",
    "never_decided": "deadline.promise_broken",
    "delivered_late": "delivery.late",
    "fee_over_standard": "fee.over_standard",
    "fee_unauthorized": "fee.unauthorized",
    "deny_without_reason": "decision.no_reason",
    "actor_conflict": "actor.conflict",
    "unlawful_suspension": "suspension.unlawful_reason",
    "repeated_supplement": "supplement.repeated",
}
VIOLATION_KINDS: tuple[str, ...] = tuple(VIOLATION_RULES)

HANDLERS_PER_DEPARTMENT = 8
CLEAN_DENY_SHARE = 0.08
CLEAN_SUPPLEMENT_SHARE = 0.12
CLEAN_LAWFUL_SUSPENSION_SHARE = 0.05
DEFAULT_CASES_PER_DAY = 100

DENY_REASONS = (
    "申请材料不符合法定条件和标准",
    "申请人不具备法定资格条件",
    "现场核查不符合许可条件",
    "申请事项不符合相关规划要求",
)
SUPPLEMENT_ITEMS = (
    "营业执照副本复印件",
    "法定代表人身份证明",
    "场地使用证明",
    "申请表签字盖章页",
    "技术负责人资格证书",
    "近期免冠照片",
)
LAWFUL_REASONS = ("expert_review", "inspection", "testing", "appraisal", "hearing")
UNLAWFUL_REASONS = ("等待领导批示", "等待内部会议研究", "系统维护暂停办理")
OVER_FACTORS = (Decimal("1.5"), Decimal("2"), Decimal("3"))
UNAUTHORIZED_FEES = ("20.00", "50.00", "100.00", "300.00")


def _eligible(kind: str, item: Item) -> bool:
    steps = item.steps
    if Step.decided not in steps:
        return False
    if kind in ("skipped_review", "actor_conflict"):
        return Step.reviewed in steps
    if kind == "delivered_late":
        return Step.delivered in steps
    if kind == "fee_over_standard":
        return item.fee_standard is not None and item.fee_standard > 0
    if kind == "fee_unauthorized":
        return item.fee_standard is None
    if kind == "repeated_supplement":
        return Step.accepted in steps
    return True


# --- office hours ----------------------------------------------------------------------

MORNING = 3 * 3600  # 09:00-12:00
AFTERNOON = 4 * 3600  # 14:00-18:00
OFFICE_DAY = MORNING + AFTERNOON
_OPEN_AM, _CLOSE_AM, _OPEN_PM, _CLOSE_PM = 9 * 3600, 12 * 3600, 14 * 3600, 18 * 3600


class OfficeHours:
    """Office seconds: working day ``i`` (counted from the calendar origin) covers
    ``[i * OFFICE_DAY, (i + 1) * OFFICE_DAY)``, mapped onto 09:00–12:00 and 14:00–18:00."""

    def __init__(self, wt: WorkingTime) -> None:
        self.wt = wt
        self.tz = wt.tz
        self._days: dict[int, date] = {}

    def day_index(self, os: int) -> int:
        return os // OFFICE_DAY

    def day_start(self, index: int) -> int:
        return index * OFFICE_DAY

    def day_end(self, index: int) -> int:
        """The last office second of working day ``index``."""
        return (index + 1) * OFFICE_DAY - 1

    def instant(self, os: int) -> datetime:
        index, rest = divmod(os, OFFICE_DAY)
        day = self._days.get(index)
        if day is None:
            day = self._days[index] = self.wt.nth_workday(index)
        secs = _OPEN_AM + rest if rest < MORNING else _OPEN_PM + rest - MORNING
        return datetime.combine(day, dtime(), self.tz) + timedelta(seconds=secs)

    def _since_midnight(self, instant: datetime) -> tuple[date, float]:
        loc = instant.astimezone(self.tz)
        midnight = datetime.combine(loc.date(), dtime(), self.tz)
        return loc.date(), (loc - midnight).total_seconds()

    def ceil(self, instant: datetime) -> int:
        """The office second at or after ``instant``."""
        day, secs = self._since_midnight(instant)
        index = self.wt.workdays_before(day)  # for a rest day: the next working day
        if not self.wt.is_workday(day) or secs <= _OPEN_AM:
            return index * OFFICE_DAY
        if secs <= _CLOSE_AM:
            rest = math.ceil(secs - _OPEN_AM)
        elif secs <= _OPEN_PM:
            rest = MORNING
        elif secs <= _CLOSE_PM:
            rest = MORNING + math.ceil(secs - _OPEN_PM)
        else:
            rest = OFFICE_DAY
        return index * OFFICE_DAY + min(rest, OFFICE_DAY)

    def at_or_before(self, instant: datetime) -> int:
        """The office second at or before ``instant`` while open, else :meth:`ceil`."""
        day, secs = self._since_midnight(instant)
        if not self.is_open(instant):
            return self.ceil(instant)
        index = self.wt.workdays_before(day)
        rest = int(secs - _OPEN_AM) if secs < _CLOSE_AM else MORNING + int(secs - _OPEN_PM)
        return index * OFFICE_DAY + rest

    def is_open(self, instant: datetime) -> bool:
        day, secs = self._since_midnight(instant)
        if not self.wt.is_workday(day):
            return False
        return _OPEN_AM <= secs < _CLOSE_AM or _OPEN_PM <= secs < _CLOSE_PM


# --- planning one case -----------------------------------------------------------------



@dataclass(frozen=True, slots=True)
class Draft:
    """One planned step, before it gets its event id."""

    os: int
    department: str
    step: Step
    actor: str
    attributes: Mapping[str, Any] | None = None
    applicant_id: str | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedCase:
    case_id: str
    item_code: str
    violation: str | None
    drafts: tuple[Draft, ...]


def _cumulative(items: list[Item]) -> list[int]:
    """Cumulative volume shares, for :meth:`random.Random.choices`."""
    out, total = [], 0
    for item in items:
        total += item.volume_share
        out.append(total)
    return out


def _sorted_points(rng: random.Random, k: int, low: int, high: int) -> list[int]:
    """``k`` distinct sorted integers strictly between ``low`` and ``high`` (clamped)."""
    if k <= 0:
        return []
    if high - low - 1 < k:
        high = low + k + 1
    return sorted(rng.sample(range(low + 1, high), k))


class CasePlanner:
    """Plans every step of one case from its submission instant (pure, no I/O)."""

    def __init__(self, catalog: Mapping[str, Item], wt: WorkingTime, seed: int) -> None:
        if not catalog:
            raise ValueError("the catalog has no items")
        self.catalog = catalog
        self.wt = wt
        self.office = OfficeHours(wt)
        self.seed = seed
        self.items: list[Item] = [catalog[c] for c in sorted(catalog)]
        self.kinds: tuple[str, ...] = tuple(
            k for k in VIOLATION_KINDS if any(_eligible(k, it) for it in self.items)
        )
        self._by_kind = {k: [it for it in self.items if _eligible(k, it)] for k in self.kinds}
        self._weights = {k: _cumulative(pool) for k, pool in self._by_kind.items()}
        self._all_weights = _cumulative(self.items)

    def pick_item(self, rng: random.Random, kind: str | None) -> Item:
        """An item drawn by its share of a city's daily volume (``Item.volume_share``), among
        the items that can carry ``kind``: violations follow the volume as cases do."""
        pool, weights = ((self._by_kind[kind], self._weights[kind]) if kind
                         else (self.items, self._all_weights))
        return rng.choices(pool, cum_weights=weights)[0]

    def applicant_id(self, n: int) -> str:
        return hashlib.sha256(f"jiancha-simulator:{self.seed}:{n}".encode()).hexdigest()

    def plan(self, n: int, item: Item, sub_os: int, kind: str | None, rng: random.Random) -> PlannedCase:
        if kind is not None and kind not in self.kinds:
            raise ValueError(f"unknown violation kind {kind!r} (known: {', '.join(self.kinds)})")
        office = self.office
        dept = item.department
        steps = item.steps
        a, b = rng.sample(range(1, HANDLERS_PER_DEPARTMENT + 1), 2)
        handler_a, handler_b = f"{dept}-h{a}", f"{dept}-h{b}"
        if kind == "actor_conflict":
            handler_b = handler_a
        channel = rng.choices(("online", "window", "mobile"), weights=(5, 3, 2))[0]
        out = [Draft(sub_os, dept, Step.submitted, "applicant",
                     applicant_id=self.applicant_id(n), channel=channel)]
        t = sub_os

        has_accept = Step.accepted in steps
        supplements = 0
        if kind == "repeated_supplement":
            supplements = 2
        elif kind is None and has_accept and rng.random() < CLEAN_SUPPLEMENT_SHARE:
            supplements = 1
        for _ in range(supplements):  # each notice well within the 5 working days of Art. 32
            t += rng.randint(600, OFFICE_DAY // 2)
            wanted = rng.sample(SUPPLEMENT_ITEMS, rng.randint(1, 3))
            out.append(Draft(t, dept, Step.supplement_requested, handler_a, {"items": wanted}))
            t += rng.randint(1800, OFFICE_DAY)
            out.append(Draft(t, dept, Step.supplement_received, "applicant"))

        decided_at = steps.index(Step.decided) if Step.decided in steps else len(steps)
        pre = list(steps[1:decided_at])
        post = list(steps[decided_at + 1:])
        if has_accept and Step.accepted in pre:
            i = pre.index(Step.accepted)
            for step in pre[:i]:  # unusual: a required step before acceptance
                t += rng.randint(300, 3600)
                out.append(Draft(t, dept, step, handler_a))
            t += rng.randint(300, OFFICE_DAY // 2 if supplements else 2 * OFFICE_DAY)
            out.append(Draft(t, dept, Step.accepted, handler_a))
            pre = pre[i + 1:]
        clock_os = t  # the decision clock runs from acceptance (or submission)

        # the slots between the clock start and the decision, in the item's order
        slots: list[tuple[str, Step, str, dict[str, Any]]] = []
        for step in pre:
            if step is Step.reviewed:
                reviewers = [] if kind == "skipped_review" else [(dept, handler_a)]
                reviewers += [(co, f"{co}-h{rng.randint(1, HANDLERS_PER_DEPARTMENT)}")
                              for co in item.co_departments]
                for d, actor in reviewers:
                    slots.append((d, Step.reviewed, actor, {"opinion": "agree"}))
            else:
                slots.append((dept, step, handler_a, {}))
        suspension = None
        if kind == "unlawful_suspension":
            suspension = rng.choice(UNLAWFUL_REASONS)
        elif kind is None and rng.random() < CLEAN_LAWFUL_SUSPENSION_SHARE:
            suspension = rng.choice(LAWFUL_REASONS)
        if suspension is not None:
            slots.append((dept, Step.suspended, handler_a, {"reason": suspension}))
            slots.append((dept, Step.resumed, handler_a, {}))

        day0 = office.day_index(clock_os)
        promise_end = office.day_end(day0 + item.promised_days)
        if item.legal_unit == "calendar":  # a promise may outrun a limit in 日 across a holiday
            promise_end = min(promise_end, self._calendar_limit_end(clock_os, item.legal_days))
        if Step.decided not in steps:
            decide_os = promise_end
        elif kind == "decided_late":
            first = office.day_start(day0 + item.promised_days + 1)
            decide_os = rng.randint(first, first + rng.randint(1, 3) * OFFICE_DAY - 1)
        elif kind == "never_decided":
            decide_os = promise_end
        else:
            room = 600 * (len(slots) + 1)
            span = max(0, promise_end - clock_os - room)
            decide_os = clock_os + room + int(span * rng.betavariate(1.6, 2.6))
        for os, (d, step, actor, attrs) in zip(
            _sorted_points(rng, len(slots), clock_os, decide_os), slots, strict=True
        ):
            out.append(Draft(os, d, step, actor, attrs))
        if kind == "never_decided":
            return self._case(n, item, kind, out)

        t = decide_os
        granted = True
        if Step.decided in steps:
            if kind == "deny_without_reason":
                granted = False
                decision: dict[str, Any] = {"outcome": "deny"}
            elif kind is None and rng.random() < CLEAN_DENY_SHARE:
                granted = False
                decision = {"outcome": "deny", "reason": rng.choice(DENY_REASONS)}
            else:
                decision = {"outcome": "grant"}
            out.append(Draft(t, dept, Step.decided, handler_b, decision))
        if granted and (kind == "fee_unauthorized" or (item.fee_standard or 0) > 0):
            if kind == "fee_unauthorized":
                amount = rng.choice(UNAUTHORIZED_FEES)
            elif kind == "fee_over_standard":
                assert item.fee_standard is not None
                amount = f"{item.fee_standard * rng.choice(OVER_FACTORS):.2f}"
            else:
                amount = f"{item.fee_standard:.2f}"
            t += rng.randint(120, 3600)
            out.append(Draft(t, dept, Step.fee_charged, handler_b,
                             {"amount": amount, "fee_code": f"{item.code}-F01"}))
        for step in post:
            if step is Step.delivered:
                if not granted:
                    continue  # a refusal needs no delivery
                if kind == "delivered_late":  # Art. 44: 10 working days after the decision
                    late_day = office.day_index(decide_os) + 11 + rng.randint(0, 3)
                    t = max(t + 1, office.day_start(late_day) + rng.randint(0, OFFICE_DAY - 1))
                else:
                    t += rng.randint(1800, 2 * OFFICE_DAY)
                out.append(Draft(t, dept, step, handler_a, channel=channel))
            else:
                t += rng.randint(300, 3600)
                out.append(Draft(t, dept, step, handler_a))
        return self._case(n, item, kind, out)

    def _calendar_limit_end(self, clock_os: int, days: int) -> int:
        """The last office second of a limit of ``days`` calendar days from ``clock_os``:
        the start day is not counted, an end on a rest day moves to the next working day."""
        last = self.office.instant(clock_os).date() + timedelta(days=days)
        return self.office.day_end(self.wt.workdays_before(last))

    def _case(self, n: int, item: Item, kind: str | None, drafts: list[Draft]) -> PlannedCase:
        year = self.office.instant(drafts[0].os).year
        return PlannedCase(f"GZ{year}-{n:07d}", item.code, kind, tuple(drafts))

    def event(self, case: PlannedCase, draft: Draft, event_id: str) -> ApprovalEvent:
        return ApprovalEvent(
            schema_version=SCHEMA_VERSION,
            event_id=event_id,
            case_id=case.case_id,
            item_code=case.item_code,
            department=draft.department,
            step=draft.step,
            occurred_at=self.office.instant(draft.os),
            actor=draft.actor,
            applicant_id=draft.applicant_id,
            channel=draft.channel,  # type: ignore[arg-type]
            attributes=dict(draft.attributes or {}),
        )


# --- file mode -------------------------------------------------------------------------


@dataclass
class Simulation:
    """A generated batch: the events in ``occurred_at`` order and what was planted."""

    events: list[ApprovalEvent]
    #: case_id -> violation kind (see :data:`VIOLATION_RULES`), violating cases only
    violations: dict[str, str]
    #: case_id -> item_code, every case
    items: dict[str, str]

    @property
    def clean_cases(self) -> list[str]:
        return [c for c in self.items if c not in self.violations]

    def expected_rules(self) -> dict[str, str]:
        """case_id -> rule that should raise an alert for it."""
        return {c: VIOLATION_RULES[k] for c, k in self.violations.items()}


def _working_time(tz: tzinfo, working_time: WorkingTime | None) -> WorkingTime:
    return working_time if working_time is not None else WorkingTime(OfficialCalendar(), tz)


def _as_catalog(catalog: Mapping[str, Item] | Path | str) -> Mapping[str, Item]:
    return load_catalog(catalog) if isinstance(catalog, Path | str) else catalog


def simulate(
    catalog: Mapping[str, Item] | Path | str,
    *,
    start: datetime,
    cases: int,
    seed: int,
    violations: float = 0.1,
    tz: tzinfo = SHANGHAI,
    working_time: WorkingTime | None = None,
    days: int | None = None,
    first_case: int = 1,
) -> Simulation:
    """Plan ``cases`` cases submitted over ``days`` working days from ``start`` (default:
    about 100 cases a working day). Exactly ``round(cases * violations)`` of them get one
    violation each, the kinds taking turns. Deterministic for a given seed."""
    if start.tzinfo is None:
        raise ValueError("start needs a time zone offset")
    if cases < 0:
        raise ValueError("cases must not be negative")
    if not 0.0 <= violations <= 1.0:
        raise ValueError("violations is a share between 0 and 1")
    planner = CasePlanner(_as_catalog(catalog), _working_time(tz, working_time), seed)
    office = planner.office
    rng = random.Random(seed)
    days = days if days is not None else max(1, math.ceil(cases / DEFAULT_CASES_PER_DAY))
    first_os = office.ceil(start)
    last_os = office.day_start(office.day_index(first_os) + days) - 1
    submissions = sorted(rng.randint(first_os, max(first_os, last_os)) for _ in range(cases))

    n_bad = round(cases * violations) if planner.kinds else 0
    bad = sorted(rng.sample(range(cases), n_bad))
    kinds = [planner.kinds[i % len(planner.kinds)] for i in range(n_bad)]
    rng.shuffle(kinds)
    kind_of = dict(zip(bad, kinds, strict=True))

    planned: list[PlannedCase] = []
    for i, sub_os in enumerate(submissions):
        n = first_case + i
        kind = kind_of.get(i)
        case_rng = random.Random(f"{seed}:{n}")
        item = planner.pick_item(case_rng, kind)
        planned.append(planner.plan(n, item, sub_os, kind, case_rng))

    order = sorted(
        ((d.os, ci, di) for ci, case in enumerate(planned) for di, d in enumerate(case.drafts))
    )
    counters: dict[str, int] = {}
    events: list[ApprovalEvent] = []
    for _, ci, di in order:
        case, draft = planned[ci], planned[ci].drafts[di]
        k = counters[draft.department] = counters.get(draft.department, 0) + 1
        events.append(planner.event(case, draft, f"{draft.department}-{k}"))
    return Simulation(
        events=events,
        violations={c.case_id: c.violation for c in planned if c.violation is not None},
        items={c.case_id: c.item_code for c in planned},
    )


def generate_cases(
    catalog: Mapping[str, Item] | Path | str,
    *,
    start: datetime,
    cases: int,
    seed: int,
    violations: float = 0.1,
    tz: tzinfo = SHANGHAI,
    working_time: WorkingTime | None = None,
    days: int | None = None,
) -> list[ApprovalEvent]:
    """The events of :func:`simulate`, sorted by ``occurred_at``."""
    return simulate(catalog, start=start, cases=cases, seed=seed, violations=violations, tz=tz,
                    working_time=working_time, days=days).events


def expected_violations(
    catalog: Mapping[str, Item] | Path | str,
    *,
    start: datetime,
    cases: int,
    seed: int,
    violations: float = 0.1,
    tz: tzinfo = SHANGHAI,
    working_time: WorkingTime | None = None,
    days: int | None = None,
) -> dict[str, str]:
    """case_id -> violation kind for the cases :func:`generate_cases` makes with the
    same arguments (clean cases are absent)."""
    return simulate(catalog, start=start, cases=cases, seed=seed, violations=violations, tz=tz,
                    working_time=working_time, days=days).violations


def write_jsonl(events: Iterable[ApprovalEvent], path: Path | str) -> int:
    """Write the events as JSON Lines (the wire format); returns how many."""
    n = 0
    with Path(path).open("wb") as fh:
        for ev in events:
            fh.write(orjson.dumps(ev.wire_dict()))
            fh.write(b"\n")
            n += 1
    return n


def generate_file(
    catalog_dir: Path | str,
    path: Path | str,
    *,
    start: datetime,
    cases: int,
    seed: int,
    violations: float = 0.1,
    days: int | None = None,
    tz: tzinfo = SHANGHAI,
) -> Simulation:
    """Generate cases from the catalog in ``catalog_dir`` and write them to ``path``."""
    sim = simulate(load_catalog(catalog_dir), start=start, cases=cases, seed=seed,
                   violations=violations, tz=tz, days=days)
    write_jsonl(sim.events, path)
    return sim


# --- live mode -------------------------------------------------------------------------


class LiveSimulator:
    """Starts cases one at a time at the current (simulated) instant; pure, no I/O.

    Each case gets a violation with probability ``violations`` (kind chosen at random).
    Case numbers start at ``first_case``; event ids are ``{department}-{n}`` with one
    counter per department, given when the event is made (:meth:`event`).
    """

    def __init__(
        self,
        catalog: Mapping[str, Item],
        wt: WorkingTime,
        *,
        seed: int,
        violations: float = 0.1,
        first_case: int = 1,
    ) -> None:
        if not 0.0 <= violations <= 1.0:
            raise ValueError("violations is a share between 0 and 1")
        self.planner = CasePlanner(catalog, wt, seed)
        self.office = self.planner.office
        self.violations = violations
        self.rng = random.Random(seed)
        self.next_case = first_case
        self.counters: dict[str, int] = {}
        #: violation kind -> cases started with it
        self.planted: Counter[str] = Counter()
        self.started = 0

    def new_case(self, now: datetime) -> PlannedCase:
        """Plan a case submitted at ``now`` (or the next office moment)."""
        rng = self.rng
        kind = None
        if self.planner.kinds and rng.random() < self.violations:
            kind = rng.choice(self.planner.kinds)
        n, self.next_case = self.next_case, self.next_case + 1
        item = self.planner.pick_item(rng, kind)
        case = self.planner.plan(n, item, self.office.at_or_before(now), kind, rng)
        self.started += 1
        if kind is not None:
            self.planted[kind] += 1
        return case

    def event(self, case: PlannedCase, draft: Draft) -> ApprovalEvent:
        k = self.counters[draft.department] = self.counters.get(draft.department, 0) + 1
        return self.planner.event(case, draft, f"{draft.department}-{k}")

    def start_case(self, now: datetime) -> list[ApprovalEvent]:
        """:meth:`new_case` with all its events at once, in ``occurred_at`` order."""
        case = self.new_case(now)
        return [self.event(case, d) for d in case.drafts]


def clock_from_settings(settings: ClockSettings) -> Clock:
    """The clock the worker uses: simulated when ``clock_start`` is set, else the wall."""
    return make_clock(settings.clock_start, settings.clock_speed, settings.clock_anchor)


def _real_seconds_until(clock: Clock, instant: datetime) -> float:
    if isinstance(clock, SimulatedClock):
        return clock.real_seconds_until(instant)
    speed = getattr(clock, "speed", 1.0) or 1.0
    return (instant - clock.now()).total_seconds() / speed


#: longest real sleep between two looks at the clock
MAX_SLEEP = 0.5
#: default bound on cases in progress (each holds its planned steps in memory)
MAX_OPEN_CASES = 100_000


async def run_live(
    settings: SimulatorSettings,
    *,
    rate: float,
    duration: float | None = None,
    violations: float = 0.1,
    seed: int = 1,
    clock: Clock | None = None,
    on_event: Callable[[ApprovalEvent], Any] | None = None,
    producer: DepartmentProducer | None = None,
    first_case: int | None = None,
    max_open_cases: int = MAX_OPEN_CASES,
) -> int:
    """Send live department traffic until ``duration`` real seconds have passed (forever
    when None); returns the number of events sent.

    A case starts every ``1 / rate`` real seconds while the clock (``clock``, else the
    settings' simulated clock, else the wall clock) shows office hours on a working day;
    its steps are planned from that instant and each is sent when the clock reaches its
    ``occurred_at``. Steps still in the future when the run stops are not sent. While
    ``max_open_cases`` cases are in progress no new case starts (with the wall clock a
    case lasts weeks, and memory must stay bounded).

    ``producer`` defaults to ``producer_from_config(settings.producer_config())`` (any department, signed
    per department when keys are configured); it is started here and, on every exit
    including cancellation, flushed and stopped. ``on_event`` (sync or async) sees every
    sent event. Case numbers start at ``first_case`` (default: derived from the real time,
    so that successive runs do not reuse case ids at up to 100 cases per second).
    """
    if rate <= 0:
        raise ValueError("rate must be positive (cases per second)")
    if duration is not None and duration < 0:
        raise ValueError("duration must not be negative")
    catalog = load_catalog(settings.catalog_dir)
    wt = WorkingTime(OfficialCalendar.from_file(settings.calendar_file), settings.tz)
    clock = clock or clock_from_settings(settings)
    if first_case is None:
        first_case = (int(time.time()) % 1_000_000) * 100 + 1
    sim = LiveSimulator(catalog, wt, seed=seed, violations=violations, first_case=first_case)
    office = sim.office
    if producer is None:
        from jiancha.producers.client import producer_from_config

        producer = producer_from_config(settings.producer_config())

    loop = asyncio.get_running_loop()
    # one entry per case in progress: (occurred_at of its next step, tie-break, case, index)
    heap: list[tuple[float, int, PlannedCase, int]] = []
    seq = 0
    sent = 0
    full_warned = False
    await producer.start()
    try:
        began = loop.time()
        stop_at = None if duration is None else began + duration
        next_start = began
        while True:
            real = loop.time()
            if stop_at is not None and real >= stop_at:
                break
            while next_start <= real:
                now = clock.now()
                if len(heap) >= max_open_cases:
                    if not full_warned:
                        log.warning("simulator: %d cases in progress; no new case starts until "
                                    "some finish", len(heap))
                        full_warned = True
                elif office.is_open(now):
                    case = sim.new_case(now)
                    heapq.heappush(heap, (office.instant(case.drafts[0].os).timestamp(), seq, case, 0))
                    seq += 1
                next_start += 1.0 / rate
            now_ts = clock.now().timestamp()
            while heap and heap[0][0] <= now_ts:
                _, tie, case, index = heapq.heappop(heap)
                ev = sim.event(case, case.drafts[index])
                if index + 1 < len(case.drafts):
                    nxt = office.instant(case.drafts[index + 1].os).timestamp()
                    heapq.heappush(heap, (nxt, tie, case, index + 1))
                await producer.send(ev)
                sent += 1
                if on_event is not None:
                    result = on_event(ev)
                    if inspect.isawaitable(result):
                        await result
            wait = min(next_start - loop.time(), MAX_SLEEP)
            if heap:
                wait = min(wait, _real_seconds_until(clock, datetime.fromtimestamp(heap[0][0], UTC)))
            if stop_at is not None:
                wait = min(wait, stop_at - loop.time())
            await asyncio.sleep(max(0.0, wait))
    except BaseException:
        try:
            await producer.stop()
        except Exception:
            log.exception("simulator: the producer did not stop cleanly")
        raise
    await producer.stop()
    log.info("simulator: %d cases started, %d events sent, planted violations: %s",
             sim.started, sent, dict(sim.planted) or "none")
    return sent
