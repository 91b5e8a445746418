"""The department producer against a real Tansu broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import RequestTimedOutError
from aiokafka.structs import ConsumerRecord

from jiancha.embedded import EmbeddedStack
from jiancha.producers.client import DepartmentProducer, SyncDepartmentProducer
from jiancha.producers.contract import parse_event, verify_signature
from jiancha.producers.keys import DepartmentKeys
from jiancha.send import send_file
from jiancha.settings import ProducerSettings

pytestmark = pytest.mark.integration

TOPICS = ("events-async", "events-sync", "events-retry", "events-file")
KEY_A = b"dept-a-key"


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    s = EmbeddedStack()
    try:
        s.start_broker()
        asyncio.run(create_topics(s.bootstrap, TOPICS))
        yield s
    finally:
        s.stop()


async def create_topics(bootstrap: str, names: tuple[str, ...]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(n, 8, 1) for n in names])
        assert all(err[1] == 0 for err in resp.topic_errors), resp
    finally:
        await admin.close()


async def consume(bootstrap: str, topic: str, count: int, timeout: float = 20.0
                  ) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += records
        # nothing more than expected arrives
        for records in (await consumer.getmany(timeout_ms=300)).values():
            got += records
    finally:
        await consumer.stop()
    return got


def event(n: int, case: int, department: str = "DEPT-A", **changes: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "schema_version": 1,
        "event_id": f"{department}-{n:04d}",
        "case_id": f"办件-2026-{case:03d}",
        "item_code": "ITEM-001",
        "department": department,
        "step": "accepted",
        "occurred_at": f"2026-12-01T09:{n % 60:02d}:00+08:00",
        "actor": "handler-7",
        "channel": "window",
    }
    ev.update(changes)
    return ev


def check_records(records: list[ConsumerRecord[bytes, bytes]], sent: list[dict[str, Any]],
                  keys: list[bytes]) -> None:
    by_id = {e["event_id"]: e for e in sent}
    assert sorted(by_id) == sorted(orjson.loads(r.value)["event_id"] for r in records)
    partitions: dict[bytes, set[int]] = {}
    for r in records:
        payload = orjson.loads(r.value)
        original = by_id[payload["event_id"]]
        assert r.key == original["case_id"].encode("utf-8")
        partitions.setdefault(r.key, set()).add(r.partition)
        body = {k: v for k, v in payload.items() if k != "signature"}
        assert body == parse_event(original).wire_dict()
        assert r.value == orjson.dumps({**body, "signature": payload["signature"]})
        assert verify_signature(payload, keys)
    assert all(len(p) == 1 for p in partitions.values()), "one case, one partition"
    # per case, the order sent is the order stored
    for key in partitions:
        ids = [orjson.loads(r.value)["event_id"] for r in sorted(records, key=lambda r: r.offset)
               if r.key == key]
        assert ids == [e["event_id"] for e in sent if e["case_id"].encode() == key]


def test_async_producer_round_trip(stack: EmbeddedStack) -> None:
    events = [event(n, case=n % 5) for n in range(40)]

    async def run() -> DepartmentProducer:
        async with DepartmentProducer(stack.bootstrap, "DEPT-A", KEY_A,
                                      topic="events-async") as p:
            for ev in events[:30]:
                await p.send(ev)
            await p.flush()
            metas = await p.send_many(events[30:])
            assert len(metas) == 10 and {m.topic for m in metas} == {"events-async"}
        return p

    producer = asyncio.run(run())
    # Tansu 0.6 refuses InitProducerId from aiokafka, so 'auto' falls back to acks=all
    assert producer.idempotent is not None
    records = asyncio.run(consume(stack.bootstrap, "events-async", len(events)))
    assert len(records) == len(events)
    check_records(records, events, [KEY_A])
    assert len({r.partition for r in records}) > 1


def test_sync_producer_round_trip(stack: EmbeddedStack) -> None:
    events = [event(n, case=n % 3, department="DEPT-B") for n in range(12)]
    keys = DepartmentKeys.from_mapping({"DEPT-B": ["old-b", "new-b"]})
    with SyncDepartmentProducer(stack.bootstrap, "DEPT-B", keys=keys, topic="events-sync") as p:
        for ev in events[:6]:
            p.send(ev)
        p.flush()
        assert p.send_and_wait(events[6]).topic == "events-sync"
        p.send_many(events[7:])
    records = asyncio.run(consume(stack.bootstrap, "events-sync", len(events)))
    assert len(records) == len(events)
    check_records(records, events, [b"new-b"])


def test_lost_ack_is_retried_with_the_same_bytes(stack: EmbeddedStack) -> None:
    """The broker stores the record but the ack is lost: the producer sends the very same
    bytes again, and the engine's dedup on event_id drops the copy."""
    ev = event(1, case=9)

    async def run() -> bytes:
        async with DepartmentProducer(stack.bootstrap, "DEPT-A", KEY_A, topic="events-retry",
                                      retry_backoff=0.01) as p:
            kafka = p._kafka
            assert kafka is not None
            real_send = kafka.send
            calls = 0

            async def lose_first_ack(topic: str, value: bytes, key: bytes | None = None,
                                     timestamp_ms: int | None = None) -> asyncio.Future[Any]:
                nonlocal calls
                calls += 1
                fut = await real_send(topic, value, key=key, timestamp_ms=timestamp_ms)
                if calls > 1:
                    return fut
                await fut  # really stored...
                lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                lost.set_exception(RequestTimedOutError())  # ...but the ack never arrived
                return lost

            kafka.send = lose_first_ack  # type: ignore[method-assign]
            await p.send_and_wait(ev)
            assert calls == 2
            return p.encode(ev).value

    value = asyncio.run(run())
    records = asyncio.run(consume(stack.bootstrap, "events-retry", 2))
    assert len(records) == 2
    assert records[0].value == records[1].value == value
    assert records[0].key == records[1].key == ev["case_id"].encode()
    assert orjson.loads(value)["event_id"] == ev["event_id"]


def test_send_file_reports_bad_lines_and_sends_the_rest(stack: EmbeddedStack,
                                                        tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("DEPT-A: file-key-a\nDEPT-B: [{key: file-key-b}]\n", encoding="utf-8")
    good = [event(n, case=n, department="DEPT-A" if n % 2 else "DEPT-B") for n in range(6)]
    lines = [orjson.dumps(e).decode() for e in good]
    lines.insert(2, orjson.dumps(event(99, case=1, occurred_at="2026-12-01 09:00")).decode())
    lines.insert(4, "")  # blank lines are skipped, not errors
    lines.insert(6, "{not json")
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = ProducerSettings(broker_url=stack.broker_url, events_topic="events-file",
                                department_keys_file=keys_file)

    report = asyncio.run(send_file(path, settings, progress=False))

    assert (report.sent, report.invalid, report.failed) == (6, 2, 0), report.errors
    assert report.errors[0].startswith("line 3: ") and "occurred_at" in report.errors[0]
    assert report.errors[1].startswith("line 7: ") and "JSON" in report.errors[1]
    records = asyncio.run(consume(stack.bootstrap, "events-file", 6))
    assert len(records) == 6
    check_records(records, good, [b"file-key-a", b"file-key-b"])
    for r in records:
        payload = orjson.loads(r.value)
        key = b"file-key-a" if payload["department"] == "DEPT-A" else b"file-key-b"
        assert verify_signature(payload, [key])
