"""The complaint-centre producer (行政效能投诉中心): complaints and their closings to the
``complaints`` topic (contract.md).

A complaint is validated against the contract model before anything is sent (a bad one
raises :class:`ComplaintValidationError` naming each field) and keyed by its ``case_id``,
or by its ``department`` when it names no case. Its closing is a ``complaint_handled``
record with the same ``complaint_id`` (:meth:`ComplaintProducer.handled`). The worker
repartitions by ``complaint_id``, so the two meet whatever their keys.

    async with ComplaintProducer(["127.0.0.1:9092"]) as p:
        await p.send({"schema_version": 1, "complaint_id": "TS-2026-0001",
                      "department": "gongan", "case_id": "GA-2026-000123",
                      "occurred_at": "2026-11-02T10:00:00+08:00", "category": "delay",
                      "text": "…"})
        await p.handled("TS-2026-0001", "gongan", "2026-11-10T16:00:00+08:00")
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from pydantic import ValidationError

from .config import DEFAULT_COMPLAINTS_SIGNER
from .contract import SCHEMA_VERSION, Complaint, EventValidationError, sign_payload

if TYPE_CHECKING:
    from .config import ProducerConfig
    from .keys import DepartmentKeys

ComplaintLike = Complaint | Mapping[str, Any]
#: the keyring entry whose keys sign complaints (settings ``complaints_signer``)
COMPLAINT_CENTRE = DEFAULT_COMPLAINTS_SIGNER


class ComplaintValidationError(EventValidationError):
    """The complaint breaks the contract and was not sent; ``problems`` = [(field, message)]."""


def validate_complaint(complaint: ComplaintLike) -> Complaint:
    if isinstance(complaint, Complaint):
        return complaint
    try:
        return Complaint.model_validate(dict(complaint))
    except ValidationError as exc:
        raise ComplaintValidationError(EventValidationError.from_pydantic(exc).problems) from None
    except (TypeError, ValueError) as exc:
        raise ComplaintValidationError([("complaint", str(exc))]) from None


def encode_complaint(complaint: ComplaintLike, signing_key: bytes | None = None
                     ) -> tuple[bytes, bytes]:
    """(Kafka key, value): the key is the case id, else the department; signed (HMAC-SHA256
    over the JCS canonical JSON, as events) with ``signing_key`` when given."""
    c = validate_complaint(complaint)
    key = (c.case_id or c.department).encode()
    payload = c.model_dump(mode="json", exclude_none=True)
    if signing_key is not None:
        payload["signature"] = sign_payload(payload, signing_key)
    return key, orjson.dumps(payload)


class ComplaintProducer:
    """Async producer of complaints (``acks=all``, retries by aiokafka)."""

    def __init__(self, bootstrap_servers: str | list[str], *, topic: str = "complaints",
                 keys: DepartmentKeys | None = None, signer: str = COMPLAINT_CENTRE,
                 **kafka_options: Any) -> None:
        self.topic = topic
        self.keys = keys
        self.signer = signer
        self._kwargs = {"bootstrap_servers": bootstrap_servers, "acks": "all", **kafka_options}
        self._kafka: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._kafka is None:
            kafka = AIOKafkaProducer(**self._kwargs)
            await kafka.start()
            self._kafka = kafka

    async def stop(self) -> None:
        kafka, self._kafka = self._kafka, None
        if kafka is not None:
            await kafka.stop()

    async def __aenter__(self) -> ComplaintProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def send(self, complaint: ComplaintLike, *, timestamp_ms: int | None = None) -> RecordMetadata:
        """Validate and send; returns when the broker acknowledged it. ``timestamp_ms`` sets
        the record time (a backfill: judged as of when it was originally reported)."""
        signing_key = self.keys.signing_key(self.signer) if self.keys is not None else None
        if self.keys is not None and signing_key is None:
            raise ComplaintValidationError([("signature", f"{self.signer!r} has no key valid "
                                                          f"now in {self.keys.source}")])
        key, value = encode_complaint(complaint, signing_key)
        if self._kafka is None:
            raise RuntimeError("ComplaintProducer not started (use 'async with' or start())")
        return await self._kafka.send_and_wait(self.topic, value, key=key, timestamp_ms=timestamp_ms)

    async def handled(self, complaint_id: str, department: str, occurred_at: datetime | str,
                      case_id: str | None = None, **extra: Any) -> RecordMetadata:
        """Send the closing (``complaint_handled``) of a complaint."""
        when = occurred_at.isoformat() if isinstance(occurred_at, datetime) else occurred_at
        record: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "kind": "complaint_handled",
                                  "complaint_id": complaint_id, "department": department,
                                  "occurred_at": when, **extra}
        if case_id:
            record["case_id"] = case_id
        return await self.send(record)


def complaint_producer_from_config(config: ProducerConfig, **options: Any) -> ComplaintProducer:
    """A producer for ``config.complaints_topic``, signing with ``config.complaints_signer``'s
    keys of ``config.department_keys_file``."""
    from .keys import DepartmentKeys

    keys = (DepartmentKeys.load(config.department_keys_file)
            if config.department_keys_file else None)
    kafka = config.kafka.client_kwargs()
    return ComplaintProducer(kafka.pop("bootstrap_servers"), topic=config.complaints_topic,
                             keys=keys, signer=config.complaints_signer, **kafka, **options)
