"""The gate as an attacker tries it: look-alike and invented departments, one department's
signature on another's item, unsigned steps injected into a signed case, a retired key
signing a backdated event, loose types. Each of these was accepted once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from jiancha.producers.keys import DepartmentKeys
from jiancha.rules.factory import build_engine
from jiancha.rules.ingest import Gate, Rejected
from jiancha.rules.replay import replay
from tests.events import at, event
from tests.integration.conftest import TEST_CATALOG

ENGINE = build_engine(TEST_CATALOG)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# gongan rotated its key at midnight; gongshang signs; jianshe has no key yet
KEYS = DepartmentKeys.from_mapping({
    "gongan": [{"key": "old-gongan", "not_after": "2026-12-01T00:00:00+08:00"}, "new-gongan"],
    "gongshang": "k-gongshang",
})
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "producers" / "schema"
                     / "approval-event.v1.json").read_text())


def _reject(e: dict[str, Any], gate: Gate | None = None, now: datetime | None = NOW) -> Rejected:
    with pytest.raises(Rejected) as r:
        (gate or Gate(ENGINE.catalog, KEYS)).parse(orjson.dumps(e), now)
    assert r.value.detail
    return r.value


@pytest.mark.parametrize("department", ["GONGAN", "gongan ", "nosuchdept", "jianshe"])
def test_an_unsigned_event_of_a_look_alike_or_other_department_is_rejected(department: str) -> None:
    e = event("C1", "submitted", "2026-11-30 09:00", department=department)
    assert _reject(e).reason == "department_mismatch"


def test_a_correctly_signed_event_on_another_departments_item_is_rejected() -> None:
    e = event("C1", "decided", "2026-11-30 10:00", department="gongshang", key=b"k-gongshang",
              outcome="grant")
    rejected = _reject(e)
    assert rejected.reason == "department_mismatch" and "T-SHORT" in rejected.detail


def test_a_co_department_reports_on_a_joint_item_signed() -> None:
    e = event("J1", "reviewed", "2026-11-30 10:00", item="T-JOINT", department="gongan",
              key=b"new-gongan", opinion="agree")
    assert Gate(ENGINE.catalog, KEYS).parse(orjson.dumps(e), NOW).department == "gongan"


def test_with_a_keyring_a_department_without_keys_cannot_send_unsigned() -> None:
    e = event("J1", "submitted", "2026-11-30 09:00", item="T-JOINT", department="jianshe")
    assert _reject(e).reason == "missing_signature"
    signed = event("J1", "submitted", "2026-11-30 09:00", item="T-JOINT", department="jianshe",
                   key=b"made-up")
    assert _reject(signed).reason == "bad_signature"


def test_a_migrating_department_may_send_unsigned_but_not_badly_signed() -> None:
    gate = Gate(ENGINE.catalog, KEYS, unsigned_departments=frozenset({"jianshe"}))
    e = event("J1", "submitted", "2026-11-30 09:00", item="T-JOINT", department="jianshe")
    assert gate.parse(orjson.dumps(e), NOW).department == "jianshe"
    forged = event("J1", "accepted", "2026-11-30 09:30", item="T-JOINT", department="jianshe",
                   key=b"made-up")
    assert _reject(forged, gate).reason == "bad_signature"
    with pytest.raises(ValueError, match="nosuchdept"):  # never a department outside the catalog
        Gate(ENGINE.catalog, KEYS, unsigned_departments=frozenset({"nosuchdept"}))


def test_unsigned_steps_injected_into_a_signed_case_do_not_silence_its_deadlines() -> None:
    key = b"new-gongan"
    case = [event("C-SIGNED", "submitted", "2026-12-01 09:00", key=key),
            event("C-SIGNED", "accepted", "2026-12-01 09:30", key=key)]
    forged = [event("C-SIGNED", "decided", "2026-12-01 10:00", department="GONGAN",
                    outcome="grant", actor="h9"),
              event("C-SIGNED", "delivered", "2026-12-01 10:05", department="gongan "),
              event("C-SIGNED", "completed", "2026-12-01 10:10", department="nosuchdept")]
    until = at("2026-12-20 09:00")

    def alerts(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
        result = replay([orjson.dumps(e) for e in events], ENGINE, until, KEYS)
        return sorted((a.rule, a.severity) for a in result.alerts)

    honest = alerts(case)
    assert any(rule.startswith("deadline.") for rule, _ in honest)
    assert alerts(case + forged) == honest


def test_a_retired_key_cannot_sign_an_event_backdated_into_its_lifetime() -> None:
    backdated = event("C1", "decided", "2026-11-30 16:00", key=b"old-gongan", outcome="grant")
    # it arrived (Kafka time) after the old key retired at midnight, +08:00
    assert _reject(backdated, now=NOW).reason == "bad_signature"
    assert Gate(ENGINE.catalog, KEYS).parse(orjson.dumps(backdated), at("2026-11-30 16:01"))
    # replay has no Kafka time: when an archive recorded the arrival, it counts
    archived = {**backdated, "received_at": "2026-12-01T08:00:00+08:00"}
    archived["signature"] = event("C1", "decided", "2026-11-30 16:00", key=b"old-gongan",
                                  outcome="grant", event_id=backdated["event_id"])["signature"]
    assert _reject(archived, now=None).reason == "bad_signature"
    # … else the replay clock
    with pytest.raises(Rejected, match="bad_signature"):
        Gate(ENGINE.catalog, KEYS).parse(orjson.dumps(backdated), None,
                                         arrived=at("2026-12-01 08:00"))
    # … or the event's own time when the replay clock lags behind it
    late = event("C1", "decided", "2026-12-01 10:00", key=b"old-gongan", outcome="grant")
    with pytest.raises(Rejected, match="bad_signature"):
        Gate(ENGINE.catalog, KEYS).parse(orjson.dumps(late), None, arrived=at("2026-11-30 09:00"))


def _loose(change: dict[str, Any], step: str = "submitted", **attributes: Any) -> dict[str, Any]:
    e = event("C1", step, "2026-11-30 09:00", **attributes)
    for path, value in change.items():
        target = e
        *parents, leaf = path.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    return e


LOOSE = [
    pytest.param(_loose({"schema_version": True}), id="schema_version-true"),
    pytest.param(_loose({"occurred_at": 1764464400}), id="occurred_at-integer"),
    pytest.param(_loose({"occurred_at": 1764464400.5}), id="occurred_at-float"),
    pytest.param(_loose({"occurred_at": "1764464400"}), id="occurred_at-digits"),
    pytest.param(_loose({"event_id": "ev\x00-1"}), id="nul-in-event_id"),
    pytest.param(_loose({"case_id": "C1\x00"}), id="nul-in-case_id"),
    pytest.param(_loose({"case_id": "C1\nC2"}), id="newline-in-case_id"),
    pytest.param(_loose({"actor": "h1\x1b[2J"}), id="escape-in-actor"),
    pytest.param(_loose({"applicant_id": "a\x00"}), id="nul-in-applicant_id"),
    pytest.param(_loose({}, "extended", days=10**9, approved_by="boss"), id="days-billion"),
    pytest.param(_loose({}, "extended", days=366, approved_by="boss"), id="days-366"),
    pytest.param(_loose({}, "fee_charged", amount="50.001"), id="amount-3-decimals"),
    pytest.param(_loose({}, "fee_charged", amount="1e3"), id="amount-exponent"),
    pytest.param(_loose({}, "fee_charged", amount="5_000"), id="amount-underscore"),
    pytest.param(_loose({}, "fee_charged", amount=" 50.00"), id="amount-space"),
    pytest.param(_loose({}, "fee_charged", amount="1000000000.00"), id="amount-billion"),
    pytest.param(_loose({}, "fee_charged", amount="-0"), id="amount-minus-zero"),
    pytest.param(_loose({}, "rejected_at_intake", reason="x" * 5000), id="reason-5000"),
    pytest.param(_loose({}, "supplement_requested", items=["x"] * 1000), id="items-1000"),
]


@pytest.mark.parametrize("e", LOOSE)
def test_loose_types_are_rejected_by_the_gate_and_the_schema(e: dict[str, Any]) -> None:
    rejected = _reject(e, Gate(ENGINE.catalog))
    assert rejected.reason == "invalid_event", rejected
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(e, SCHEMA)


def test_a_float_version_is_rejected() -> None:
    # JSON Schema cannot tell 1.0 from 1 (the same number to it): only the gate does
    assert _reject(_loose({"schema_version": 1.0}), Gate(ENGINE.catalog)).reason == "invalid_event"


@pytest.mark.parametrize(("step", "attrs"), [
    ("extended", {"days": 61, "approved_by": "boss"}),  # unlawful, but the rules judge it
    ("fee_charged", {"amount": "999999999.99"}), ("fee_charged", {"amount": "0"}),
])
def test_plausible_values_still_reach_the_rules(step: str, attrs: dict[str, Any]) -> None:
    e = event("C1", step, "2026-11-30 09:00", **attrs)
    assert Gate(ENGINE.catalog).parse(orjson.dumps(e), NOW)
    jsonschema.validate(e, SCHEMA)


def test_future_tolerance_is_counted_from_the_arrival() -> None:
    e = event("C1", "submitted", NOW + timedelta(minutes=4), key=b"new-gongan")
    assert Gate(ENGINE.catalog, KEYS).parse(orjson.dumps(e), NOW)


def test_a_case_cannot_grow_past_its_bounds() -> None:
    """Forty 60 KB events on one case made a 2.4 MB state, over the broker's record limit:
    the case stops taking events at its bounds, with a reason, and keeps what it has."""
    from jiancha.rules.ingest import MAX_CASE_BYTES, MAX_FACTS_PER_CASE
    from jiancha.rules.replay import replay
    from tests.unit.eventkit import engine

    padding = ["x" * 1900] * 31  # about 60 KB of attributes, each string within its limit
    big = [{"schema_version": 1, "event_id": f"B-{n}", "case_id": "BIG", "item_code": "T-SHORT",
            "department": "gongan", "step": "reviewed", "occurred_at": "2026-03-02T10:00:00+08:00",
            "actor": "h1", "attributes": {"opinion": "agree", "notes": padding}}
           for n in range(40)]
    result = replay((orjson.dumps(e) for e in big), engine())
    assert result.rejected["case_too_large"] == 40 - result.events
    assert result.events * 60_000 < MAX_CASE_BYTES
    many = [{"schema_version": 1, "event_id": f"M-{n}", "case_id": "MANY", "item_code": "T-SHORT",
             "department": "gongan", "step": "reviewed", "occurred_at": "2026-03-02T10:00:00+08:00",
             "actor": "h1", "attributes": {"opinion": "agree"}} for n in range(MAX_FACTS_PER_CASE + 5)]
    result = replay((orjson.dumps(e) for e in many), engine())
    assert (result.events, result.rejected["case_too_large"]) == (MAX_FACTS_PER_CASE, 5)
