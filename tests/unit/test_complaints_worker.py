"""The worker's complaints extension (agents/complaints.py) on plain fakes of its ports: a
dict for the complaints table, a repartition whose times the test sets, a supervisor
whose Redis write the test holds. The real Faust, Kafka and Redis are the integration
tests'."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, NamedTuple

import orjson

from jiancha.agents.complaints import Complaints
from jiancha.producers.contract import Alert, Complaint
from jiancha.rules.complaints import OVERDUE, RECEIVED, ComplaintState
from tests.unit.eventkit import engine, t

BY_ID = "jc-test-complaints-by-id"
RECEIVED_AT = t("2026-11-02 10:00")
# 15 working days from Monday Nov 2: the limit ends at 24:00 on Monday Nov 23
DEADLINE = t("2026-11-24 00:00")


class TP(NamedTuple):
    topic: str
    partition: int


def complaint(kind: str, when: datetime) -> dict[str, Any]:
    c: dict[str, Any] = {"schema_version": 1, "kind": kind, "complaint_id": "Q-OK",
                         "department": "gongan", "occurred_at": when.isoformat()}
    if kind == "complaint":
        c["category"] = "attitude"
    return c


class Table:
    """The complaints table as the extension uses it: ``get``, ``[]=``, ``data`` and the
    changelog (recorded)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog: list[tuple[int, bytes, bytes]] = []

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> None:
        self.changelog.append((partition, key, value))


class Supervisor:
    """Stores alerts. The first store after ``hold`` is set waits until the test lets it
    go (a new alert's Redis write in flight); the others go through at once (as one of
    an alert already stored does, sooner than a new one)."""

    ready = True

    def __init__(self) -> None:
        self.engine = engine()
        self.alerts: list[Alert] = []
        self.hold: asyncio.Event | None = None
        self.storing = asyncio.Event()

    async def publish(self, alerts: list[Alert], started: float) -> None:
        self.storing.set()
        hold, self.hold = self.hold, None
        if hold is not None:
            await hold.wait()
        self.alerts.extend(alerts)


class Repartition:
    """Each record is judged at its complaint's time; the timer fires by ``fire_at``."""

    def __init__(self) -> None:
        self.fire_at: datetime | None = None

    def processed(self, event: Any) -> datetime:
        return Complaint.model_validate_json(event.value).occurred_at

    def fire_time(self, partition: int) -> datetime | None:
        return self.fire_at


class Stream:
    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    async def events(self) -> AsyncIterator[Any]:
        for offset, record in enumerate(self.records):
            message = SimpleNamespace(partition=0, offset=offset, topic=BY_ID)
            yield SimpleNamespace(message=message, value=orjson.dumps(record))


def extension() -> tuple[Complaints, Supervisor, Table, Repartition]:
    sv = Supervisor()
    ctx = SimpleNamespace(settings=None, supervisor=sv, metrics=None,
                          complaint_seen=lambda *args: None)
    ext = Complaints(ctx)  # type: ignore[arg-type]
    table, rep = Table(), Repartition()
    ext.app = SimpleNamespace(rebalancing=False, assignor=SimpleNamespace(  # type: ignore[assignment]
        assigned_actives=lambda: {TP(BY_ID, 0)}))
    ext.table, ext.rep, ext.repartition = table, rep, BY_ID  # type: ignore[assignment]
    ext.received = SimpleNamespace(labels=lambda kind: SimpleNamespace(inc=lambda: None))  # type: ignore[assignment]
    return ext, sv, table, rep


def stored(table: Table) -> ComplaintState:
    return ComplaintState.decode(table.data[b"Q-OK"])


def test_a_closing_taken_while_the_timer_stores_an_alert_is_kept() -> None:
    """The complaint is taken judged a moment before its own time (a Kafka timestamp in
    whole milliseconds), so the timer raises its ``complaint.received``. The closing
    arrives while that alert is being stored: it is taken after the timer has written
    the state back, not overwritten by it, and the complaint is never overdue."""

    async def scenario() -> None:
        ext, sv, table, rep = extension()
        opened = complaint("complaint", RECEIVED_AT)
        opened_judged = RECEIVED_AT - timedelta(milliseconds=1)
        state, _, alerts, nxt = ext.flow.take(None, Complaint.model_validate(opened),
                                              opened_judged, 0)
        assert alerts == [] and nxt == RECEIVED_AT.timestamp()
        table[b"Q-OK"] = state.encode()
        ext.index(0).schedule("Q-OK", nxt)

        sv.hold = held = asyncio.Event()
        rep.fire_at = RECEIVED_AT + timedelta(minutes=1)
        tick = asyncio.create_task(ext.fire())
        await asyncio.wait_for(sv.storing.wait(), 5)  # the timer stores complaint.received
        closing = complaint("complaint_handled", t("2026-11-20 10:00"))
        agent = asyncio.create_task(ext.complaints(Stream([closing])))  # type: ignore[arg-type]
        for _ in range(20):
            await asyncio.sleep(0)
        held.set()
        await asyncio.wait_for(asyncio.gather(tick, agent), 5)

        after = stored(table)
        assert after.handled_at == t("2026-11-20 10:00").timestamp()
        assert after.raised  # the timer's complaint.received is recorded too
        assert [a.rule for a in sv.alerts] == [RECEIVED]  # once: the closing saw it recorded

        rep.fire_at = DEADLINE + timedelta(days=30)
        await asyncio.wait_for(ext.fire(), 5)
        assert [a.rule for a in sv.alerts] == [RECEIVED]

    asyncio.run(scenario())


def test_an_open_complaint_is_overdue_by_the_timer() -> None:
    """The same fakes raise ``complaint.overdue`` for a complaint never closed: the test
    above would pass on a timer that never fires."""

    async def scenario() -> None:
        ext, sv, table, rep = extension()
        await asyncio.wait_for(ext.complaints(Stream(  # type: ignore[arg-type]
            [complaint("complaint", RECEIVED_AT)])), 5)
        rep.fire_at = DEADLINE + timedelta(days=1)
        await asyncio.wait_for(ext.fire(), 5)
        assert [(a.rule, a.severity) for a in sv.alerts] == [(RECEIVED, "yellow"), (OVERDUE, "red")]
        assert stored(table).raised

    asyncio.run(scenario())
