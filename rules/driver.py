"""The one driver of the rules, for the worker (``agents/``) and for replay (``rules/replay*``).

What happens to an event and to a due deadline is written here once, so that the worker
and replay agree by construction: the gate, taking the event into its case, judging the
case, keeping the deadline index, firing what falls due; and the same for complaints.
Each caller brings its own ports: where case states are read from (a :class:`CaseStore`),
the time (an instant given to each call: the worker's per-partition clock, replay's
event-time clock), and where alerts go (an :data:`AlertSink`).

The worker stores alerts (one Redis round trip, awaited) *before* the state that records
them is written, and writes states and acknowledges offsets with nothing awaited in
between; so every step comes in two halves here: one that judges and returns what was
raised (:meth:`CaseDriver.take`, :meth:`CaseDriver.judge_added`,
:meth:`CaseDriver.judge_due`), and one that records it once the alerts are stored
(:meth:`CaseDriver.settle`). Replay, with nothing to await, runs both at once
(:meth:`CaseDriver.on_event`, :meth:`CaseDriver.fire_due`). Every alert the engine
returns goes to the sink unchanged and in the order returned (a red, its escalation, its
retraction: versions of one alert).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import NamedTuple, Protocol, cast

from jiancha.producers.contract import Alert, Complaint, Step

from .case import CaseState
from .complaints import ComplaintRules, ComplaintState
from .engine import Engine
from .ingest import Gate, GateEvent
from .schedule import DeadlineIndex, Due

#: What a case judged ahead counts toward a tick's limit of cases judged (storing is what
#: is left of it)
TAKEN_AHEAD = 0.125

#: Where alerts go, in the order the engine returned them.
AlertSink = Callable[[list[Alert]], None]


class JudgedAheadStore(Protocol):
    """The cases judged ahead of their due instant (:meth:`CaseDriver.judge_ahead`)."""

    def take(self, case_id: str | bytes, before: Due, now_ts: float, /) -> Judged | None:
        """The case's judgement ahead, taken out, if it still holds now that it is due
        (judged on the state it has now, waiting for ``before``, and waiting next for
        something after ``now_ts``); else None (judge it now)."""
        ...


class CaseStore(Protocol):
    """Where a driver reads a case's state (None: no state yet): by its id, or by its
    Kafka key (the id's bytes) for an event taken ``keyed``."""

    def get(self, case_id: str, /) -> CaseState | None: ...


class Judged(NamedTuple):
    """A due case judged: what it raised, and what it waits for next. ``before`` is what
    it waited for (due again at ``before.at`` if its alerts could not be stored).
    ``case_id``: the case's key in the deadline index (the worker's: the table's key)."""

    case_id: str | bytes
    state: CaseState
    alerts: list[Alert]
    waits: Due
    before: Due


class CaseDriver:
    """Gate → ingest → judge → deadline index → fire due, for the case rules."""

    def __init__(self, engine: Engine, gate: Gate) -> None:
        self.engine = engine
        self.gate = gate

    def take(self, raw: bytes, cases: CaseStore, now: datetime | None,
             now_ts: float | None = None, *, key: bytes | None = None, keyed: bool = False,
             arrived: datetime | None = None) -> tuple[GateEvent, CaseState]:
        """An event through the gate and into its case (raises
        :class:`~rules.ingest.Rejected`). Received at ``now`` (``now_ts`` in epoch
        seconds), which also bounds its future; ``now`` None: no future check, and
        received when it occurred, until the caller knows better (replay's clock moves
        with the event itself). ``arrived``: with ``now`` None, the replay clock before
        the event, at which its signing key must be valid (:meth:`Gate.parse`).
        ``keyed``: its Kafka ``key`` must be its case id."""
        gate = self.gate
        event = gate.parse(raw, now, arrived)
        if keyed:
            gate.check_key(event, key)
        # a keyed event's case read by its key (the case id's bytes, checked just above)
        state = cases.get(key if keyed else event.case_id)  # type: ignore[arg-type]
        gate.check_against_case(event, state, len(raw))
        received = event.occurred_at if now is None else now
        return event, self.engine.ingest(state, event, received, received_ts=now_ts)

    def judge_added(self, state: CaseState, step: Step, now: datetime, now_ts: float,
                    before: Due | None) -> tuple[list[Alert], Due]:
        """A case after one fact of ``step`` was added, ``before``: what it waited for
        when known (only the checks that read the step then run)."""
        return self.engine.judge(state, now, step, before, now_ts=now_ts)

    def judge_due(self, index: DeadlineIndex, cases: CaseStore, now: datetime, now_ts: float,
                  limit: float | None = None, ahead: JudgedAheadStore | None = None
                  ) -> tuple[list[Judged], float]:
        """Take the cases due by ``now`` off ``index`` (at most ``limit`` cases' worth) and
        judge them, running the checks that wait. A case that raised nothing is back in
        the index at once; those that raised are returned, to be put back by
        :meth:`settle` once their alerts are stored and their states written: until then
        the case table does not record those alerts, and a judgement of some checks only
        would take them as raised. Also returns how much of ``limit`` was used.

        ``ahead``: the cases judged ahead of their due instant (:meth:`judge_ahead`); one
        whose judgement still holds is taken as judged, and counts :data:`TAKEN_AHEAD` of a
        case toward ``limit`` (what is left of it is storing)."""
        entries = index.pop_due_entries(now_ts)
        judge = self.engine.judge
        raised: list[Judged] = []
        cost = 0.0
        budget = float("inf") if limit is None else limit
        for case_id, before in entries:
            done = ahead.take(case_id, before, now_ts) if ahead is not None else None
            if done is not None:
                cost += TAKEN_AHEAD
                alerts, waits = done.alerts, done.waits
                if alerts:
                    raised.append(done)
                else:
                    index.put(case_id, waits)
            else:
                cost += 1.0
                state = cases.get(case_id)
                if state is not None:
                    alerts, waits = judge(state, now, before=before, now_ts=now_ts)
                    if alerts:
                        raised.append(Judged(case_id, state, alerts, waits, before))
                    else:
                        index.put(case_id, waits)
            if cost >= budget:
                break
        return raised, cost

    def judge_ahead(self, index: DeadlineIndex, cases: CaseStore, until_ts: float,
                    tz: tzinfo, skip: Callable[[str | bytes], bool], limit: int,
                    after_ts: float = float("-inf")) -> list[Judged]:
        """Judge, each at its own due instant, up to ``limit`` cases due after
        ``after_ts`` (what is due already is the tick's) and by ``until_ts`` that ``skip``
        does not rule out, leaving them in the index: what they will raise
        when that instant comes if nothing reaches them before (the caller keeps it, and
        hands it to :meth:`judge_due` as ``ahead``). Deadlines of a working day all end
        at its midnight: judged ahead, a burst is only stored when it falls due."""
        judge = self.engine.judge
        out: list[Judged] = []
        for case_id, before in index.due_by(until_ts, skip, after_ts):
            state = cases.get(case_id)
            if state is None:
                continue
            at = cast(float, before.at)
            alerts, waits = judge(state, datetime.fromtimestamp(at, tz), before=before,
                                  now_ts=at)
            out.append(Judged(case_id, state, alerts, waits, before))
            if len(out) >= limit:
                break
        return out

    @staticmethod
    def settle(index: DeadlineIndex, judged: Iterable[Judged]) -> None:
        """Due cases whose alerts are stored (and states written) back in the index."""
        for j in judged:
            index.put(j.case_id, j.waits)

    # --- both halves at once (replay: nothing to await) ---------------------------------

    def on_event(self, index: DeadlineIndex, state: CaseState, step: Step, now: datetime,
                 now_ts: float, sink: AlertSink) -> None:
        """Judge a case after one fact was added, raise, and schedule what it waits for."""
        case_id = state.case_id
        before = index.get(case_id)
        alerts, due = self.engine.judge(state, now, step, before, now_ts=now_ts)
        if alerts:
            sink(alerts)
        if due is not before:  # the judgement returns what it waited for when that holds
            index.put(case_id, due)

    def fire_due(self, index: DeadlineIndex, cases: CaseStore, now: datetime, now_ts: float,
                 sink: AlertSink) -> None:
        """Everything due by ``now``, raised, and the cases scheduled again."""
        if index.may_be_due(now_ts):
            judged, _ = self.judge_due(index, cases, now, now_ts)
            for j in judged:
                sink(j.alerts)
            self.settle(index, judged)


class ComplaintFlow:
    """Complaint → its state → judge → deadline index → fire due, for the complaint rules
    (keyed by complaint id). Like :class:`CaseDriver`, it judges and returns; the caller
    stores the alerts before the state (the worker) or at once (replay)."""

    def __init__(self, rules: ComplaintRules) -> None:
        self.rules = rules

    def take(self, stored: ComplaintState | None, complaint: Complaint, now: datetime,
             partition: int = -1) -> tuple[ComplaintState, bool, list[Alert], float | None]:
        """A complaint or its closing into its state, judged by ``now``: the state,
        whether the complaint is seen for the first time, the alerts due, and when it
        is next due (epoch seconds; None: never)."""
        state, new = self.rules.ingest(stored, complaint, partition)
        alerts, nxt = self.rules.evaluate(state, now)
        return state, new, alerts, None if nxt is None else nxt.timestamp()

    def judge_due(self, index: DeadlineIndex, load: Callable[[str], ComplaintState | None],
                  now: datetime) -> list[tuple[ComplaintState, list[Alert], float | None]]:
        """The complaints due by ``now``, taken off ``index`` and judged: (state, alerts,
        next due). The caller stores the alerts, then the state if it raised, then
        schedules the next due."""
        out: list[tuple[ComplaintState, list[Alert], float | None]] = []
        for complaint_id in list(index.pop_due(now.timestamp())):
            state = load(complaint_id)
            if state is None:
                continue
            alerts, nxt = self.rules.evaluate(state, now)
            out.append((state, alerts, None if nxt is None else nxt.timestamp()))
        return out

    def fire_due(self, index: DeadlineIndex, complaints: dict[str, ComplaintState],
                 now: datetime, now_ts: float, sink: AlertSink) -> None:
        """Everything due by ``now`` (states held in memory), raised and rescheduled."""
        if index.may_be_due(now_ts):
            for state, alerts, nxt in self.judge_due(index, complaints.get, now):
                if alerts:
                    sink(alerts)
                index.schedule(state.complaint_id, nxt)
