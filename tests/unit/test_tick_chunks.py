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
