"""The gate reads events into a msgspec struct; the pydantic model is the published schema.
Over every kind of input (valid events, mutated and missing fields, wrong types, extra
fields, odd timestamps, huge numbers, unicode, non-objects, bad signatures), the gate
gives the verdict the schema gives: the same event accepted with the same fields, or the
same reason and detail. Its shortcuts to the signature (JCS written by orjson, pre-keyed
HMACs) give the same bytes and answers as the reference ones."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from random import Random
from typing import Annotated, Any
from unittest import mock

import msgspec
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiancha.producers.contract import Step, canonical_bytes, parse_event, sign_payload, signature_matches
from jiancha.producers.jcs import CanonicalizationError
from jiancha.rules import ingest
from jiancha.rules.ingest import Gate, GateEvent, PrekeyedHmac, Rejected, plain_canonical_bytes
from tests.unit.test_fuzz_gate import ENGINE, KEYS, SECRETS, TEMPLATES, WEIRD, _raw

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
UNSIGNED = Gate(ENGINE.catalog)
SIGNED = Gate(ENGINE.catalog, KEYS, unsigned_departments=frozenset({"jianshe"}))
FIELDS = [f for f in GateEvent.__struct_fields__ if f != "received_at"]
AWARE = Annotated[datetime, msgspec.Meta(tz=True)]


def schema_reader(payload: dict[str, Any]) -> GateEvent:
    return GateEvent.of(parse_event(payload))


def verdict(gate: Gate, raw: bytes) -> tuple[str, Any]:
    try:
        event = gate.parse(raw, NOW)
    except Rejected as r:
        return r.reason, r.detail
    when = event.occurred_at
    return "accepted", (msgspec.structs.asdict(event), when.isoformat(), when.utcoffset())


def same_verdict(raw: bytes) -> None:
    """The gate's verdict on ``raw``, and the verdict of the gate with the reference parts:
    orjson's dict read by the pydantic schema, the JCS of ``producers/jcs.py``, a fresh
    HMAC per key."""
    for gate in (UNSIGNED, SIGNED):
        fast = verdict(gate, raw)
        with mock.patch.object(ingest, "read_plain_event", lambda raw: None), \
                mock.patch.object(ingest, "read_event", schema_reader), \
                mock.patch.object(ingest, "plain_canonical_bytes",
                                  lambda payload, free=None: canonical_bytes(payload)), \
                mock.patch.object(PrekeyedHmac, "matches",
                                  lambda _, body, sig, keys: signature_matches(body, sig, keys)):
            reference = verdict(gate, raw)
        assert fast == reference, raw


# --- inputs ---------------------------------------------------------------------------

def _two(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda n: f"{n:02d}")


#: RFC 3339 look-alikes: out-of-range parts, other separators, 0-9 fraction digits, offsets
TIMES = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, off: f"{y:04d}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{off}",
    st.integers(0, 9999), _two(0, 13), _two(0, 32), st.sampled_from("Tt _"), _two(0, 25),
    _two(0, 61), _two(0, 61),
    st.one_of(st.just(""), st.text("0123456789", min_size=0, max_size=10).map(lambda f: "." + f)),
    st.one_of(st.sampled_from(["Z", "z", "", "+08:00", "-00:00", "+0800", "+08"]),
              st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"),
                        _two(0, 30), _two(0, 70))))
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
              st.sampled_from(WEIRD), TIMES),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)
NAMES = st.sampled_from([*FIELDS, "received_at", "extra", "ATTRIBUTES"]) | st.text(max_size=8)
ATTRIBUTE_NAMES = st.sampled_from(["days", "amount", "outcome", "opinion", "reason", "items",
                                   "approved_by", "fee_code", "x"])
VALID = {"opinion": ["agree", "disagree"], "outcome": ["grant", "deny"],
         "days": [1, 365, 366, 0, 5.0, True], "amount": ["0", "50.00", "999999999.99", "1e3"],
         "channel": ["online", "window", "mobile", "fax"], "step": [s.value for s in Step],
         "signature": ["0" * 64, "A" * 64, "0" * 64 + "\n", "0" * 65, "f" * 63, "é" * 64]}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event of the test catalog with a few fields changed, dropped or added."""
    doc = json.loads(json.dumps(draw(st.sampled_from(TEMPLATES))))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["set", "known", "time", "drop", "attr", "text"]))
        name = draw(NAMES)
        if op == "set":
            doc[name] = draw(JSON_VALUES)
        elif op == "known":
            key = draw(st.sampled_from(sorted(VALID)))
            doc[key] = draw(st.sampled_from(VALID[key]))
        elif op == "time":
            doc[draw(st.sampled_from(["occurred_at", "received_at"]))] = draw(TIMES)
        elif op == "drop":
            doc.pop(draw(st.sampled_from(FIELDS)), None)
        elif op == "attr":
            attributes = doc.setdefault("attributes", {})
            if isinstance(attributes, dict):
                key = draw(ATTRIBUTE_NAMES)
                attributes[key] = draw(st.sampled_from(VALID.get(key, [None])) | JSON_VALUES)
        else:  # ids and codes with control characters, astral and line-break characters
            doc[draw(st.sampled_from([*FIELDS[1:5], "actor", "applicant_id"]))] = draw(
                st.text(st.characters(codec="utf-8"), max_size=130)
                | st.sampled_from(["a\n", "a\x85", "\u2028", "x" * 128, "x" * 129, "😀" * 64]))
    if draw(st.booleans()):  # signed by its own, another or no known key
        signer = draw(st.sampled_from([*SECRETS, "made-up"]))
        with contextlib.suppress(CanonicalizationError):
            doc["signature"] = sign_payload(doc, SECRETS.get(signer, b"made-up"))
    return doc


