"""What a check returns, and the read-only view of a case that checks ask."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from jiancha.producers.contract import LAWFUL_SUSPENSION_REASONS, Step

from .case import CaseState, Fact
from .catalog import Department, Item
from .counted_time import EpochPause, Pause, WorkingTime
from .rulebook import RuleSettings
from .steps import (
    ACCEPTED,
    DECIDED,
    REJECTED_AT_INTAKE,
    RESUMED,
    REVIEWED,
    SUBMITTED,
    SUPPLEMENT_RECEIVED,
    SUPPLEMENT_REQUESTED,
    SUSPENDED,
)
from .summary import summary_from_facts

#: Art. 32: notice of corrections, acceptance or refusal within 5 working days.
INTAKE_DAYS = 5


@dataclass(slots=True)
class Finding:
    """One violation a check sees in the facts; raised as an alert once ``due_at`` passed.

    ``distinct`` (with rule and case) makes the alert id; ``details`` holds the numbers
    the alert text quotes. Both must depend on the facts only, never on "now", so that
    the worker and replay raise the same alert whenever they evaluate.

    Not changed once built, though not frozen: several are built per event, and a frozen
    dataclass takes three times as long to build. The checks that find one on most
    judgements (the deadlines) give the fields in order: with keywords the call costs twice
    as much.
    """

    distinct: tuple[str, ...]
    #: the instant the alert is about, and from when it is raised (epoch seconds: most
    #: findings are not due yet, and a datetime for each cost more than the rest)
    event_time: float
    due_at: float
    evidence: tuple[str, ...] = ()
    actor: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    #: when the missing action happened (decision made, delivery done): a red finding not
    #: corrected within its rule's escalation period becomes ``escalated`` (督办). None where
    #: no later event can correct it (a fee, a conflict of duties): only a person resolving
    #: the alert does, and the alert sink does not escalate a resolved alert.
    corrected_at: float | None = None
    #: for what did not happen in time (deadlines, delivery): the alert names as its actor
    #: the case's holder at this instant (:meth:`CaseView.holder`), found when it is raised
    holder_at: float | None = None


#: A check: the findings it sees in a case, an empty sequence when none (a plain function,
#: called once per judgement).
Check = Callable[["CaseView", Mapping[str, Any]], Sequence[Finding]]

#: In a :func:`reads` declaration: the steps of the item's published process.
PROCESS = "process"
#: In a :func:`reads` declaration: the steps an item has neither in its process nor as an
#: optional step (``rules.catalog.OPTIONAL_STEPS``).
UNLISTED = "unlisted"

#: The steps the derived times of :class:`CaseView` read, for the checks' declarations.
SUBMISSION_READS = frozenset({Step.submitted})
REFUSAL_READS = frozenset({Step.rejected_at_intake, Step.decided})
ENDED_READS = frozenset({Step.decided, Step.rejected_at_intake, Step.withdrawn})
PAUSES_READS = frozenset({Step.suspended, Step.resumed})
CLOCK_START_READS = SUBMISSION_READS | ENDED_READS | frozenset(
    {Step.accepted, Step.supplement_requested, Step.supplement_received})


def reads(*steps: Step | str | frozenset[Step]) -> Callable[[Check], Check]:
    """Declare which steps a check reads (``PROCESS``: the item's process steps;
    ``UNLISTED``: the steps it has neither in its process nor as optional ones).

    A check's findings are a function of the facts of those steps only, so after a fact
    of another step the engine need not run it again: what it found before still holds.
    A check without a declaration runs after every fact. ``tests/unit/test_reads.py``
    runs every check on recorded views and fails if one reads a step it did not declare.
    """
    flat = _flat(steps)

    def declare(check: Check) -> Check:
        check.reads = flat  # type: ignore[attr-defined]
        return check
    return declare


def _flat(steps: tuple[Step | str | frozenset[Step], ...]) -> frozenset[Step | str]:
    flat: set[Step | str] = set()
    for s in steps:
        if isinstance(s, frozenset):
            flat.update(s)
        else:
            flat.add(s)
    return frozenset(flat)


def declared_reads(check: Check) -> frozenset[Step | str] | None:
    """What :func:`reads` declared for ``check``; None when it reads every step."""
    return getattr(check, "reads", None)


#: Whether a fact, just added to the case of a view, may change what a check finds.
FactTest = Callable[["CaseView", Fact], bool]


def changes_with(test: FactTest) -> Callable[[Check], Check]:
    """Declare which of the facts of the steps a check reads (all of them without
    :func:`reads`) may change what it finds: after a fact that ``test(view, fact)``
    rejects it finds what it found before, and the engine does not run it (as after a fact
    of a step it does not read). ``test`` reads the view as the check does and the added
    fact, and must hold for every fact that can change a finding;
    ``tests/unit/test_reads.py`` holds partial judgements to full ones."""

    def declare(check: Check) -> Check:
        check.changes_with = test  # type: ignore[attr-defined]
        return check
    return declare


def has_fact_of(step: Step) -> FactTest:
    """A :func:`changes_with` test for a check that finds nothing in a case with no fact of
    ``step``: until one comes, no fact changes what it finds."""

    def test(case: CaseView, fact: Fact) -> bool:
        return case.first(step) is not None
    test.__doc__ = f"Whether the case has a fact of {step.value}."
    return test


def declared_changes(check: Check) -> FactTest | None:
    """What :func:`changes_with` declared for ``check``; None: any fact of a step it reads."""
    return getattr(check, "changes_with", None)


class LazyDetails(Mapping[str, Any]):
    """A finding's details, computed when first read: most findings are not due yet or
    were raised before, and the numbers an alert quotes (dates, texts) are the costly part
    of a deadline check."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], Mapping[str, Any]]) -> None:
        self._make = make
        self._value: Mapping[str, Any] | None = None

    def _get(self) -> Mapping[str, Any]:
        if self._value is None:
            self._value = self._make()
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def copy(self) -> dict[str, Any]:
        """The details as a new dict (``dict(details)`` reads them key by key)."""
        return dict(self._get())


