"""The batch loop's hooks for the extensions (agents/supervisor.py): what a reader reads of
each event is recorded once per batch, in order, and only once the batch's alerts are
stored; the forwarders get every record of the batch in order, the rejected with no event,
each accepted one with the fact its case took in."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.record import Record
from jiancha.agents.supervisor import Supervisor
from jiancha.producers.contract import Alert
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.ingest import Gate
from tests.unit.eventkit import engine, events, t


class _Sink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def publish(self, alerts: list[Alert]) -> list[str]:
        if self.fail:
            raise RuntimeError("the alert store is down")
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


def _supervisor(sink: _Sink) -> Supervisor:
    eng = engine()
    return Supervisor(eng, Gate(eng.catalog), SimulatedClock(t("2026-03-20 09:00"), 1.0,
                                                             time.time()), sink, EngineMetrics())


def _records() -> list[Record]:
    # a case that raises (intake late: accepted long after it was submitted), an event that
    # is refused, and a second case
    late = events("T-SHORT", [("submitted", "2026-03-02 10:00"), ("accepted", "2026-03-16 11:00")])
    other = events("T-SIMPLE", [("submitted", "2026-03-03 10:00")])
    raw = [orjson.dumps(e) for e in (late[0], other[0], late[1])]
    keys = [e["case_id"].encode() for e in (late[0], other[0], late[1])]
    out = [Record(k, r, 0, i, None) for i, (k, r) in enumerate(zip(keys, raw, strict=True))]
    out.insert(2, Record(b"X-1", b"not json", 0, 9, None))
    return out


async def _dead_letter(*args: Any) -> None:
    pass


def _hooked(sv: Supervisor) -> tuple[list[Any], list[Any]]:
    recorded: list[Any] = []
    forwarded: list[Any] = []
    sv.event_readers.append((lambda event, state: (event.event_id, len(state.facts)),
                             recorded.append))
    sv.forwarders.append(lambda batch, now: forwarded.append(
        [(rec.offset, None if event is None else event.event_id,
          None if fact is None else fact.event_id) for rec, event, fact in batch]))
    return recorded, forwarded


def test_reads_recorded_once_per_batch_in_order_and_records_forwarded() -> None:
    sv = _supervisor(_Sink())
    recorded, forwarded = _hooked(sv)
    records = _records()
    cases: dict[bytes, bytes] = {}
    alerts = asyncio.run(sv.on_batch(records, cases, lambda k, v, p: cases.__setitem__(k, v),
                                     _dead_letter))
    assert alerts  # the batch raised, so its reads waited for the alerts to be stored
    ids = [orjson.loads(r.value)["event_id"] for r in records if r.value != b"not json"]
    assert recorded == [[(ids[0], 1), (ids[1], 1), (ids[2], 2)]]
    assert forwarded == [[(0, ids[0], ids[0]), (1, ids[1], ids[1]), (9, None, None),
                          (2, ids[2], ids[2])]]


def test_nothing_read_is_recorded_when_the_alerts_are_not_stored() -> None:
    sv = _supervisor(_Sink(fail=True))
    recorded, forwarded = _hooked(sv)
    cases: dict[bytes, bytes] = {}
    with pytest.raises(RuntimeError):
        asyncio.run(sv.on_batch(_records(), cases, lambda k, v, p: cases.__setitem__(k, v),
                                _dead_letter))
    assert recorded == [] and forwarded == [] and cases == {}
