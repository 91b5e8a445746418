"""The worker's progress figure (``/progress``, read by ``jiancha bench``) times a batch from
when it began: a backlog's first batch is a whole fetch, tens of thousands of events, and
timing from its end overstated the throughput by ~30%."""

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


class _Sink:
    async def publish(self, alerts: list[Alert]) -> list[str]:
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


def test_progress_runs_from_when_the_first_batch_began() -> None:
    eng = engine()
    sv = Supervisor(eng, Gate(eng.catalog), SimulatedClock(t("2026-03-10 09:00"), 1.0,
                                                             time.time()), _Sink(), EngineMetrics())
    judged: list[float] = []
    judge = sv._judge_added

    def slow_judge(*args: Any) -> Any:  # the batch takes measurable time
        judged.append(time.time())
        time.sleep(0.02)
        return judge(*args)

    sv._judge_added = slow_judge  # type: ignore[method-assign]
    evs = events("T-SHORT", [("submitted", "2026-03-02 10:00"), ("accepted", "2026-03-02 11:00")])
    records = [Record(e["case_id"].encode(), orjson.dumps(e), 0, i, None)
               for i, e in enumerate(evs)]
    cases: dict[bytes, bytes] = {}

    async def dead_letter(*args: Any) -> None:
        raise AssertionError(args)

    asyncio.run(sv.on_batch(records, cases, lambda k, v, p: cases.__setitem__(k, v),
                            dead_letter))
    assert sv.processed == 2
    assert sv.first_processed_at <= judged[0]  # taken before any event was judged
    assert sv.last_processed_at >= judged[-1] + 0.02
    assert 0 < sv.first_processed_cpu <= sv.last_processed_cpu  # the process's CPU time
    first = sv.first_processed_at
    asyncio.run(sv.on_batch([Record(records[0].key, orjson.dumps(
        events("T-SHORT", [("reviewed", "2026-03-03 10:00", {"opinion": "agree"})],
               case_id=evs[0]["case_id"])[0] | {"event_id": "later"}), 0, 2, None)],
        cases, lambda k, v, p: cases.__setitem__(k, v), dead_letter))
    assert sv.processed == 3 and sv.first_processed_at == first  # a later batch keeps it