_T = TypeVar("_T")


class kept(Generic[_T]):
    """A value a :class:`CaseView` derives from the facts on first read, which the case's
    summary keeps for later judgements until a fact of a step it reads arrives (``steps``
    as :func:`reads` takes them; the value depends on those facts, the item, the working
    time and the rule settings only).

    A view's ``__dict__`` is its summary's kept values: a view is built per judgement,
    and finds them there with nothing copied. What ``functools.cached_property`` does,
    without the lock Python 3.11's takes on every first read."""

    def __init__(self, *steps: Step | str | frozenset[Step]) -> None:
        self.reads = _flat(steps)

    def __call__(self, compute: Callable[[Any], _T]) -> kept[_T]:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__
        return self

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, view: Any, owner: type | None = None) -> _T:
        if view is None:
            return self  # type: ignore[return-value]
        value = view.__dict__[self.name] = self.compute(view)
        return value


#: the kept values a fact of each step makes stale, by item code (with the item's steps
#: they were made for)
_DROPS: dict[str, tuple[tuple[Step, ...], dict[Step, tuple[str, ...]]]] = {}


def _drops(item: Item) -> dict[Step, tuple[str, ...]]:
    made = _DROPS.get(item.code)
    if made is not None and made[0] == item.steps:
        return made[1]
    names: dict[Step, list[str]] = {}
    for name, value in vars(CaseView).items():
        if isinstance(value, kept):
            steps = set(value.reads)
            if PROCESS in steps:
                steps.discard(PROCESS)
                steps.update(item.steps)
            for step in steps:
                names.setdefault(step, []).append(name)  # type: ignore[arg-type]
    drops = {step: tuple(n) for step, n in names.items()}
    _DROPS[item.code] = (item.steps, drops)
    return drops


