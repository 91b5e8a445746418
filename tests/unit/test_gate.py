"""The gate: signatures (with key rotation), catalog, times."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from jiancha.producers.keys import DepartmentKeys
from jiancha.rules.factory import build_engine
from jiancha.rules.ingest import Gate, Rejected
from tests.events import at, event
from tests.integration.conftest import TEST_CATALOG

ENGINE = build_engine(TEST_CATALOG)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEYS = DepartmentKeys.from_mapping({
    "gongan": [{"key": "old-gongan", "not_after": "2026-12-01T00:00:00+08:00"}, "new-gongan"],
    "gongshang": "k-gongshang",
})


def _gate() -> Gate:
    return Gate(ENGINE.catalog, KEYS)


def _raw(e: dict) -> bytes:
    return orjson.dumps(e)


def test_signed_with_the_departments_key_passes() -> None:
    e = event("C1", "submitted", "2026-11-30 09:00", key=b"new-gongan")
    assert _gate().parse(_raw(e), NOW).case_id == "C1"


def test_signed_with_another_departments_key_is_rejected() -> None:
    e = event("C1", "submitted", "2026-11-30 09:00", key=b"k-gongshang")
    with pytest.raises(Rejected) as r:
        _gate().parse(_raw(e), NOW)
    assert r.value.reason == "bad_signature"


def test_rotation_old_key_valid_until_it_expires() -> None:
    before = event("C1", "submitted", "2026-11-30 09:00", key=b"old-gongan")
    assert _gate().parse(_raw(before), at("2026-11-30 09:00"))
    after = event("C1", "accepted", "2026-12-01 09:00", key=b"old-gongan")
    with pytest.raises(Rejected, match="bad_signature"):
        _gate().parse(_raw(after), NOW)


def test_a_tampered_field_breaks_the_signature() -> None:
    e = event("C1", "submitted", "2026-11-30 09:00", key=b"new-gongan")
    e["case_id"] = "C2"
    with pytest.raises(Rejected, match="bad_signature"):
        _gate().parse(_raw(e), NOW)


def test_unsigned_event_of_a_signing_department_is_rejected() -> None:
    with pytest.raises(Rejected, match="missing_signature"):
        _gate().parse(_raw(event("C1", "submitted", "2026-11-30 09:00")), NOW)


@pytest.mark.parametrize("when", ["2003-12-31 23:00", "2026-12-01 17:30"])
def test_far_past_and_future_are_out_of_range(when: str) -> None:
    e = event("C1", "submitted", when, item="T-SHORT")
    with pytest.raises(Rejected, match="time_out_of_range"):
        Gate(ENGINE.catalog).parse(_raw(e), NOW)
