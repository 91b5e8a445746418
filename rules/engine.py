"""The rule engine: facts in, alerts out. No I/O, no Faust: the worker, replay and the
tests drive the same object.

- :meth:`Engine.ingest` adds a checked event to its case's state;
- :meth:`Engine.evaluate` runs every enabled check over the case and returns the alerts
  due by ``now`` that were not raised yet, plus the next instant at which this case has
  something due (the deadline index schedules it: deadlines fire with no further event);
- :meth:`Engine.judge` does the same and, after one fact was added to a case whose last
  judgement is known (a :class:`~rules.schedule.Due`), runs only the checks that read the
  fact's step (``rules.findings.reads``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from weakref import WeakSet

from jiancha.producers.contract import SEVERITY_RANK, Alert, Severity, Step, make_alert_id

from .case import RETRACTED, CaseState, Fact, StepEvent
from .catalog import OPTIONAL_STEPS, Catalog, Item
from .checks import CHECKS
from .counted_time import WorkingTime
from .findings import (
    PROCESS,
    UNLISTED,
    CaseView,
    Check,
    FactTest,
    Finding,
    LazyDetails,
    declared_changes,
    declared_reads,
)
from .messages import escalation_prefix, retraction_prefix
from .rulebook import RuleSet
from .schedule import UNKNOWN, Due

log = logging.getLogger(__name__)
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = 1e-6  # a microsecond, in epoch seconds
_ESCALATED = SEVERITY_RANK["escalated"]
#: A check that raised runs again when its case is next judged: at the latest this long
#: (clock seconds) later, or as long as the case had been quiet when it failed, if longer.
#: A transient failure heals within a minute; a faulty rule is tried again 1, 2, 4, 8, …
#: minutes after the case's last fact, so it floods neither the log nor the deadline index.
CHECK_RETRY_SECONDS = 60.0
#: what ``judge`` records of ran checks and found alerts when nothing can be retracted
#: (never added to)
_UNWATCHED: set[str] = set()
#: a ``Due`` built without NamedTuple's ``__new__`` (a Python function)
_new_tuple = tuple.__new__


#: (rule, check, severity, parameters, the check's bit in ``Due.pending``, severity rank)
_Planned = tuple[str, Check, Severity, Mapping[str, Any], int, int]


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


#: Every engine alive in this process (weakly held), so that one watcher sees the check
#: errors of all of them (the test suite fails a test after which any engine has one).
ENGINES: WeakSet[Engine] = WeakSet()


@dataclass(eq=False)  # an engine is itself, not its parts (and is weakly referenced)
class Engine:
    catalog: Catalog
    ruleset: RuleSet
    working_time: WorkingTime
    checks: Mapping[str, Check] = None  # type: ignore[assignment]
    #: called with the rule's name each time one of its checks raises (a metric)
    on_check_error: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.checks is None:
            self.checks = CHECKS
        #: checks that raised, by rule (each also logged with its case)
        self.check_errors: dict[str, int] = {}
        ENGINES.add(self)
        self._plans: dict[str, list[_Planned]] = {}
        self._by_step: dict[tuple[str, Step], tuple[list[_Planned], int,
                                                    tuple[tuple[int, FactTest], ...]]] = {}
        self._by_bits: dict[tuple[str, int], list[_Planned]] = {}
        self._items: dict[str, Item] = {}

    @property
    def tz(self) -> Any:
        return self.working_time.tz

    def ingest(self, state: CaseState | None, event: StepEvent, received: datetime,
               partition: int = -1, *, received_ts: float | None = None) -> CaseState:
        """Add ``event`` to its case (``received_ts``: ``received`` in epoch seconds, if
        the caller has it)."""
        if state is None:
            state = CaseState(event.case_id, event.item_code, partition)
        elif partition >= 0:
            state.partition = partition
        state.facts.append(Fact.from_event(event, received, received_ts))
        return state

    def view(self, state: CaseState) -> CaseView:
        item = self._items.get(state.item_code)
        if item is None:  # the catalog does not change while the engine runs
            item = self._items[state.item_code] = self.catalog[state.item_code]
        return CaseView(state, item, self.working_time, self.ruleset.settings,
                        self.catalog.departments)

    def evaluate(self, state: CaseState, now: datetime) -> tuple[list[Alert], datetime | None]:
        """Alerts due by ``now`` and not raised before (recorded in ``state.raised``), and
        the next instant at which something not raised yet falls due."""
        alerts, due = self.judge(state, now)
        return alerts, None if due.at is None else datetime.fromtimestamp(due.at, UTC)

    def judge(self, state: CaseState, now: datetime, added: Step | None = None,
              before: Due | None = None, *, now_ts: float | None = None
              ) -> tuple[list[Alert], Due]:
        """:meth:`evaluate`, with the next due as a :class:`Due` (which checks wait).

        ``added`` is the step of the one fact added since the case was last judged, and
        ``before`` what that judgement returned (as the deadline index keeps it). Then not
        every check runs: the others would find what they found before.

        - Nothing due by ``now``: the checks that read ``added``, those of them that
          declare which facts change them (``rules.findings.changes_with``) only if the
          added fact (the state's last) may. If a skipped one still waits, ``before.at``
          stays a lower bound of the next due.
        - Something due by ``now`` (a deadline tick passes no ``added``): the checks that
          wait, and those that read ``added``. A check that waited for nothing had every
          finding raised for good, and finds the same in the same facts.
        - Not known which checks wait (``UNKNOWN``, or no ``before``): every check.

        ``now_ts`` is ``now`` in epoch seconds, if the caller has it.
        """
        floor: float | None = None
        pending = 0
        if now_ts is None:
            now_ts = now.timestamp()
        view = self.view(state)
        if added is not None and before is not None and (
                before.at is None or before.at > now_ts):
            found = self._by_step.get((state.item_code, added))  # (_triggered's, no call)
            plan, ran, tests = found if found is not None else self._triggered(
                state.item_code, added)
            if tests:  # the step's checks that name the facts that change them: if this one may
                fact = state.facts[-1]
                chosen = ran
                for bit, test in tests:
                    try:
                        if test(view, fact):
                            chosen |= bit
                    except Exception:  # then it runs, and what it raises is counted there
                        chosen |= bit
                if chosen != ran:
                    plan, ran = self._waiting(state.item_code, chosen), chosen
            pending = before.pending & ~ran  # skipped checks that still wait
            if pending:
                floor = before.at
        elif before is not None and before.pending != UNKNOWN:
            waiting = before.pending
            if added is not None:
                _, bits, tests = self._triggered(state.item_code, added)
                waiting |= bits
                for bit, _ in tests:  # all of them: one the fact does not change finds the same
                    waiting |= bit
            plan = self._waiting(state.item_code, waiting)
        else:
            plan = self._plan(state.item_code)
        alerts: list[Alert] = []
        next_due: float | None = None
        case_id, case_raised, sources = state.case_id, state.raised, state.sources
        # after a new fact, an alert its check no longer finds due is retracted: which
        # checks ran cleanly and what they found, only when something may be retracted
        watch = added is not None and bool(sources)
        ran: set[str] = set() if watch else _UNWATCHED
        found: set[str] = set() if watch else _UNWATCHED
        for rule, check, severity, params, bit, rank in plan:
            try:
                findings = check(view, params)
            except Exception:  # one faulty rule must not silence the others
                self.check_errors[rule] = self.check_errors.get(rule, 0) + 1
                log.exception("rule %s failed on case %s; other rules go on", rule, case_id)
                if self.on_check_error is not None:
                    self.on_check_error(rule)
                # judged again later: its bit waits, and the case stays scheduled
                pending |= bit
                retry = now_ts + max(CHECK_RETRY_SECONDS, now_ts - view.facts[-1].at)
                if next_due is None or retry < next_due:
                    next_due = retry
                continue
            if watch:
                ran.add(rule)
            for finding in findings:
                due = finding.due_at
                if due > now_ts and not case_raised:
                    # nothing raised on the case yet, and this is not due: no id needed
                    pending |= bit
                    if next_due is None or due < next_due:
                        next_due = due
                    continue
                alert_id = make_alert_id(rule, case_id, *finding.distinct)
                if watch and due <= now_ts:
                    found.add(alert_id)
                raised = case_raised.get(alert_id, 0)
                if raised < rank or (watch and due > now_ts):  # no longer due: retracted below
                    if due > now_ts:
                        pending |= bit
                        if next_due is None or due < next_due:
                            next_due = due
                        continue
                    raised = case_raised[alert_id] = rank
                    sources[alert_id] = rule
                    alerts.append(self._render(rule, severity, alert_id, view, finding, now))
                if severity != "red" or raised >= _ESCALATED:
                    continue
                days = self.ruleset.escalation_days(rule)
                if days is None:
                    continue  # the rule set says why it never escalates
                # an instant at 00:00 is the end (24:00) of the day before; computed only
                # once the red stage is raised (most findings never get here)
                escalation = self.working_time.working_deadline_epoch(
                    finding.event_time - _TICK, days)
                corrected = finding.corrected_at
                if corrected is not None and corrected <= escalation:
                    continue
                due = max(escalation, due)
                if due <= now_ts:
                    case_raised[alert_id] = _ESCALATED
                    alerts.append(self._render(rule, "escalated", alert_id, view, finding, now))
                else:
                    pending |= bit
                    if next_due is None or due < next_due:
                        next_due = due
        if watch:
            alerts.extend(self._retract(state, ran, found, now))
        at = next_due
        if floor is not None and (at is None or floor < at):
            at = floor
        if before is not None and before.at == at and before.pending == pending:
            return alerts, before  # waits for what it waited for
        return alerts, _new_tuple(Due, (at, pending))

    def _retract(self, state: CaseState, ran: set[str], found: set[str], now: datetime
                 ) -> list[Alert]:
        """The retracted versions of the alerts raised on ``state`` whose rule ran and no
        longer finds them due now that its last fact was added: that fact proved them
        wrong (a decision reported late that was taken in time, a step that did happen).

        The retraction repeats the alert as it was raised, found again in the facts before
        the last one, so it keeps its id, event time, actor and numbers."""
        raised = state.raised
        gone = [(alert_id, rule) for alert_id, rule in state.sources.items()
                if rule in ran and raised.get(alert_id, RETRACTED) > RETRACTED
                and alert_id not in found]
        if not gone:
            return []
        last = state.facts[-1]
        before = self.view(state.upto(len(state.facts) - 1))
        out: list[Alert] = []
        for alert_id, rule in gone:
            try:
                finding = next((f for f in self.checks[rule](before, self.ruleset.params(
                    rule, state.item_code)) if make_alert_id(rule, state.case_id, *f.distinct)
                    == alert_id), None)
            except Exception:  # counted where it raised first; nothing proven either way
                log.exception("rule %s failed on case %s before its last fact", rule,
                              state.case_id)
                finding = None
            if finding is None:
                # not found before the last fact either (the rule changed since it raised
                # it): this fact proved nothing; the alert stands, and is watched no more
                log.warning("alert %s (%s) of case %s is not found before its last fact; it "
                            "stands as it was raised", alert_id, rule, state.case_id)
                del state.sources[alert_id]
                continue
            rank = raised[alert_id]
            raised[alert_id] = RETRACTED
            severity: Severity = ("escalated" if rank >= _ESCALATED
                                  else self.ruleset.rules[rule].severity)
            out.append(self._render(rule, severity, alert_id, before, finding, now,
                                    retracted_by=(last.event_id,)))
        return out

    def _plan(self, item_code: str) -> list[_Planned]:
        """The enabled checks for an item with their severity, parameters and bit (in
        :attr:`Due.pending`), computed once per item (the rule set does not change while
        the engine runs)."""
        plan = self._plans.get(item_code)
        if plan is None:
            rs = self.ruleset
            plan = [(rule, check, rs.rules[rule].severity, rs.params(rule, item_code), 1 << i,
                     SEVERITY_RANK[rs.rules[rule].severity])
                    for i, (rule, check) in enumerate(self.checks.items())
                    if rs.enabled(rule, item_code)]
            self._plans[item_code] = plan
        return plan

    def _triggered(self, item_code: str, step: Step
                   ) -> tuple[list[_Planned], int, tuple[tuple[int, FactTest], ...]]:
        """The part of the item's plan whose checks read ``step`` (``rules.findings.reads``)
        and their bits; and the bit and test of each check that reads it but that a fact
        changes only if its test holds (``rules.findings.changes_with``), which are not in
        that part."""
        key = (item_code, step)
        found = self._by_step.get(key)
        if found is None:
            process = self.catalog[item_code].steps
            unlisted = step not in process and step not in OPTIONAL_STEPS
            plan = []
            tests = []
            for entry in self._plan(item_code):
                declared = declared_reads(entry[1])
                if (declared is None or step in declared
                        or (PROCESS in declared and step in process)
                        or (UNLISTED in declared and unlisted)):
                    test = declared_changes(entry[1])
                    if test is None:
                        plan.append(entry)
                    else:
                        tests.append((entry[4], test))
            found = self._by_step[key] = (plan, sum(entry[4] for entry in plan), tuple(tests))
        return found

    def _waiting(self, item_code: str, bits: int) -> list[_Planned]:
        """The part of the item's plan whose bits are in ``bits`` (``Due.pending``)."""
        key = (item_code, bits)
        plan = self._by_bits.get(key)
        if plan is None:
            plan = self._by_bits[key] = [e for e in self._plan(item_code) if e[4] & bits]
        return plan

    def next_due(self, state: CaseState) -> Due:
        """The earliest due instant of anything not raised yet, past or future, and which
        checks wait (to rebuild the deadline index after a restart or rebalance)."""
        return self.judge(state, _BEGINNING)[1]

    def _render(self, rule: str, severity: Severity, alert_id: str, view: CaseView, f: Finding,
                now: datetime, retracted_by: tuple[str, ...] = ()) -> Alert:
        config = self.ruleset.rules[rule]
        zh, en = config.message_zh, config.message_en
        raw = f.details
        details = raw.copy() if type(raw) is LazyDetails else dict(raw)
        if severity == "escalated":
            days = self.ruleset.escalation_days(rule)
            prefix = escalation_prefix(days)
            zh, en = prefix[0] + zh, prefix[1] + en
            details["escalated_after_working_days"] = days
        if retracted_by:
            prefix = retraction_prefix(retracted_by)
            zh, en = prefix[0] + zh, prefix[1] + en
            details["retracted_by"] = list(retracted_by)
        item: Item = view.item
        fields = _Blank(details)
        fields.update(case_id=view.case_id, item_code=item.code, item_zh=item.name_zh,
                      item_en=item.name_en, department=item.department)
        return Alert(
            alert_id=alert_id,
            rule=rule,
            severity=severity,
            case_id=view.case_id,
            item_code=item.code,
            department=item.department,
            actor=f.actor if f.holder_at is None else view.holder(f.holder_at) or f.actor,
            detected_at=now.astimezone(self.tz),
            event_time=datetime.fromtimestamp(f.event_time, self.tz),
            message_zh=zh.format_map(fields),
            message_en=en.format_map(fields),
            legal_basis=config.basis,
            evidence=list(f.evidence),
            status="retracted" if retracted_by else "open",
            details=details,
        )
