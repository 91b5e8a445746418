"""In the worker the signing key is chosen by when the record reached Kafka (its record
timestamp on the worker's clock), whatever the event says of itself."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson

from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.record import Record
from jiancha.agents.supervisor import Supervisor
from jiancha.producers.contract import Alert
from jiancha.producers.keys import DepartmentKeys
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.factory import build_engine
from jiancha.rules.ingest import Gate
from tests.events import at, event
from tests.integration.conftest import TEST_CATALOG

ENGINE = build_engine(TEST_CATALOG)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # 17:00 +08:00, the old key retired at 00:00
KEYS = DepartmentKeys.from_mapping({
    "gongan": [{"key": "old-gongan", "not_after": "2026-12-01T00:00:00+08:00"}, "new-gongan"],
})


class MemorySink:
    async def publish(self, alerts: list[Alert]) -> list[str]:
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


def _judge(raw: bytes, record_at: datetime) -> list[tuple[str, str]]:
    """Dead letters of one record that reached Kafka at ``record_at`` (worker clock)."""
    anchor = time.time()
    clock = SimulatedClock(NOW, 1.0, anchor)
    sv = Supervisor(ENGINE, Gate(ENGINE.catalog, KEYS), clock, MemorySink(), EngineMetrics())
    dead: list[tuple[str, str]] = []

    async def dead_letter(record: Record, reason: str, detail: str) -> None:
        dead.append((reason, detail))

    record_time = anchor + (record_at - NOW).total_seconds()
    asyncio.run(sv.on_event(b"C1", raw, 0, 0, record_time, {}, dead_letter))
    return dead


def test_a_backdated_event_signed_with_a_retired_key_is_dead_lettered() -> None:
    raw = orjson.dumps(event("C1", "submitted", "2026-11-30 16:00", key=b"old-gongan"))
    assert _judge(raw, at("2026-11-30 23:00")) == []  # reached Kafka while the key was valid
    [(reason, detail)] = _judge(raw, at("2026-12-01 10:00"))
    assert reason == "bad_signature" and "2026-12-01" in detail