def _bytes(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: as the stdlib writes it
        return json.dumps(doc).encode()


@settings(max_examples=1500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events())
def test_the_gate_judges_events_as_the_schema(doc: dict[str, Any]) -> None:
    same_verdict(_bytes(doc))


@settings(max_examples=300, deadline=None, database=None)
@given(JSON_VALUES | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_the_gate_judges_any_json_as_the_schema(value: Any) -> None:
    same_verdict(_bytes(value))


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=True))
def test_the_gate_judges_the_fuzzers_inputs_as_the_schema(rng: Random) -> None:
    for _ in range(50):
        same_verdict(_raw(rng))


def test_the_struct_reads_every_valid_event_itself() -> None:
    """The schema is the gate's fallback, not its path: valid events never reach it, and
    without keys they are read from their bytes with no dict."""
    with mock.patch.object(ingest, "parse_event", side_effect=AssertionError):
        for template in TEMPLATES:
            for when in ("2026-11-30T09:00:00+08:00", "2026-11-30T01:00:00Z",
                         "2026-11-30T09:00:00.250+08:00", "2026-11-30T09:00:00.123456-05:30"):
                doc = dict(template, occurred_at=when, received_at="2026-11-30T09:00:01Z")
                with mock.patch.object(ingest, "read_object", side_effect=AssertionError):
                    assert UNSIGNED.parse(orjson.dumps(doc), NOW).occurred_at.isoformat() \
                        == datetime.fromisoformat(when).isoformat()
                doc["signature"] = sign_payload(doc, SECRETS[doc["department"]])
                assert SIGNED.parse(orjson.dumps(doc), NOW).occurred_at.isoformat() \
                    == datetime.fromisoformat(when).isoformat()


def _reads(read: Any) -> bool:
    try:
        read()
    except msgspec.ValidationError:
        return False
    return True


@settings(max_examples=2000, deadline=None, database=None)
@given(TIMES)
def test_the_bytes_path_takes_a_time_only_in_the_schemas_form(when: str) -> None:
    """The gate tells the form of :data:`ingest._PLAIN_TIME` by a few characters of a time
    msgspec has read (from JSON or, the same, from text): it takes none that the pattern
    refuses, and every one it takes."""
    raw = orjson.dumps(dict(TEMPLATES[0], occurred_at=when))
    decoded = _reads(lambda: msgspec.json.decode(orjson.dumps(when), type=AWARE))
    assert decoded == _reads(lambda: msgspec.convert(when, AWARE, strict=True)), when
    if not decoded:
        assert ingest.read_plain_event(raw) is None
        return
    # and it takes every one the pattern takes
    assert (ingest.read_plain_event(raw) is not None) == bool(ingest._PLAIN_TIME.fullmatch(when))


#: JSON texts of values that orjson and msgspec read apart, or nearly: integers at and past
#: 64 bits (orjson reads larger ones as floats), floats, nesting, escapes, surrogates
NUMBERS_AND_NESTS = ["9223372036854775807", "9223372036854775808", "18446744073709551615",
                     "18446744073709551616", "-9223372036854775808", "-9223372036854775809",
                     "123456789012345678901234567890", "1.0", "0.1", "1e400", "-0.0", "5e-324",
                     "2.2250738585072014e-308", "[1]", '["a",["b"]]', '{"a":1}', "[]", "{}",
                     '"\\u0000"', '"\\ud800"', '"\\ud83d\\ude00"', "[" * 40 + "]" * 40]


