"""The checks' ``reads`` declarations, on which the engine's partial evaluation rests.

After a fact is added the engine runs only the checks that read its step (of those that
declare which facts change them, ``changes_with``, only if the fact may), and at a
deadline's wake-up only the checks that wait (``Engine.judge(..., added, before)``). That
is exact only if no check reads a step it did not declare, no fact a check's test rejects
changes what it finds, and a check that waits for nothing finds nothing new in the same
facts, so:

- every declared check is run on recorded views (fresh for each check, details and all)
  of every prefix of many cases, and must read nothing else;
- replay with partial evaluation raises exactly the alerts (ids, stages, texts, detected
  times) of an engine whose checks all run at every judgement, on random cases (any step
  in any order, late arrivals, lawful or not; also events reported days late) and on the
  simulator's workload;
- so does the worker's supervisor (batches and deadline ticks), also when a tick's store
  fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiancha.producers.contract import Alert, Step
from jiancha.rules.case import CaseState
from jiancha.rules.catalog import OPTIONAL_STEPS
from jiancha.rules.engine import Engine
from jiancha.rules.findings import PROCESS, UNLISTED, CaseView, Check, declared_reads
from jiancha.rules.ingest import Gate, Rejected
from jiancha.rules.replay import replay
from jiancha.rules.schedule import Due
from tests.unit.eventkit_integrity import CO_DEPARTMENTS, CST, DEPARTMENT, engine

ENGINE = engine()
ITEMS = ("T-SHORT", "T-SIMPLE", "T-JOINT", "T-FEE")
BASE = datetime(2024, 3, 4, 9, 0, tzinfo=CST)
UNTIL = BASE + timedelta(days=120)


class RecordingView(CaseView):
    """A case view that records which steps a check asked for (all of them on a read of
    ``facts``)."""

    def __init__(self, state: CaseState, *args: Any) -> None:
        # a summary of its own, so that every derived value is computed (and its reads
        # recorded) again rather than read from what an earlier view kept
        super().__init__(CaseState(state.case_id, state.item_code, -1, state.facts), *args)
        self.read: set[Step] = set()

    @property  # type: ignore[override]
    def facts(self) -> list[Any]:
        self.read.update(Step)
        return self._facts

    @facts.setter
    def facts(self, value: list[Any]) -> None:
        self._facts = value

    def all(self, step: Step) -> list[Any]:
        self.read.add(step)
        return super().all(step)

    def first(self, step: Step) -> Any:
        self.read.add(step)
        return super().first(step)

    def having(self, steps: frozenset[Step]) -> set[Step]:
        self.read.update(steps)
        return super().having(steps)


class WholeEngine(Engine):
    """The oracle: every check runs at every judgement, after a fact and at a wake-up
    (whatever the index kept of which checks wait). It is still told that a fact was
    added: after one, an alert no longer found is retracted."""

    def judge(self, state: CaseState, now: datetime, added: Step | None = None,
              before: Due | None = None, *, now_ts: float | None = None
              ) -> tuple[list[Alert], Due]:
        return super().judge(state, now, added, now_ts=now_ts)


FULL = WholeEngine(ENGINE.catalog, ENGINE.ruleset, ENGINE.working_time, dict(ENGINE.checks))


def _allowed(check: Check, steps_of_item: Iterable[Step]) -> set[Step]:
    declared = declared_reads(check)
    assert declared is not None
    steps = {s for s in declared if isinstance(s, Step)}
    if PROCESS in declared:
        steps |= set(steps_of_item)
    if UNLISTED in declared:
        steps |= {s for s in Step if s not in steps_of_item and s not in OPTIONAL_STEPS}
    return steps


def _assert_reads_declared(states: Iterable[CaseState], eng: Engine = ENGINE) -> int:
    checked = 0
    for state in states:
        item = eng.catalog[state.item_code]
        for rule, check in eng.checks.items():
            if declared_reads(check) is None:
                continue
            view = RecordingView(state, item, eng.working_time, eng.ruleset.settings)
            params = eng.ruleset.params(rule, state.item_code)
            for finding in check(view, params):
                dict(finding.details)  # the alert's numbers are read from the case too
            undeclared = view.read - _allowed(check, item.steps)
            assert not undeclared, f"{rule} reads {sorted(undeclared)} without declaring it"
            checked += 1
    return checked


def _prefix_states(lines: list[bytes], eng: Engine = ENGINE) -> Iterable[CaseState]:
    """The state of each case after each of its accepted events, in file order."""
    gate = Gate(eng.catalog)
    cases: dict[str, CaseState] = {}
    for raw in lines:
        try:
            event = gate.parse(raw, None)
            gate.check_against_case(event, cases.get(event.case_id))
        except Rejected:
            continue
        state = eng.ingest(cases.get(event.case_id), event, event.occurred_at)
        cases[event.case_id] = state
        yield CaseState(state.case_id, state.item_code, -1, list(state.facts))


# --- random cases: any step, in any order ----------------------------------------------

ACTORS = ("a", "b", "c", "applicant-self")


@st.composite
def random_case(draw: st.DrawFn, n: int, late_minutes: int = 24 * 60
                ) -> list[tuple[datetime, dict[str, Any]]]:
    cid = f"R{n}"
    item = draw(st.sampled_from(ITEMS))
    departments = (DEPARTMENT[item], *CO_DEPARTMENTS.get(item, ()))
    out = []
    for k in range(draw(st.integers(1, 10))):
        step = draw(st.sampled_from(list(Step)))
        when = BASE + timedelta(minutes=draw(st.integers(0, 40 * 24 * 60)))
        attrs: dict[str, Any] = {}
        if step is Step.reviewed:
            attrs["opinion"] = draw(st.sampled_from(["agree", "disagree"]))
        if step is Step.decided:
            attrs["outcome"] = draw(st.sampled_from(["grant", "deny"]))
        if step in (Step.decided, Step.rejected_at_intake) and draw(st.booleans()):
            attrs["reason"] = "理由"
        if step is Step.suspended:
            attrs["reason"] = draw(st.sampled_from(["expert_review", "hearing", "lunch"]))
        if step is Step.extended:
            attrs["days"] = draw(st.sampled_from([5, 0, 99]))
            if draw(st.booleans()):
                attrs["approved_by"] = "head"
        if step is Step.fee_charged:
            attrs["amount"] = draw(st.sampled_from(["0", "50.00", "999"]))
        event: dict[str, Any] = {
            "schema_version": 1, "event_id": f"{cid}-{k}", "case_id": cid, "item_code": item,
            "department": draw(st.sampled_from(departments)), "step": step.value,
            "occurred_at": when.isoformat(),
            "actor": "applicant" if step in (Step.supplement_received, Step.withdrawn)
            else draw(st.sampled_from(ACTORS)),
        }
        if step is Step.submitted:
            event["actor"] = "applicant"
            event["applicant_id"] = "applicant-self"
        if attrs:
            event["attributes"] = attrs
        # arrives up to a day late: out of order within the case and across cases
        arrival = when + timedelta(minutes=draw(st.integers(0, late_minutes)))
        out.append((arrival, event))
    return out


@st.composite
def random_file(draw: st.DrawFn, late_minutes: int = 24 * 60) -> list[bytes]:
    planned = [p for n in range(draw(st.integers(1, 4)))
               for p in draw(random_case(n, late_minutes))]
    planned.sort(key=lambda p: p[0])
    return [orjson.dumps(e) for _, e in planned]


def _alerts(lines: list[bytes], eng: Engine) -> list[str]:
    result = replay(lines, eng, UNTIL, windows=False)
    return [a.model_dump_json() for a in result.alerts]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_file())
def test_checks_read_only_the_steps_they_declare(lines: list[bytes]) -> None:
    _assert_reads_declared(_prefix_states(lines))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_file())
def test_partial_evaluation_raises_what_full_evaluation_raises(lines: list[bytes]) -> None:
    assert _alerts(lines, ENGINE) == _alerts(lines, FULL)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_file(late_minutes=4 * 24 * 60))
def test_partial_evaluation_agrees_with_events_reported_late(lines: list[bytes]) -> None:
    """Events up to four days late, past the reporting delay: ``reporting.late`` runs only
    after a late fact (``changes_with``), and finds what it finds at every judgement."""
    assert _alerts(lines, ENGINE) == _alerts(lines, FULL)


# --- the simulator's workload (the production catalog) -----------------------------------


@pytest.fixture(scope="module")
def workload() -> tuple[list[bytes], datetime, Engine]:
    from jiancha.bench import _workload
    from jiancha.rules.factory import build_engine
    from jiancha.settings import DEFAULT_CATALOG_DIR

    lines, end, _ = _workload(3000)
    return lines, end, build_engine(DEFAULT_CATALOG_DIR, on_calendar_fallback=lambda year: None)


def test_partial_evaluation_agrees_on_the_simulator_workload(
        workload: tuple[list[bytes], datetime, Engine]) -> None:
    lines, end, eng = workload
    full = WholeEngine(eng.catalog, eng.ruleset, eng.working_time, dict(eng.checks))
    partial_alerts = replay(lines, eng, end + timedelta(days=60)).alerts
    full_alerts = replay(lines, full, end + timedelta(days=60)).alerts
    assert len(partial_alerts) > 50
    assert [a.model_dump_json() for a in partial_alerts] == \
        [a.model_dump_json() for a in full_alerts]


def test_checks_read_only_the_steps_they_declare_on_the_simulator_workload(
        workload: tuple[list[bytes], datetime, Engine]) -> None:
    lines, _, eng = workload
    assert _assert_reads_declared(_prefix_states(lines[:1500], eng), eng) > 10_000


def test_next_due_after_a_replay_lies_after_it(
        workload: tuple[list[bytes], datetime, Engine]) -> None:
    """What a rebuilt index wakes a case for is what it has not raised: after a replay to
    ``until`` (everything due by then raised) no case is due again before ``until``, also
    those with alerts raised (their dues are judged, not taken as pending)."""
    lines, end, eng = workload
    until = end + timedelta(days=60)
    states: dict[str, CaseState] = {}
    ingest = eng.ingest

    def keep(*args: Any, **kwargs: Any) -> CaseState:
        state = ingest(*args, **kwargs)
        states[state.case_id] = state
        return state

    eng.ingest = keep  # type: ignore[method-assign]
    try:
        replay(lines, eng, until)
    finally:
        del eng.ingest
    with_alerts = [s for s in states.values() if s.raised]
    assert len(with_alerts) > 50
    for state in states.values():
        due = eng.next_due(state).at
        assert due is None or due > until.timestamp(), state.case_id


def test_partial_evaluation_skips_checks(workload: tuple[list[bytes], datetime, Engine]) -> None:
    """The point of it: after a review or a completion the deadline checks do not run."""
    _, _, eng = workload
    for code in eng.catalog:
        full = {rule for rule, *_ in eng._plan(code)}
        for step in (Step.reviewed, Step.completed, Step.delivered):
            partial = {rule for rule, *_ in eng._triggered(code, step)[0]}
            assert "deadline.approaching" in full - partial


def test_a_decided_and_delivered_case_waits_for_nothing() -> None:
    """Which checks wait is kept beside the due: once the checks that waited have run and
    found nothing left, the case is not woken again for a due they no longer have."""
    from jiancha.rules.schedule import NOTHING, DeadlineIndex
    from tests.unit.eventkit_integrity import lawful

    gate = Gate(ENGINE.catalog)
    index = DeadlineIndex()
    state = None
    waited = []
    for e in lawful("W1", "T-SIMPLE", through="completed"):
        event = gate.parse(orjson.dumps(e), None)
        state = ENGINE.ingest(state, event, event.occurred_at)
        _, due = ENGINE.judge(state, event.occurred_at, event.step, index.get("W1"))
        index.put("W1", due)
        waited.append(due.at is not None)
    assert any(waited)  # the decision clock was running
    assert index.get("W1") == NOTHING


# --- the worker's path: batches, the deadline timer, a failed store -------------------------


class _Sink:
    """Alerts in memory; the next ``fail`` publishes of ticks raise (a Redis that answers
    with an error)."""

    def __init__(self) -> None:
        self.alerts: list[Any] = []
        self.fail = 0
        self.ticking = False

    async def publish(self, alerts: list[Any]) -> list[str]:
        if self.fail and self.ticking:
            self.fail -= 1
            raise RuntimeError("the store refused")
        self.alerts.extend(alerts)
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


def _worker_alerts(lines: list[bytes], eng: Engine, fail_ticks: int = 0,
                   tick_cases: int = 256) -> list[str]:
    """The lines through the supervisor as the worker drives it: batches of three records
    (the record time is the event's arrival), a deadline tick after each, and a last tick
    at ``UNTIL``. ``fail_ticks``: that many ticks' stores fail first; ``tick_cases``: due
    cases a tick judges per hold of the case lock."""
    import asyncio

    from jiancha.agents.metrics import EngineMetrics
    from jiancha.agents.record import Record
    from jiancha.agents.supervisor import Supervisor
    from jiancha.rules.clock import SimulatedClock

    sink = _Sink()
    sv = Supervisor(eng, Gate(eng.catalog), SimulatedClock(BASE, 1.0, BASE.timestamp()), sink,
                    EngineMetrics(), tick_cases=tick_cases)
    cases: dict[bytes, bytes] = {}
    sv.rebuild_index([], {0})

    async def dead_letter(*args: Any) -> None:
        pass

    def write(key: bytes, value: bytes, partition: int) -> None:
        cases[key] = value

    async def tick(now: datetime) -> None:
        sink.ticking = True
        with contextlib.suppress(RuntimeError):  # the next tick tries again
            await sv.on_tick(cases, {0: (now, False)}, write)
        sink.ticking = False

    async def run() -> None:
        sink.fail = fail_ticks
        records = []
        for offset, raw in enumerate(lines):
            payload = orjson.loads(raw)
            arrival = datetime.fromisoformat(payload["occurred_at"])
            records.append(Record(payload["case_id"].encode(), raw, 0, offset,
                                  arrival.timestamp()))
        records.sort(key=lambda r: r.offset)
        for i in range(0, len(records), 3):
            chunk = records[i:i + 3]
            await sv.on_batch(chunk, cases, write, dead_letter)
            await tick(sv.partition_time[0])
        for _ in range(fail_ticks + 1):
            await tick(UNTIL)

    asyncio.run(run())
    return sorted(a.alert_id + a.severity for a in sink.alerts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_file())
def test_the_worker_raises_with_partial_judgements_what_full_ones_raise(lines: list[bytes]) -> None:
    assert _worker_alerts(lines, ENGINE) == _worker_alerts(lines, FULL)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_file())
def test_a_tick_judging_one_case_at_a_time_raises_what_full_ones_raise(lines: list[bytes]) -> None:
    assert _worker_alerts(lines, ENGINE, tick_cases=1) == _worker_alerts(lines, FULL)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_file())
def test_a_tick_whose_store_failed_raises_its_alerts_later(lines: list[bytes]) -> None:
    """The cases a failed tick judged are due again (their states do not record those
    alerts): later events that judge only some checks raise what whole judgements raise."""
    assert _worker_alerts(lines, ENGINE, fail_ticks=2) == _worker_alerts(lines, FULL, fail_ticks=2)
