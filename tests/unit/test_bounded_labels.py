"""Inputs cannot grow the worker's metrics: department labels come from the catalog only."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from prometheus_client import generate_latest

from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.record import Record
from jiancha.agents.supervisor import Supervisor
from jiancha.producers.contract import Alert
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.ingest import Gate
from tests.unit.eventkit import engine, t


class _Sink:
    async def publish(self, alerts: list[Alert]) -> list[str]:
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


def test_ten_thousand_invented_departments_leave_metrics_bounded() -> None:
    eng = engine()
    metrics = EngineMetrics()
    sv = Supervisor(eng, Gate(eng.catalog), SimulatedClock(t("2026-03-02 12:00"), 1.0, time.time()),
                    _Sink(), metrics)
    sv.rebuild_index([], {0})
    before = len(generate_latest(metrics.registry))
    records = [Record(f"X{n}".encode(), orjson.dumps({
        "schema_version": 1, "event_id": f"X{n}", "case_id": f"X{n}", "item_code": "T-SHORT",
        "department": f"invented-{n}", "step": "submitted",
        "occurred_at": "2026-03-02T10:00:00+08:00", "actor": "applicant",
        "applicant_id": "sha256:a"}), 0, n, None) for n in range(10_000)]
    rejected: list[str] = []

    async def dead_letter(record: Record, reason: str, detail: str) -> None:
        rejected.append(reason)

    cases: dict[bytes, Any] = {}
    asyncio.run(sv.on_batch(records, cases, lambda k, v, p: cases.__setitem__(k, v), dead_letter))
    assert set(rejected) == {"department_mismatch"} and len(rejected) == 10_000
    exposition = generate_latest(metrics.registry)
    assert b"invented-" not in exposition
    assert len(exposition) - before < 2_000  # one more rejection reason, nothing per input
    assert sv.department_label("invented-1") == "unknown"
    assert sv.department_label("gongan") == "gongan"
