"""Dead letters: delivered before the batch goes on, retried, never too large to send."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
from aiokafka.errors import KafkaTimeoutError, RecordTooLargeError

from jiancha.agents.dead_letters import ENVELOPE_HEAD_BYTES, DeadLetterWriter
from jiancha.agents.record import Record

RECORD = Record(b"C1", b'{"not": "an event"}', 3, 42, None)


class Broker:
    """A dead-letter topic that fails as told, then keeps what it is sent."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.kept: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []

    async def send(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        self.kept.append((key, value, dict(headers)))


def _write(broker: Broker, record: Record, max_bytes: int = 1_000_000) -> None:
    errors: list[Exception] = []
    writer = DeadLetterWriter(broker.send, "approval-events", max_bytes, max_backoff=0.01,
                              on_error=errors.append)
    asyncio.run(writer(record, "invalid_json", "not JSON"))


def test_a_rejected_record_goes_as_it_is_with_its_reason() -> None:
    broker = Broker()
    _write(broker, RECORD)
    ((key, value, headers),) = broker.kept
    assert (key, value) == (RECORD.key, RECORD.value)
    assert headers["jiancha-reason"] == b"invalid_json"
    assert headers["jiancha-source"] == b"approval-events:3:42"


def test_a_failed_delivery_is_retried_not_dropped() -> None:
    broker = Broker([KafkaTimeoutError(), KafkaTimeoutError()])
    _write(broker, RECORD)
    assert len(broker.kept) == 1


def test_a_record_over_the_limit_goes_as_an_envelope() -> None:
    big = Record(b"C2", b"x" * 50_000, 0, 7, None)
    broker = Broker()
    _write(broker, big, max_bytes=20_000)
    ((key, value, headers),) = broker.kept
    assert key == big.key
    letter = orjson.loads(value)
    assert headers["jiancha-envelope"] == b"1"
    assert letter["size"] == 50_000 and letter["reason"] == "invalid_json"
    assert letter["sha256"] == hashlib.sha256(big.value).hexdigest()
    assert len(value) < 2 * ENVELOPE_HEAD_BYTES + 1000


def test_a_record_the_broker_finds_too_large_goes_as_an_envelope() -> None:
    broker = Broker([RecordTooLargeError()])
    _write(broker, RECORD)
    ((_, value, headers),) = broker.kept
    assert headers["jiancha-envelope"] == b"1"
    assert orjson.loads(value)["size"] == len(RECORD.value)
