"""The supervisor keeps the case states it wrote last, decoded (``agents/state_cache.py``):
a kept state is used only while the table holds the very bytes it was written as, and a
batch that fails half-way leaves no changed state behind."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from agents.metrics import EngineMetrics
from agents.record import Record
from agents.state_cache import StateCache
from agents.supervisor import Supervisor
from producers.contract import Alert
from rules.case import CaseState
from rules.clock import SimulatedClock
from rules.ingest import Gate
from tests.unit.eventkit import engine, events, t


def _state(case_id: str) -> CaseState:
    return CaseState(case_id, "T-SHORT", 0)


def test_a_kept_state_serves_only_the_bytes_it_was_written_as() -> None:
    cache = StateCache(2)
    state = _state("A")
    stored = state.encode()
    cache.keep(b"A", stored, state)
    assert cache.take(b"A", stored) is state
    assert len(cache) == 0  # taken out: the caller changes it
    cache.keep(b"A", stored, state)
    copy = bytes(bytearray(stored))  # equal, but written by someone else (a recovery)
    other = cache.take(b"A", copy)
    assert other is not state and other == state
    assert (cache.hits, cache.misses) == (1, 1)


def test_the_least_recently_written_goes_first() -> None:
    cache = StateCache(2)
    kept = {k: (_state(k.decode()), _state(k.decode()).encode()) for k in (b"A", b"B", b"C")}
    for key in (b"A", b"B"):
        cache.keep(key, kept[key][1], kept[key][0])
    cache.keep(b"A", kept[b"A"][1], kept[b"A"][0])  # written again: now the most recent
    cache.keep(b"C", kept[b"C"][1], kept[b"C"][0])
    assert cache.take(b"B", kept[b"B"][1]) is not kept[b"B"][0]  # evicted
    assert cache.take(b"A", kept[b"A"][1]) is kept[b"A"][0]
    assert cache.take(b"C", kept[b"C"][1]) is kept[b"C"][0]
    none = StateCache(0)
    none.keep(b"A", kept[b"A"][1], kept[b"A"][0])
    assert len(none) == 0


class _Sink:
    def __init__(self) -> None:
        self.fail = 0
        self.stored: list[str] = []

    async def publish(self, alerts: list[Alert]) -> list[str]:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("redis down")
        self.stored += [a.alert_id for a in alerts]
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


def _run(capacity: int, fail_second: bool) -> tuple[dict[bytes, bytes], list[str], Supervisor]:
    eng = engine()
    sink = _Sink()
    sv = Supervisor(eng, Gate(eng.catalog), SimulatedClock(t("2026-03-10 09:00"), 1.0, time.time()),
                    sink, EngineMetrics(), state_cache=StateCache(capacity))
    evs = events("T-SHORT", [("submitted", "2026-03-02 10:00"), ("accepted", "2026-03-02 11:00"),
                             ("decided", "2026-03-03 10:00", {"outcome": "deny"})],
                 case_id="C-1")
    records = [Record(e["case_id"].encode(), orjson.dumps(e), 0, i, None)
               for i, e in enumerate(evs)]
    cases: dict[bytes, bytes] = {}

    async def dead_letter(*args: Any) -> None:
        raise AssertionError(f"dead-lettered: {args}")

    def write(key: bytes, value: bytes, partition: int) -> None:
        cases[key] = value

    asyncio.run(sv.on_batch(records[:2], cases, write, dead_letter))
    if fail_second:  # the deny without reason is raised; storing it fails once
        sink.fail = 1
        with pytest.raises(ConnectionError):
            asyncio.run(sv.on_batch(records[2:], cases, write, dead_letter))
    # delivered (again): not a duplicate of a fact a failed batch left in a kept state
    asyncio.run(sv.on_batch(records[2:], cases, write, dead_letter))
    return cases, sink.stored, sv


def _facts(cases: dict[bytes, bytes]) -> dict[bytes, Any]:
    """The states without the received times (the clock's readings differ by run)."""
    out = {}
    for key, raw in cases.items():
        state = CaseState.decode(raw)
        out[key] = ([(f.event_id, f.step, f.at, f.attrs) for f in state.facts], state.raised)
    return out


@pytest.mark.parametrize("fail_second", [False, True])
def test_the_worker_with_kept_states_writes_what_it_writes_without(fail_second: bool) -> None:
    with_cache, alerts, sv = _run(4096, fail_second)
    without, alerts_without, _ = _run(0, fail_second)
    assert _facts(with_cache) == _facts(without) and alerts == alerts_without
    assert len(set(alerts)) == len(alerts)  # each once, the deny without reason among them
    assert [a.split("-")[0] for a in alerts].count("dec") == 1
    # the second batch used the state the first one wrote, unless a failure took it out
    assert (sv.state_cache.hits, sv.state_cache.misses) == ((1, 0) if not fail_second else (1, 1))
