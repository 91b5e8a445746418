"""Hypothesis against the gates (events and complaints), with a keyring: over 10,000 inputs
(structured mutations of valid signed events and complaints, re-signed or not, serialized
by orjson or the stdlib, byte-level damage, random bytes; hypothesis seeds the random
generator and draws the noise, which keeps 10,000 inputs within seconds) and each is accepted or rejected
with a reason the dead-letter topics know and a detail; nothing else ever escapes."""

from __future__ import annotations

import contextlib
import json
import struct
from datetime import UTC, datetime
from random import Random
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiancha.producers.complaints import COMPLAINT_CENTRE
from jiancha.producers.contract import Complaint, Step, sign_payload
from jiancha.producers.keys import DepartmentKeys
from jiancha.rules.complaints import COMPLAINT_REJECT_REASONS, ComplaintGate, ComplaintRejected
from jiancha.rules.factory import build_engine
from jiancha.rules.ingest import REJECT_REASONS, Gate, GateEvent, Rejected
from jiancha.rules.state_codec import decode_state, encode_state
from tests.events import event
from tests.integration.conftest import TEST_CATALOG

ENGINE = build_engine(TEST_CATALOG)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SECRETS = {"gongan": b"k-gongan", "gongshang": b"k-gongshang", "jianshe": b"k-jianshe",
           COMPLAINT_CENTRE: b"k-centre"}
KEYS = DepartmentKeys.from_mapping({d: k.decode() for d, k in SECRETS.items()})
GATE = Gate(ENGINE.catalog, KEYS)
COMPLAINTS = ComplaintGate(ENGINE.catalog, KEYS)
BATCH = 50
EXAMPLES = 210  # × BATCH = 10,500 inputs

_ATTRS = {"reviewed": {"opinion": "agree"}, "decided": {"outcome": "deny", "reason": "不符合"},
          "extended": {"days": 5, "approved_by": "chief"}, "suspended": {"reason": "hearing"},
          "fee_charged": {"amount": "50.00", "fee_code": "F1"},
          "supplement_requested": {"items": ["身份证"]}}
TEMPLATES = [event("C1", step, "2026-11-30 09:00", item=item, department=dept,
                   key=SECRETS[dept], **_ATTRS.get(step, {}))
             for step in [s.value for s in Step]
             for item, dept in [("T-SHORT", "gongan"), ("T-FEE", "gongshang"),
                                ("T-JOINT", "jianshe"), ("T-JOINT", "gongan")]]
COMPLAINT = {"schema_version": 1, "complaint_id": "TS-1", "department": "gongan",
             "case_id": "C1", "occurred_at": "2026-11-30T10:00:00+08:00", "category": "delay",
             "text": "办理太慢"}

#: values that broke or nearly broke gates: look-alikes, control characters, huge and
#: fractional numbers, near-dates, over-long text, what Decimal takes and a ledger must not
WEIRD: list[Any] = [
    None, True, False, 0, -1, 1, 1.0, -0.0, 0.1, 1e21, 1e-7, 2**53 + 1, 10**30, -(2**70),
    "", "GONGAN", "gongan ", "nosuchdept", "\x00", "a\nb", "\x1b[2J", "\u202e", "😀", "\ud7ff",
    "x" * 129, "x" * 3000, "2026-11-30", "2026-11-30T09:00", "1764464400", "1e3", "NaN",
    "Infinity", "-0", "50.001", " 50.00", "5_0", "1000000000.00", [], {}, [1, [2, [3]]],
    {"a": {"b": None}}, 1764464400, 1764464400.5, "2026-11-30T09:00:00+08:00",
    "2099-01-01T00:00:00Z", "1999-12-31T23:59:59+08:00", "0001-01-01T00:00:00+00:00",
]
TIMES = ["2099-01-01T00:00:00Z", "1999-12-31T23:59:59+08:00", "0001-01-01T00:00:00+00:00",
         "2026-12-01T17:04:59+08:00", "2026-11-30T09:00:00.123456789+08:00", "2026-11-30T09:00:00",
         "2026-11-30T25:00:00+08:00", "2026-11-30t09:00:00z", "9999-12-31T23:59:59-23:59"]
FIELDS = ["schema_version", "event_id", "case_id", "item_code", "department", "step",
          "occurred_at", "actor", "applicant_id", "channel", "attributes", "signature",
          "received_at", "complaint_id", "kind", "text", "category", "item_code"]
ATTRIBUTES = ["days", "amount", "outcome", "opinion", "reason", "items", "approved_by",
              "fee_code", "x"]


