"""The complaints' gate: a catalog department (and item), a size limit, the complaint
centre's signature with a keyring, reasons for ``complaints.dlq``. Complaints once went
through with none of these checked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from jiancha.producers.complaints import (
    COMPLAINT_CENTRE,
    ComplaintProducer,
    ComplaintValidationError,
    encode_complaint,
)
from jiancha.producers.contract import sign_payload
from jiancha.producers.keys import DepartmentKeys
from jiancha.rules.complaints import (
    COMPLAINT_REJECT_REASONS,
    MAX_COMPLAINT_BYTES,
    ComplaintGate,
    ComplaintRejected,
)
from jiancha.rules.factory import build_engine
from jiancha.settings import WorkerSettings
from tests.integration.conftest import TEST_CATALOG

ENGINE = build_engine(TEST_CATALOG)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEYS = DepartmentKeys.from_mapping({
    COMPLAINT_CENTRE: [{"key": "old-centre", "not_after": "2026-12-01T00:00:00+08:00"},
                       "new-centre"],
    "gongan": "k-gongan",
})


def complaint(**change: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"schema_version": 1, "complaint_id": "TS-1", "department": "gongan",
                         "case_id": "C-1", "occurred_at": "2026-11-30T10:00:00+08:00",
                         "category": "delay", "text": "办理太慢"}
    c.update(change)
    return {k: v for k, v in c.items() if v is not None}


def signed(c: dict[str, Any], key: bytes = b"new-centre") -> bytes:
    return orjson.dumps({**c, "signature": sign_payload(c, key)})


def rejected(raw: bytes, gate: ComplaintGate, now: datetime | None = NOW) -> str:
    with pytest.raises(ComplaintRejected) as r:
        gate.parse(raw, now)
    assert r.value.reason in COMPLAINT_REJECT_REASONS and r.value.detail
    return r.value.reason


def test_a_valid_complaint_passes_with_and_without_a_keyring() -> None:
    assert ComplaintGate(ENGINE.catalog).parse(orjson.dumps(complaint()), NOW).complaint_id == "TS-1"
    assert ComplaintGate(ENGINE.catalog, KEYS).parse(signed(complaint()), NOW).department == "gongan"


@pytest.mark.parametrize("department", ["GONGAN", "gongan ", "nosuchdept"])
def test_a_department_outside_the_catalog_is_rejected(department: str) -> None:
    raw = orjson.dumps(complaint(department=department))
    assert rejected(raw, ComplaintGate(ENGINE.catalog)) == "unknown_department"


def test_an_item_outside_the_catalog_is_rejected() -> None:
    gate = ComplaintGate(ENGINE.catalog)
    assert gate.parse(orjson.dumps(complaint(item_code="T-SHORT")), NOW)
    assert rejected(orjson.dumps(complaint(item_code="NOPE")), gate) == "unknown_item"
    assert rejected(orjson.dumps(complaint(item_code=7)), gate) == "unknown_item"


def test_an_oversized_complaint_is_rejected_before_it_is_parsed() -> None:
    raw = orjson.dumps(complaint(text="x" * 9_000, padding="y" * MAX_COMPLAINT_BYTES))
    assert rejected(raw, ComplaintGate(ENGINE.catalog)) == "invalid_complaint"


@pytest.mark.parametrize("change", [
    {"schema_version": True}, {"occurred_at": 1764468000}, {"complaint_id": "TS\x00"},
    {"text": "x" * 10_001}, {"category": "c" * 500},
])
def test_loose_complaints_are_rejected(change: dict[str, Any]) -> None:
    assert rejected(orjson.dumps(complaint(**change)), ComplaintGate(ENGINE.catalog)) == (
        "invalid_complaint")


def test_with_a_keyring_complaints_are_signed_by_the_complaint_centre() -> None:
    gate = ComplaintGate(ENGINE.catalog, KEYS)
    assert rejected(orjson.dumps(complaint()), gate) == "missing_signature"
    # the department complained about does not sign what is said about it
    assert rejected(signed(complaint(), b"k-gongan"), gate) == "bad_signature"
    tampered = orjson.loads(signed(complaint()))
    tampered["department"] = "gongshang"
    assert rejected(orjson.dumps(tampered), gate) == "bad_signature"


def test_a_retired_centre_key_cannot_sign_a_backdated_complaint() -> None:
    gate = ComplaintGate(ENGINE.catalog, KEYS)
    old = signed(complaint(), b"old-centre")
    assert gate.parse(old, datetime(2026, 11, 30, 3, 0, tzinfo=UTC))
    assert rejected(old, gate) == "bad_signature"  # arrived after midnight +08:00


def test_a_far_future_complaint_is_rejected() -> None:
    raw = signed(complaint(occurred_at="2027-01-01T00:00:00+08:00"))
    assert rejected(raw, ComplaintGate(ENGINE.catalog, KEYS)) == "time_out_of_range"


def test_the_complaint_producer_signs_what_the_gate_verifies() -> None:
    _, value = encode_complaint(complaint(text="投诉 1.0 😀"), b"new-centre")
    assert ComplaintGate(ENGINE.catalog, KEYS).parse(value, NOW).text == "投诉 1.0 😀"


def test_settings_name_the_dead_letter_topic_and_the_signer() -> None:
    s = WorkerSettings.load()
    assert s.complaints_dlq_topic == "complaints.dlq" and s.complaints_signer == COMPLAINT_CENTRE
    assert s.unsigned_departments == []


def test_a_complaint_producer_with_keys_but_none_for_the_centre_sends_nothing() -> None:
    producer = ComplaintProducer("127.0.0.1:1", keys=DepartmentKeys.from_mapping({"gongan": "k"}))
    with pytest.raises(ComplaintValidationError, match=COMPLAINT_CENTRE):
        asyncio.run(producer.send(complaint()))
