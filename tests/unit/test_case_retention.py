"""Finished cases leave the case table after their retention (settings
``finished_case_retention_days``): the table holds open cases, not every case ever seen."""

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

DAY = 86400.0


class _Sink:
    async def publish(self, alerts: list[Alert]) -> list[str]:
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


def _table() -> tuple[Supervisor, dict[bytes, bytes]]:
    eng = engine()
    sv = Supervisor(eng, Gate(eng.catalog), SimulatedClock(t("2026-03-20 12:00"), 1.0, time.time()),
                    _Sink(), EngineMetrics())
    sv.rebuild_index([], {0})
    done = [("submitted", "2026-03-02 09:00"), ("accepted", "2026-03-02 09:30"),
            ("reviewed", "2026-03-02 10:00", {"actor": "h2"}),
            ("decided", "2026-03-02 11:00", {"actor": "h3"}),
            ("delivered", "2026-03-02 12:00"), ("completed", "2026-03-02 13:00")]
    cases: dict[bytes, bytes] = {}
    records = [Record(e["case_id"].encode(), orjson.dumps(e), 0, n, None) for n, e in enumerate(
        [*events("T-SHORT", done, case_id="DONE"),
         *events("T-SHORT", [("submitted", "2026-03-02 09:00"), ("withdrawn", "2026-03-03 09:00")],
                 case_id="WITHDRAWN"),
         *events("T-SIMPLE", done[:2], case_id="OPEN")])]

    async def dead_letter(*args: Any) -> None:
        raise AssertionError(args)

    asyncio.run(sv.on_batch(records, cases, lambda k, v, p: cases.__setitem__(k, v), dead_letter))
    return sv, cases


def _sweep(sv: Supervisor, cases: dict[bytes, bytes], at: str, days: float) -> list[bytes]:
    removed: list[bytes] = []

    def delete(key: bytes, partition: int) -> None:
        cases.pop(key)
        removed.append(key)

    asyncio.run(sv.sweep_finished(cases, list(cases), {0: t(at).timestamp()}, days * DAY, delete))
    return sorted(removed)


def test_finished_cases_leave_after_their_retention_and_open_ones_stay() -> None:
    sv, cases = _table()
    assert _sweep(sv, cases, "2026-03-20 12:00", 30) == []  # within the retention
    assert _sweep(sv, cases, "2026-04-03 12:00", 30) == [b"DONE", b"WITHDRAWN"]
    assert list(cases) == [b"OPEN"]  # still open: kept however old
    assert _sweep(sv, cases, "2027-04-03 12:00", 30) == []