def test_the_bytes_path_reads_values_as_the_dict_path() -> None:
    for template in TEMPLATES[:14]:
        for value in NUMBERS_AND_NESTS:
            body = orjson.dumps({k: v for k, v in template.items() if k != "signature"})
            for name in ("received_at", "attributes.x", "attributes.days", "attributes.items"):
                if name == "received_at":
                    raw = body[:-1] + b',"received_at":' + value.encode() + b"}"
                else:
                    doc = orjson.loads(body)
                    doc.setdefault("attributes", {})[name.split(".")[1]] = "HERE"
                    raw = orjson.dumps(doc).replace(b'"HERE"', value.encode())
                same_verdict(raw)


def test_the_signatures_form_is_the_schemas() -> None:
    for signature in [*VALID["signature"], "0" * 63 + "g", "0" * 63 + "\U0001f600", "", None, 5]:
        for template in TEMPLATES[:4]:
            same_verdict(orjson.dumps(dict(template, signature=signature)))


def test_a_refused_event_is_told_as_the_schema_tells_it() -> None:
    doc = dict(TEMPLATES[0], event_id="a\nb")
    try:
        UNSIGNED.parse(orjson.dumps(doc), NOW)
    except Rejected as r:
        assert (r.reason, r.detail) == ("invalid_event",
                                        "event_id: String should match pattern "
                                        "'^[^\\x00-\\x1f\\x7f-\\x9f]+$'")
    else:
        raise AssertionError("an event_id with a line break passed")


# --- the signature's shortcuts --------------------------------------------------------

KEYS_TEXT = st.text(st.sampled_from(["a", "Z", "é", "\ue000", "\uffff", "😀", "\U000e0000",
                                     "\x00", '"']), max_size=3)
SIGNABLE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60),
              st.sampled_from([2**53, -(2**53), 2**53 + 1, 1.0, -0.0, 1e21, 5e-7, 0.1]),
              st.floats(allow_nan=False, allow_infinity=False),
              st.text(st.characters(codec="utf-8"), max_size=8)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS_TEXT | st.text(max_size=3),
                                                                inner, max_size=5),
    max_leaves=16)


@settings(max_examples=1000, deadline=None, database=None)
@given(st.dictionaries(KEYS_TEXT | st.sampled_from(["signature", "event_id"]), SIGNABLE,
                       max_size=6))
def test_the_canonical_bytes_are_the_jcs_ones(payload: dict[str, Any]) -> None:
    assert plain_canonical_bytes(payload) == canonical_bytes(payload)


def test_what_jcs_cannot_write_stays_refused() -> None:
    for payload in ({"a": float("nan")}, {"a": "\ud800"}, {"a": 2**1100}):
        for canonical in (plain_canonical_bytes, canonical_bytes):
            try:
                canonical(payload)
            except CanonicalizationError:
                continue
            raise AssertionError(f"{payload} has canonical bytes")


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=80), st.lists(st.binary(min_size=1, max_size=80), max_size=3),
       st.integers(0, 3))
def test_prekeyed_hmacs_verify_as_the_reference(body: bytes, keys: list[bytes], pick: int
                                                ) -> None:
    hmacs = PrekeyedHmac()
    signer = keys[pick] if pick < len(keys) else b"another key"
    signature = sign_payload({"body": body.hex()}, signer)
    signed = canonical_bytes({"body": body.hex()})
    for attempt in (signature, "0" * 64, signature.upper()):
        for candidate in (signed, body):
            assert hmacs.matches(candidate, attempt, keys) \
                == signature_matches(candidate, attempt, keys)


def test_the_schema_and_the_gate_give_what_the_rules_read() -> None:
    """The rules take either event (``rules.case.StepEvent``): both have every attribute
    the protocol names, and a fact made from each is the same."""
    from jiancha.rules.case import Fact, StepEvent

    payload = TEMPLATES[0]
    schema_event, gate_event = parse_event(payload), SIGNED.parse(orjson.dumps(payload), NOW)
    assert isinstance(schema_event, StepEvent) and isinstance(gate_event, StepEvent)
    assert Fact.from_event(schema_event, NOW) == Fact.from_event(gate_event, NOW)