_NO_FACTS: list[Fact] = []
#: the steps that close an intake, and those that end the decision clock
_CLOSING = (Step.rejected_at_intake, Step.withdrawn, Step.decided)
_ENDING = (Step.decided, Step.rejected_at_intake, Step.withdrawn)
#: the allowed lateness in seconds by its setting in minutes (a timedelta per view cost more
#: than the checks that read it)
_LATENESS_SECONDS: dict[float, float] = {}


class CaseView:
    """The facts of one case in event-time order, with the derived times the law uses.

    It reads the case's summary (``rules.summary``), which it first brings up to date
    with the facts added since the case was last read.
    """

    __slots__ = ("__dict__", "_by_step", "departments", "facts", "item", "settings", "state",
                 "summary", "wt")

    def __init__(self, state: CaseState, item: Item, wt: WorkingTime, settings: RuleSettings,
                 departments: Mapping[str, Department] | None = None) -> None:
        facts = state.facts
        summary = state.summary
        if summary is None or summary.n > len(facts):
            summary = state.summary = summary_from_facts(facts)
        elif summary.n < len(facts):
            if summary.n == len(facts) - 1:  # the usual: one fact since it was last read
                summary.add(facts, summary.n)
            else:
                summary.catch_up(facts)
        # the values kept from earlier judgements (``kept``), if they were derived alike
        of = summary.kept_for
        if of is None or of[0] is not item or of[1] is not wt or of[2] is not settings:
            summary.kept = {}
            summary.kept_for = (item, wt, settings)
            summary.drops = _drops(item)
        self.__dict__ = summary.kept
        self.state = state
        self.item = item
        self.departments = departments or {}
        self.wt = wt
        self.settings = settings
        self.summary = summary
        ordered = summary.ordered
        self.facts: list[Fact] = facts if ordered is None else ordered
        self._by_step = summary.by_step

    @property
    def case_id(self) -> str:
        return self.state.case_id

    @property
    def max_delay(self) -> float:
        """The longest any fact took to reach the engine (received - occurred), seconds:
        whether any fact may have been reported late, without reading them all."""
        summary = self.summary
        delay = summary.max_delay_
        return summary.max_delay(self.facts) if delay is None else delay

    def first_handled_by(self, actor: str) -> Fact | None:
        """The earliest fact by ``actor`` of a step the applicant does not take."""
        handlers = self.summary.handlers_
        if handlers is None:
            handlers = self.summary.handlers(self.facts)
        return handlers.get(actor)

    def all(self, step: Step) -> list[Fact]:
        """The facts of ``step`` in event-time order (the case's own list: not to be
        changed)."""
        return self._by_step.get(step, _NO_FACTS)

    def having(self, steps: frozenset[Step]) -> set[Step]:
        """Which of ``steps`` have a fact."""
        return self._by_step.keys() & steps

    def first(self, step: Step) -> Fact | None:
        facts = self._by_step.get(step)
        return facts[0] if facts else None

    def counted_deadline(self, start: float, days: float,
                         pauses: Sequence[EpochPause] | None = None) -> float | None:
        """``WorkingTime.counted_deadline_at`` (epoch seconds) with this case's pauses by
        default, computed once and kept in the case's summary until a fact of a clock-start
        or pause step arrives (several checks, and judgements, ask for the same limit)."""
        pauses = self.pauses_at if pauses is None else pauses
        if not pauses:  # the common case, kept by the working time per start day
            return self.wt.working_deadline_epoch(start, days)
        key = (start, days, *pauses)
        kept = self.summary.deadlines
        if kept is None or kept[0] is not self.wt:
            kept = self.summary.deadlines = (self.wt, {})
        deadlines = kept[1]
        if key not in deadlines:
            deadlines[key] = self.wt.counted_deadline_at(start, days, pauses)
        return deadlines[key]

    def dt(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.wt.tz)

    def department_names(self, code: str) -> tuple[str, str]:
        """A department's name in zh and en as the catalog gives it (the code if unknown)."""
        dept = self.departments.get(code)
        return (dept.name_zh, dept.name_en) if dept is not None else (code, code)

    # --- derived times ------------------------------------------------------------------
    # The checks compute in epoch seconds (``*_at``) and build a datetime only for what
    # they report: on a busy worker datetime arithmetic was most of a deadline check.

    @kept(SUBMISSION_READS)
    def submitted(self) -> Fact | None:
        return self.first(SUBMITTED)

    @kept(SUBMISSION_READS)
    def intake_deadline_at(self) -> float | None:
        """5 working days after submission (Art. 32), epoch seconds."""
        sub = self.submitted
        return self.wt.working_deadline_epoch(sub.at, INTAKE_DAYS) if sub else None

    @kept(REFUSAL_READS)
    def refused(self) -> bool:
        return self.first(REJECTED_AT_INTAKE) is not None or any(
            f.attrs.get("outcome") == "deny" for f in self.all(DECIDED)
        )

    @kept(CLOCK_START_READS)
    def clock_start_at(self) -> tuple[float, str, Fact, float] | None:
        """When the decision clock starts: (instant, basis, fact, known_at), epoch seconds.

        ``basis`` is ``accepted``, ``deemed_accepted`` (from submission) or
        ``deemed_accepted_after_supplement`` (from the corrected materials); ``known_at``
        is the instant from which that start is certain (for a deemed acceptance the end
        of the intake window plus the allowed lateness: an acceptance could still come).

        - Acceptance in time starts it. With no acceptance, refusal or correction notice
          within 5 working days of submission the application is deemed accepted on the
          day it was received (Art. 32), so the clock runs from submission.
        - A correction notice in time (一次性告知) stops the intake until the corrected
          materials arrive; the clock then starts at the acceptance. If no acceptance
          follows within 5 working days of the corrected materials, the application is
          deemed accepted on the day they were received (the same Art. 32 rule; otherwise
          a case could be kept off the clock for ever).
        - A refusal at intake, a withdrawal or a decision inside the intake window with
          no acceptance before it closes the intake: no decision clock at all.
        """
        by_step = self._by_step
        facts = by_step.get(ACCEPTED)
        accepted = facts[0] if facts else None
        sub = self.submitted
        if sub is None:
            if accepted is None:
                return None
            return accepted.at, "accepted", accepted, accepted.at
        limit = self.intake_deadline_at
        assert limit is not None
        window_fact, window_end, basis = sub, limit, "deemed_accepted"
        facts = by_step.get(SUPPLEMENT_REQUESTED)
        notice = facts[0] if facts else None
        if notice is not None and notice.at <= limit:
            received = next((f for f in self.all(SUPPLEMENT_RECEIVED) if f.at >= notice.at), None)
            if received is None:
                if accepted is not None:
                    return accepted.at, "accepted", accepted, accepted.at
                return None  # waiting for the applicant's corrected materials
            window_fact = received
            window_end = self.wt.working_deadline_epoch(received.at, INTAKE_DAYS)
            basis = "deemed_accepted_after_supplement"
        if accepted is not None and accepted.at <= window_end:
            return accepted.at, "accepted", accepted, accepted.at
        closed_at: float | None = None  # the earliest closing fact within the window
        for step in _CLOSING:
            facts = by_step.get(step)  # in time order: a step's first is its earliest
            if facts and (at := facts[0].at) <= window_end and (closed_at is None
                                                                or at < closed_at):
                closed_at = at
        if closed_at is not None and (accepted is None or closed_at < accepted.at):
            return None  # the intake was closed before anything was (deemed) accepted
        # a deemed acceptance judges the acceptance step missing: like a skipped step, it is
        # certain only after the allowed lateness (an acceptance may still arrive late)
        return window_fact.at, basis, window_fact, window_end + self.allowed_lateness_seconds

    @kept(CLOCK_START_READS)
    def clock_start(self) -> tuple[datetime, str, Fact, datetime] | None:
        """:attr:`clock_start_at` with instants."""
        start = self.clock_start_at
        if start is None:
            return None
        at, basis, fact, known_at = start
        return self.dt(at), basis, fact, self.dt(known_at)

    @kept()
    def allowed_lateness_seconds(self) -> float:
        minutes = self.settings.allowed_lateness_minutes
        seconds = _LATENESS_SECONDS.get(minutes)
        if seconds is None:
            seconds = _LATENESS_SECONDS[minutes] = self.settings.allowed_lateness.total_seconds()
        return seconds

    @kept(PAUSES_READS)
    def pauses_at(self) -> list[EpochPause]:
        """Suspensions for Art. 45 reasons, the only ones that stop the clock (epoch
        seconds)."""
        out: list[EpochPause] = []
        suspended = self._by_step.get(SUSPENDED)
        if not suspended:
            return out
        resumes = [f.at for f in self.all(RESUMED)]
        for s in suspended:
            if str(s.attrs.get("reason", "")) not in LAWFUL_SUSPENSION_REASONS:
                continue
            if out and out[-1][1] is None:
                continue  # already suspended
            last_end = out[-1][1] if out else None
            if last_end is not None and s.at < last_end:
                continue
            out.append((s.at, next((r for r in resumes if r >= s.at), None)))
        return out

    @kept(PAUSES_READS)
    def pauses(self) -> list[Pause]:
        """:attr:`pauses_at` as instants."""
        return [(self.dt(a), self.dt(b) if b is not None else None) for a, b in self.pauses_at]

    @kept(ENDED_READS)
    def ended(self) -> Fact | None:
        """The first fact that ends the decision clock: decision, refusal at intake, withdrawal."""
        earliest: Fact | None = None
        by_step = self._by_step
        for step in _ENDING:
            facts = by_step.get(step)  # in time order: a step's first is its earliest
            if facts and (earliest is None or facts[0].at < earliest.at):
                earliest = facts[0]
        return earliest

    @kept(PROCESS, Step.reviewed)
    def process_facts(self) -> list[Fact | None]:
        """The first fact of each of the item's required steps (``item.steps`` order) as
        the process counts it, None where it has none. On a joint item only the handling
        department's own ``reviewed`` is the process step; the co-handling departments'
        opinions are judged by ``parallel.missing_opinion``."""
        item = self.item
        by_step = self._by_step
        out: list[Fact | None] = [facts[0] if (facts := by_step.get(step)) else None
                                  for step in item.steps]
        if item.joint and REVIEWED in item.steps:
            out[item.steps.index(REVIEWED)] = next(
                (f for f in self.all(REVIEWED) if f.department == item.department), None)
        return out

    def holder(self, at: float) -> str | None:
        """The case's current holder at ``at``: the staff member of the handling department
        who last acted on the case by then (None when nobody did).

        Not a read in the sense of :func:`reads`: who is named does not decide whether or
        when a finding is raised, and it is asked only when its alert is rendered."""
        department = self.item.department
        holder: str | None = None
        latest = float("-inf")
        for f in self.state.facts:  # arrival order; the latest in event time wins
            if latest <= f.at <= at and f.department == department and f.actor != "applicant":
                holder, latest = f.actor, f.at
        return holder

    # --- integrity helpers (actor.conflict) -------------------------------------------------

    @kept(SUBMISSION_READS)
    def applicant_id(self) -> str | None:
        """The hashed applicant identity given on ``submitted`` (kept in its attrs)."""
        sub = self.submitted
        value = sub.attrs.get("applicant_id") if sub is not None else None
        return value if isinstance(value, str) and value else None
