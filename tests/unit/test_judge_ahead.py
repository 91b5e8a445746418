"""Due cases judged ahead of their instant (agents/ahead.py, ``CaseDriver.judge_ahead``):
what the tick stores at the instant is what judging them then would have raised, and a
case an event reached meanwhile is judged afresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jiancha.agents.ahead import JudgedAhead
from jiancha.rules.case import CaseState
from jiancha.rules.driver import CaseDriver
from jiancha.rules.engine import Engine
from jiancha.rules.ingest import Gate, Rejected
from jiancha.rules.schedule import DeadlineIndex
from jiancha.rules.state_codec import decode_state, encode_state

TZ = UTC


class Table:
    """The case table as the worker reads it: encoded states by key, decoded on reading."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = dict(data)

    def get(self, key: bytes) -> CaseState | None:
        raw = self.data.get(key)
        return decode_state(raw, key) if raw is not None else None


@pytest.fixture(scope="module")
def workload() -> tuple[dict[bytes, bytes], Engine, datetime]:
    """The simulator's cases taken in, as encoded states, and where their time ends."""
    from jiancha.bench import _workload
    from jiancha.rules.factory import build_engine
    from jiancha.settings import DEFAULT_CATALOG_DIR

    lines, end, _ = _workload(3000)
    eng = build_engine(DEFAULT_CATALOG_DIR, on_calendar_fallback=lambda year: None)
    driver = CaseDriver(eng, Gate(eng.catalog))
    cases: dict[str, CaseState] = {}
    for raw in lines:
        try:
            event, state = driver.take(raw, cases, None)
        except Rejected:
            continue
        cases[event.case_id] = state
        driver.judge_added(state, event.step, event.occurred_at, event.occurred_at.timestamp(),
                           None)
    return {k.encode(): encode_state(s) for k, s in cases.items()}, eng, end


def _index(table: Table, eng: Engine) -> DeadlineIndex[bytes]:
    index: DeadlineIndex[bytes] = DeadlineIndex()
    for key in table.data:
        index.put(key, eng.next_due(table.get(key)))  # type: ignore[arg-type]
    return index


def _fire(driver: CaseDriver, index: DeadlineIndex[bytes], table: Table, at: float,
          ahead: JudgedAhead | None = None) -> list[str]:
    """The cases due by ``at`` judged (taken from ``ahead`` where it holds), stored and
    written as the worker does: the alerts, as JSON."""
    taken = ahead.against(table.data) if ahead is not None else None
    judged, _ = driver.judge_due(index, table, datetime.fromtimestamp(at, TZ), at, None, taken)
    for j in judged:
        encoded = taken.encoded.get(j.case_id) if taken is not None else None  # type: ignore[call-overload]
        table.data[j.case_id] = encoded if encoded is not None else encode_state(j.state)  # type: ignore[index]
    driver.settle(index, judged)
    return [a.model_dump_json() for j in judged for a in j.alerts]


def test_judged_ahead_the_tick_stores_what_judging_then_would_raise(
        workload: tuple[dict[bytes, bytes], Engine, datetime]) -> None:
    data, eng, end = workload
    driver = CaseDriver(eng, Gate(eng.catalog))
    then, early = Table(data), Table(data)
    then_index, early_index = _index(then, eng), _index(early, eng)
    ahead = JudgedAhead()
    fired = instants = judged_ahead = 0
    until = (end + timedelta(days=60)).timestamp()
    while (at := then_index.next_due()) is not None and at <= until:
        assert early_index.next_due() == at
        for key, j in ((j.case_id, j) for j in driver.judge_ahead(
                early_index, early, at, TZ, ahead.holds, 10**9)):
            ahead.keep(j, early.data[key], encode_state(j.state))  # type: ignore[index]
            judged_ahead += 1
        assert early.data == then.data  # judging ahead changes nothing stored
        alerts = _fire(driver, then_index, then, at)
        assert _fire(driver, early_index, early, at, ahead) == alerts
        assert early.data == then.data
        assert len(ahead) == 0  # each taken at its instant
        fired += len(alerts)
        instants += 1
    assert instants > 20 and fired > 200 and judged_ahead >= fired // 3


def test_a_case_an_event_reached_after_it_was_judged_ahead_is_judged_afresh(
        workload: tuple[dict[bytes, bytes], Engine, datetime]) -> None:
    data, eng, _ = workload
    driver = CaseDriver(eng, Gate(eng.catalog))
    table = Table(data)
    index = _index(table, eng)
    first = index.next_due()
    assert first is not None
    ahead = JudgedAhead()
    for j in driver.judge_ahead(index, table, first + 30 * 86400, TZ, ahead.holds, 10**9):
        ahead.keep(j, table.data[j.case_id], encode_state(j.state))  # type: ignore[index]
    key = next(iter(ahead.held))
    state = table.get(key)
    assert state is not None
    state.raised["made-up"] = 1  # what an event's judgement would change: the stored state
    table.data[key] = encode_state(state)
    taken = ahead.against(table.data)

    def due(key: bytes) -> float:
        return index.get(key).at  # type: ignore[return-value]

    assert taken.take(key, index.get(key), due(key)) is None  # not its state any more
    assert key not in ahead.held and taken.encoded == {}
    other = next(iter(ahead.held))
    moved = index.get(other)._replace(pending=0)  # the index waits for something else now
    assert taken.take(other, moved, due(other)) is None
    third = next(iter(ahead.held))
    assert taken.take(third, index.get(third), due(third)) is not None
    assert third in taken.encoded
    # one that waits next for something due by the time it is taken: judged then instead
    key, (_, j, _, _) = next((k, h) for k, h in ahead.held.items() if h[1].waits.at is not None)
    assert taken.take(key, index.get(key), j.waits.at) is None


def test_what_can_no_longer_be_taken_is_dropped() -> None:
    ahead = JudgedAhead(max_held=2)
    from jiancha.rules.driver import Judged
    from jiancha.rules.schedule import Due

    state = CaseState("K", "GA-0002")
    for key, at in ((b"a", 100.0), (b"b", 200.0)):
        ahead.keep(Judged(key, state, [], Due(None, 0), Due(at, 1)), b"raw", b"new")
    assert ahead.full
    ahead.prune(150.0)  # nothing in the index is due before 150: "a" was judged or moved
    assert set(ahead.held) == {b"b"} and not ahead.full
    ahead.prune(None)
    assert len(ahead) == 0
