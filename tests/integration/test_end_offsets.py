"""The worker's own end-offsets client (agents/end_offsets.py) against a real Tansu broker:
the deadline timer asks it whether a partition is caught up before it fires by the clock."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from jiancha.agents.end_offsets import EndOffsetsReader
from jiancha.embedded import EmbeddedStack, free_port

pytestmark = pytest.mark.integration


async def _topic_with(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, len(counts), 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, n in counts.items():
            for i in range(n):
                await producer.send_and_wait(topic, b"%d" % i, partition=partition)
    finally:
        await producer.stop()


def test_the_reader_says_each_partitions_end_and_sees_records_written_since(
        stack: EmbeddedStack) -> None:
    topic = f"ends-{uuid.uuid4().hex[:8]}"
    reader = EndOffsetsReader(topic, {"bootstrap_servers": stack.bootstrap})

    async def go() -> tuple[dict[int, int] | None, dict[int, int] | None]:
        await _topic_with(stack.bootstrap, topic, {0: 3, 1: 0, 2: 5})
        try:
            first = await reader.ends([0, 1, 2])
            producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"later", partition=1)
            finally:
                await producer.stop()
            return first, await reader.ends([1])
        finally:
            await reader.close()

    first, later = asyncio.run(go())
    assert first == {0: 3, 1: 0, 2: 5}
    assert later == {1: 1}


def test_an_unreachable_broker_gives_no_answer_in_time_and_no_error() -> None:
    """None (the caller keeps the view of its last fetch), within the timeout."""
    reader = EndOffsetsReader("events", {"bootstrap_servers": f"127.0.0.1:{free_port()}"},
                              timeout=1.0)

    async def go() -> tuple[dict[int, int] | None, float]:
        began = time.monotonic()
        try:
            return await reader.ends([0]), time.monotonic() - began
        finally:
            await reader.close()

    ends, took = asyncio.run(go())
    assert ends is None and took < 5
