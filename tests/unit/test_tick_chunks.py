"""A deadline tick judges its due cases a few at a time (``Supervisor.tick_cases``) and lets
batches of events take the case lock in between, and while it stores their alerts:
deadlines fall due in bursts (many cases share the end of a working day), and a burst
judged under one hold of the lock held up the live stream for as long as it took."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.record import Record
from jiancha.agents.supervisor import Supervisor
from jiancha.producers.contract import Alert
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.ingest import Gate
from tests.unit.eventkit import engine, events, t

CASES = 10


class _Sink:
    """Records the size of each store; each store lets other tasks run, as Redis does."""

    def __init__(self) -> None:
        self.stores: list[int] = []

    async def publish(self, alerts: list[Alert]) -> list[str]:
        await asyncio.sleep(0)
        self.stores.append(len(alerts))
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


def _supervisor() -> tuple[Supervisor, _Sink, dict[bytes, bytes]]:
    eng = engine()
    sink = _Sink()
    sv = Supervisor(eng, Gate(eng.catalog), SimulatedClock(t("2026-03-02 12:00"), 1.0,
                                                             time.time()), sink, EngineMetrics())
    sv.rebuild_index([], {0})
    cases: dict[bytes, bytes] = {}
    records = []
    for n in range(CASES):  # submitted and accepted at the same instants: due together
        for e in events("T-SHORT", [("submitted", "2026-03-02 10:00"),
                                    ("accepted", "2026-03-02 11:00")], case_id=f"B{n}"):
            records.append(Record(e["case_id"].encode(), orjson.dumps(e), 0, len(records),
                                  None))  # received now (12:00)

    async def dead_letter(*args: Any) -> None:
        raise AssertionError(args)

    asyncio.run(sv.on_batch(records, cases, lambda k, v, p: cases.__setitem__(k, v),
                            dead_letter))
    assert sink.stores == []  # nothing due yet
    return sv, sink, cases


def _write(cases: dict[bytes, bytes]) -> Any:
    return lambda k, v, p: cases.__setitem__(k, v)


def test_a_burst_is_judged_a_few_cases_at_a_time_and_fired_whole() -> None:
    sv, sink, cases = _supervisor()
    sv.tick_cases = 3
    later = {0: (t("2026-06-30 12:00"), True)}  # every deadline of every case is past
    fired = asyncio.run(sv.on_tick(cases, later, _write(cases)))
    assert {a.case_id for a in fired} == {f"B{n}" for n in range(CASES)}
    assert len(sink.stores) == 4 and sum(sink.stores) == len(fired)  # 3 + 3 + 3 + 1 cases
    # the states record what was raised: a second tick fires nothing again
    assert asyncio.run(sv.on_tick(cases, later, _write(cases))) == []


def test_a_batch_waiting_for_the_lock_goes_while_the_first_part_of_a_burst_is_stored() -> None:
    sv, sink, cases = _supervisor()
    sv.tick_cases = 3
    later = {0: (t("2026-06-30 12:00"), True)}
    stores_seen: list[int] = []

    async def a_batch() -> None:  # as on_batch takes the lock
        async with sv.case_lock:
            stores_seen.append(len(sink.stores))

    async def run() -> list[Alert]:
        tick = asyncio.create_task(sv.on_tick(cases, later, _write(cases)))
        await asyncio.sleep(0)  # the tick judges its first part, and stores it unlocked
        await a_batch()
        return await tick

    fired = asyncio.run(run())
    assert stores_seen == [0]  # while the first part is stored, not after the whole burst
    assert {a.case_id for a in fired} == {f"B{n}" for n in range(CASES)}


def test_the_whole_burst_under_one_hold_with_a_large_limit() -> None:
    sv, sink, cases = _supervisor()
    later = {0: (t("2026-06-30 12:00"), True)}
    fired = asyncio.run(sv.on_tick(cases, later, _write(cases)))
    assert len(sink.stores) == 1 and sink.stores[0] == len(fired) >= CASES


def test_the_next_part_is_judged_while_the_last_is_stored_two_at_most() -> None:
    """A part of a burst is taken while the one before it is stored (Redis runs one while
    the worker sends the next), never more than two in the store at once, and every case
    is fired and its state written."""
    sv, _, cases = _supervisor()
    sv.tick_cases = 3
    later = {0: (t("2026-06-30 12:00"), True)}
    go_on = asyncio.Event()
    storing = 0
    most = 0
    in_flight_seen: list[int] = []

    async def held_store(alerts: list[Alert]) -> list[str]:
        nonlocal storing, most
        storing += 1
        most = max(most, storing)
        in_flight_seen.append(len(sv.in_flight))
        await go_on.wait()
        storing -= 1
        return ["new"] * len(alerts)

    sv.sink.publish = held_store  # type: ignore[method-assign]

    async def run() -> list[Alert]:
        tick = asyncio.create_task(sv.on_tick(cases, later, _write(cases)))
        for _ in range(20):
            await asyncio.sleep(0)
        parked = in_flight_seen[:]
        go_on.set()
        fired = await tick
        assert parked == [3, 6]  # the second part taken while the first waits in the store
        return fired

    fired = asyncio.run(run())
    assert most == 2 and sv.in_flight == {}
    assert {a.case_id for a in fired} == {f"B{n}" for n in range(CASES)}
    assert asyncio.run(sv.on_tick(cases, later, _write(cases))) == []  # states record them


def test_a_part_that_fails_to_store_leaves_the_next_stored_and_its_cases_due_again() -> None:
    """The store of one part raises (not a Redis outage, which the sink waits out): the
    part taken after it is still stored and written, the failed part's cases are due
    again, and the tick raises."""
    sv, sink, cases = _supervisor()
    sv.tick_cases = 3
    later = {0: (t("2026-06-30 12:00"), True)}
    publish = sink.publish
    calls = 0

    async def first_fails(alerts: list[Alert]) -> list[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("the store refused the first part")
        return await publish(alerts)

    sink.publish = first_fails  # type: ignore[method-assign]
    try:
        asyncio.run(sv.on_tick(cases, later, _write(cases)))
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failed store was not raised")
    assert len(sink.stores) == 1 and sv.in_flight == {}  # the second part, stored
    sink.publish = publish  # type: ignore[method-assign]
    fired = asyncio.run(sv.on_tick(cases, later, _write(cases)))
    assert len({a.case_id for a in fired}) == CASES - 3  # the first part's, and the rest


def test_a_tick_that_does_not_wait_returns_with_its_last_part_in_the_store() -> None:
    """The timer's ticks do not wait for their last part to be stored (deadlines of close
    instants follow each other at the end of a day): the tick returns with it in the store
    and its cases in flight; the next tick returns its alerts."""
    sv, sink, cases = _supervisor()
    later = {0: (t("2026-06-30 12:00"), True)}
    go_on = asyncio.Event()
    publish = sink.publish

    async def held_store(alerts: list[Alert]) -> list[str]:
        await go_on.wait()
        return await publish(alerts)

    sink.publish = held_store  # type: ignore[method-assign]

    async def run() -> tuple[list[Alert], int, list[Alert]]:
        first = await asyncio.wait_for(sv.on_tick(cases, later, _write(cases), wait=False), 1)
        in_flight = len(sv.in_flight)
        assert len(sv.storing) == 1 and not sv.storing[0].done()
        go_on.set()
        return first, in_flight, await sv.on_tick(cases, later, _write(cases))

    first, in_flight, second = asyncio.run(run())
    assert first == [] and in_flight == CASES
    assert {a.case_id for a in second} == {f"B{n}" for n in range(CASES)}
    assert sv.storing == [] and sv.in_flight == {}


def test_cases_are_judged_ahead_a_few_per_hold_of_the_case_lock() -> None:
    """Judging ahead holds the case lock for ``ahead_cases`` judgements at a time, each
    hold followed by a pause: a batch of events (and the tick it may wake) waits for a few
    ms of that work, not for a whole hold of a tick's size."""
    sv, _, cases = _supervisor()
    sv.ahead_cases = 3
    due = sv.index(0).next_due()
    assert due is not None
    held: list[int] = []

    async def rest(seconds: float) -> None:
        held.append(len(sv.ahead) - sum(held))
        await asyncio.sleep(0)

    judged = asyncio.run(sv.judge_ahead(cases, {0: (due - 1.0, due + 1.0)}, lambda: False, rest))
    assert judged == CASES == len(sv.ahead)
    assert held[:4] == [3, 3, 3, 1] and set(held[4:]) <= {0}