def _value(rng: Random) -> Any:
    pick = rng.random()
    if pick < 0.6:
        return rng.choice(WEIRD)
    if pick < 0.75:
        return rng.randint(-(2**64), 2**64)
    if pick < 0.85:
        return struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0]  # NaN and ∞ too
    return "".join(chr(rng.choice([rng.randint(0, 0x7f), rng.randint(0x80, 0x10ffff)]))
                   for _ in range(rng.randint(0, 8)))


def _mutate(base: dict[str, Any], rng: Random) -> dict[str, Any]:
    doc = json.loads(json.dumps(base))
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        op = rng.choice(["set", "delete", "attr", "deep", "version", "time", "unsign"])
        name = rng.choice(FIELDS)
        if op == "set":
            doc[name] = _value(rng)
        elif op == "delete":
            doc.pop(name, None)
        elif op == "attr":
            attrs = doc.setdefault("attributes", {})
            if isinstance(attrs, dict):
                attrs[rng.choice(ATTRIBUTES)] = _value(rng)
        elif op == "deep":
            depth = rng.randint(10, 200)
            doc[name] = orjson.loads(b"[" * depth + b"]" * depth)
        elif op == "unsign":
            doc.pop("signature", None)
            return doc
        elif op == "version":
            doc["schema_version"] = rng.choice([1, 1.0, True, "1", 2])
        else:
            doc[rng.choice(["occurred_at", "received_at"])] = rng.choice(TIMES)
    if rng.random() < 0.6:  # re-signed: the damage reaches the checks behind the signature
        signer = rng.choice([*SECRETS, "nosuchdept"])
        with contextlib.suppress(ValueError):  # no canonical form (NaN): sent as it is
            doc["signature"] = sign_payload(doc, SECRETS.get(signer, b"made-up"))
    return doc


def _raw(rng: Random) -> bytes:
    kind = rng.choice(["event", "event", "event", "complaint", "bytes", "damage", "deep"])
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 200))
    if kind == "deep":  # as deep as a JSON parser goes, in an otherwise valid event
        depth = rng.randint(200, 1100)
        return b'{"deep":' + b"[" * depth + b"]" * depth + b"," + orjson.dumps(
            rng.choice(TEMPLATES))[1:]
    doc = _mutate(COMPLAINT if kind == "complaint" else rng.choice(TEMPLATES), rng)
    try:  # the stdlib writes NaN, Infinity and lone surrogates, orjson refuses them
        raw = orjson.dumps(doc) if rng.random() < 0.5 else json.dumps(
            doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    except (orjson.JSONEncodeError, ValueError):
        raw = json.dumps(doc).encode()
    if kind == "damage" and raw:
        at = rng.randrange(len(raw))
        raw = raw[:at] + rng.randbytes(rng.randint(0, 3)) + raw[at + 1:]
    return raw


def _judge(raw: bytes, outcomes: dict[str, int]) -> None:
    try:
        ev = GATE.parse(raw, NOW)
        assert isinstance(ev, GateEvent)
        GATE.check_key(ev, ev.case_id.encode())
        outcomes["accepted"] = outcomes.get("accepted", 0) + 1
        # what the gate lets in can be stored and read back, and is then a repeat
        GATE.check_against_case(ev, decode_state(encode_state(ENGINE.ingest(None, ev, NOW)),
                                                  ev.case_id))
        raise AssertionError("a repeat of an ingested event passed")
    except Rejected as r:
        assert r.reason in REJECT_REASONS and r.detail, (r.reason, r.detail)
        outcomes[r.reason] = outcomes.get(r.reason, 0) + 1
    try:
        assert isinstance(COMPLAINTS.parse(raw, NOW), Complaint)
        outcomes["complaint"] = outcomes.get("complaint", 0) + 1
    except ComplaintRejected as r:
        assert r.reason in COMPLAINT_REJECT_REASONS and r.detail, (r.reason, r.detail)


def test_no_input_escapes_the_gates_without_a_verdict() -> None:
    outcomes: dict[str, int] = {}
    inputs = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.randoms(use_true_random=True), st.binary(max_size=300))
    def judge(rng: Random, noise: bytes) -> None:
        nonlocal inputs
        batch = [noise, *(_raw(rng) for _ in range(BATCH - 1))]
        inputs += len(batch)
        for raw in batch:
            _judge(raw, outcomes)

    judge()
    assert inputs >= 10_000, inputs
    # the mutations reach past the parser: signatures, catalog, types and acceptance
    for reason in ("accepted", "complaint", "invalid_json", "invalid_event", "bad_signature",
                   "missing_signature", "department_mismatch", "unknown_item",
                   "time_out_of_range", "duplicate_event_id"):
        assert outcomes.get(reason, 0) > 0, (reason, outcomes)
