"""The worker never crashes on an event: every input is either ingested or dead-lettered
with a reason, and counted (hypothesis: random bytes, wrong types, huge fields, far-future
and far-past timestamps, duplicate ids, steps for unknown cases)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.record import Record
from jiancha.agents.supervisor import Supervisor
from jiancha.producers.contract import Alert, Step
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.factory import build_engine
from jiancha.rules.ingest import REJECT_REASONS, Gate
from jiancha.rules.state_codec import decode_state
from tests.integration.conftest import TEST_CATALOG

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ENGINE = build_engine(TEST_CATALOG)


class MemorySink:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def publish(self, alerts: list[Alert]) -> list[str]:
        self.alerts.extend(alerts)
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


def _supervisor() -> Supervisor:
    return Supervisor(ENGINE, Gate(ENGINE.catalog), SimulatedClock(NOW, 0.0001, 0.0),
                      MemorySink(), EngineMetrics())


texts = st.one_of(st.text(max_size=20), st.just(""), st.text(min_size=129, max_size=300),
                  st.just("x" * 70_000))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), texts)
timestamps = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # naive: no offset
    st.just((NOW - timedelta(hours=1)).isoformat()), texts, scalars)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)


@st.composite
def events(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "event", "event", "event"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()  # stdlib: big ints, NaN
    ev: dict[str, Any] = {
        "schema_version": draw(st.sampled_from([1, 1, 1, 2, "1", None])),
        "event_id": draw(st.sampled_from(["e1", "e2", "e3"]) | texts),
        "case_id": draw(st.sampled_from(["C1", "C2", "NEVER-SUBMITTED"]) | texts),
        "item_code": draw(st.sampled_from(["T-SHORT", "T-FEE", "T-JOINT", "NOPE"])),
        "department": draw(st.sampled_from(["gongan", "gongshang", "jianshe"]) | texts),
        "step": draw(st.sampled_from([s.value for s in Step]) | texts),
        "occurred_at": draw(timestamps),
        "actor": draw(st.sampled_from(["h1", "h2", "applicant"]) | scalars),
        "applicant_id": draw(st.sampled_from(["a1"]) | scalars),
        "attributes": draw(st.fixed_dictionaries({}, optional={
            "outcome": st.sampled_from(["grant", "deny"]) | scalars,
            "opinion": st.sampled_from(["agree", "disagree"]) | scalars,
            "reason": scalars, "days": st.integers(-5, 1000) | scalars,
            "amount": st.sampled_from(["50.00", "1e9", "-1", "NaN", "Infinity"]) | scalars,
            "items": json_values, "approved_by": scalars,
        }) | json_values),
    }
    for key in draw(st.sets(st.sampled_from(sorted(ev)), max_size=2)):
        del ev[key]
    return json.dumps(ev).encode()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=12))
def test_no_event_crashes_the_worker_and_none_is_lost(batch: list[bytes]) -> None:
    sv = _supervisor()
    table: dict[bytes, bytes] = {}
    dead: list[tuple[str, str]] = []

    async def dead_letter(record: Record, reason: str, detail: str) -> None:
        assert reason in REJECT_REASONS, (reason, detail)  # never "internal_error"
        assert detail
        dead.append((reason, detail))

    def key_of(raw: bytes) -> bytes:
        try:
            return str(orjson.loads(raw).get("case_id", "")).encode()
        except Exception:
            return b"?"

    async def run() -> int:
        # the first half one at a time, the rest as one batch (a case's events in one
        # batch see each other: duplicates within it are caught too)
        half = len(batch) // 2
        for offset, raw in enumerate(batch[:half]):
            await sv.on_event(key_of(raw), raw, 0, offset, None, table, dead_letter)
        await sv.on_batch([Record(key_of(raw), raw, 0, half + i, None)
                           for i, raw in enumerate(batch[half:])], table,
                          lambda k, v, p: table.__setitem__(k, v), dead_letter)
        # every record is a fact of its case or dead-lettered, never neither
        ingested = sum(len(decode_state(v, k).facts) for k, v in table.items())
        # and the deadline timer copes with whatever state those left behind
        later = {0: (NOW + timedelta(days=400), True)}
        await sv.on_tick(table, later, lambda k, v, p: table.__setitem__(k, v))
        return ingested

    ingested = asyncio.run(run())
    assert ingested + len(dead) == len(batch)
    assert ENGINE.check_errors == {}, ENGINE.check_errors
