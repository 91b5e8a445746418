"""The driver hands every alert the engine returns to the sink, unchanged and in the order
returned (the versions of one alert: raised, escalated, retracted), after an event and
when a case falls due, in replay, sharded replay and the worker alike."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.record import Record
from jiancha.agents.supervisor import Supervisor
from jiancha.producers.contract import Alert, Step
from jiancha.rules.case import CaseState
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.engine import Engine
from jiancha.rules.factory import build_engine
from jiancha.rules.ingest import Gate
from jiancha.rules.replay import replay
from jiancha.rules.replay_parallel import replay_parallel
from jiancha.rules.schedule import NOTHING, Due
from tests.unit.eventkit_integrity import CATALOG, ev

SUBMITTED = ev("R", "submitted", "2024-03-04 09:00")
AT = datetime.fromisoformat(SUBMITTED["occurred_at"])
DUE = AT + timedelta(days=1)
UNTIL = AT + timedelta(days=3)


def _version(n: int, **changes: Any) -> Alert:
    return Alert.model_construct(
        alert_id="a-1", rule="test.rule", severity="red", case_id="R", detected_at=AT,
        event_time=AT, message_zh=f"第{n}版", message_en=f"version {n}", legal_basis="",
        evidence=[], status="open", details={"n": n}).model_copy(update=changes)


#: what the engine returns after the event, then when the case falls due: a red, its
#: escalation, a correction (a status the engine may return, passed on as it is)
ON_EVENT = [_version(1), _version(2, severity="escalated")]
ON_DUE = [_version(3, status="retracted", details={"n": 3, "retracted_by": "x"})]


def _engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    eng = build_engine(CATALOG)

    def judge(state: CaseState, now: datetime, added: Step | None = None,
              before: Due | None = None, *, now_ts: float | None = None
              ) -> tuple[list[Alert], Due]:
        if added is not None:
            return list(ON_EVENT), Due(DUE.timestamp())
        return list(ON_DUE), NOTHING

    monkeypatch.setattr(eng, "judge", judge)
    return eng


def _dumped(alerts: list[Alert]) -> list[str]:
    return [a.model_dump_json() for a in alerts]


def test_replay_passes_every_version_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    eng = _engine(monkeypatch)
    lines = [orjson.dumps(SUBMITTED)]
    assert _dumped(replay(lines, eng, UNTIL).alerts) == _dumped(ON_EVENT + ON_DUE)
    assert _dumped(replay_parallel(lines, eng, UNTIL, workers=2).alerts) == _dumped(
        ON_EVENT + ON_DUE)


def test_the_worker_passes_every_version_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    eng = _engine(monkeypatch)
    stored: list[Alert] = []

    class Sink:
        async def publish(self, alerts: list[Alert]) -> list[str]:
            stored.extend(alerts)
            return ["new"] * len(alerts)

        async def close(self) -> None:
            pass

    sv = Supervisor(eng, Gate(eng.catalog), SimulatedClock(UNTIL, 1.0), Sink(), EngineMetrics())
    sv.rebuild_index([], {0})
    cases: dict[bytes, bytes] = {}

    def write(key: bytes, value: bytes, partition: int) -> None:
        cases[key] = value

    async def dead_letter(*args: Any) -> None:
        raise AssertionError(args)

    async def run() -> None:
        record = Record(b"R", orjson.dumps(SUBMITTED), 0, 0, None)
        assert _dumped(await sv.on_batch([record], cases, write, dead_letter)) == _dumped(
            ON_EVENT)
        assert _dumped(await sv.on_tick(cases, {0: (UNTIL, False)}, write)) == _dumped(ON_DUE)

    asyncio.run(run())
    assert _dumped(stored) == _dumped(ON_EVENT + ON_DUE)
