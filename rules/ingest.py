"""The gate every event passes before the rules: parse, validate, verify, de-duplicate.

Shared by the worker and replay. A rejected event becomes :class:`Rejected` with a
stable ``reason`` (a metric label and the DLQ header) and a human ``detail``.

With a keyring every event must be signed by a key of its department (only the
departments named in ``unsigned_departments``, during their migration, may still send
unsigned events). The key must be valid when the event *arrived*, not when it claims to
have happened, so a retired key cannot sign an event dated back into its lifetime: the
worker passes ``now``, the judged time derived from the Kafka record's timestamp; replay
has no Kafka time and uses the event's ``received_at`` when an archive recorded one, else
the replay clock (``arrived``).

The pydantic model :class:`~producers.contract.ApprovalEvent` is the published schema; the
gate reads an event into :class:`GateEvent`, a msgspec struct with the same checks, which
costs a fraction of it. With no keyring most events are read from their bytes into it
straight (:func:`read_plain_event`), with no dict between. What the struct refuses goes
through orjson and the pydantic model again, so a rejected event has the same reason and
detail as the schema gives it (and ``tests/unit/test_gate_equivalence.py`` holds the two
to the same verdicts).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

import msgspec
import orjson

from jiancha.producers.contract import (
    APPLICANT_STEPS,
    MAX_NESTING,
    ApprovalEvent,
    EventValidationError,
    Step,
    canonical_bytes,
    check_attributes,
    nesting_depth,
    parse_event,
    signature_matches,
)
from jiancha.producers.jcs import CanonicalizationError

from .case import CaseState
from .catalog import Catalog
from .counted_time import ORIGIN
from .state_codec import encode_state

REJECT_REASONS = (
    "invalid_json",
    "invalid_event",
    "missing_signature",
    "bad_signature",
    "unknown_item",
    "item_mismatch",
    "duplicate_event_id",
    "time_out_of_range",
    "wrong_key",
    "department_mismatch",
    "case_too_large",
)

MAX_EVENT_BYTES = 64 * 1024
#: A case's state is one changelog record, which must stay well under the broker's record
#: limit (1 MB by default): at most this many facts (a case has 5-15 steps; corrections,
#: suspensions and extensions add a few) ...
MAX_FACTS_PER_CASE = 100
#: ... and at most this many bytes once encoded (checked for an event over
#: ``_SMALL_EVENT_BYTES``: a hundred small facts stay far below it)
MAX_CASE_BYTES = 256 * 1024
_SMALL_EVENT_BYTES = 1024


#: the lengths of the contract's ids and codes; that they hold no control character is
#: checked of all of them at once (one pattern per field costs more than the rest)
_ID = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_CODE = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: the digits of the signature's hex (the schema's pattern ``^[0-9a-f]{64}$``, told without
#: a regular expression: what is left of the text without them)
_HEX_DIGITS = b"0123456789abcdef"
#: the RFC 3339 times the struct reads itself: a calendar time of day, at most microseconds
#: (the schema cuts finer fractions), an upper-case ``T`` and ``Z``; any other time the
#: contract allows is read by the schema
_PLAIN_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
                         r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)")
#: the fields of the schema; any other field of an event is an extra
_FIELDS = frozenset(ApprovalEvent.model_fields)
#: the fields of :class:`GateEvent`: the schema's and ``received_at``
_KNOWN = _FIELDS | {"received_at"}
_ORIGIN_YEAR = ORIGIN.year
_SUBMITTED = Step.submitted  # read once: reading a member off its enum class is slow
#: the integers orjson reads as integers (it reads larger ones as floats)
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class GateEvent(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """An event the gate let in: the fields of :class:`~producers.contract.ApprovalEvent`
    (checked as it checks them) and the optional ``received_at`` extra. Decoded from JSON
    it refuses any other field: such an event is read as a dict, whose extras the
    signature and the nesting limit cover."""

    schema_version: Literal[1]
    event_id: _ID
    case_id: _ID
    item_code: _CODE
    department: _CODE
    step: Step
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    actor: _ID | None = None
    applicant_id: _ID | None = None
    channel: Literal["online", "window", "mobile"] | None = None
    attributes: dict[str, Any] = {}
    signature: str | None = None
    #: when the worker received the event, as an archive of its input recorded it
    received_at: Any = None

    @property
    def effective_actor(self) -> str:
        return self.actor or "applicant"

    @classmethod
    def of(cls, event: ApprovalEvent) -> GateEvent:
        return cls(event.schema_version, event.event_id, event.case_id, event.item_code,
                   event.department, event.step, event.occurred_at, event.actor,
                   event.applicant_id, event.channel, event.attributes, event.signature,
                   (event.model_extra or {}).get("received_at"))


def read_event(payload: dict[str, Any]) -> GateEvent:
    """``payload`` as the schema reads it, or :class:`EventValidationError` with the
    schema's own problems."""
    event = _convert(payload)
    if event is None and not _KNOWN.issuperset(payload):  # the struct takes the known fields
        event = _convert({k: v for k, v in payload.items() if k in _KNOWN})
    if event is None or not _schema_holds(event, payload):
        # refused, or a shape the struct leaves to the schema
        return GateEvent.of(parse_event(payload))
    return event


def _convert(payload: dict[str, Any]) -> GateEvent | None:
    try:
        return msgspec.convert(payload, GateEvent, strict=True)
    except msgspec.ValidationError:
        return None


def _schema_holds(event: GateEvent, payload: dict[str, Any]) -> bool:
    """What the schema checks besides the fields' types and lengths (the patterns, its
    ``_step_rules``), and the time in the form the struct reads."""
    when = payload["occurred_at"]
    if type(when) is not str or not _plain_time(when):
        return False
    attributes = event.attributes
    extras = () if _FIELDS.issuperset(payload) else [payload[k] for k in payload.keys() - _FIELDS]
    if (_nests(attributes.values()) or _nests(extras)) and \
            nesting_depth([attributes, dict(enumerate(extras))]) > MAX_NESTING:
        return False
    return _rules_hold(event)


def _rules_hold(event: GateEvent) -> bool:
    """The schema's patterns and its ``_step_rules`` (the nesting limit aside)."""
    ids = f"{event.event_id}{event.case_id}{event.item_code}{event.department}" \
          f"{event.actor or ''}{event.applicant_id or ''}"
    if not ids.isprintable() if ids.isascii() else _CONTROL.search(ids):
        return False
    signature = event.signature
    if signature is not None and not (len(signature) == 64 and signature.isascii()
                                      and not signature.encode().translate(None, _HEX_DIGITS)):
        return False
    step = event.step
    if step is _SUBMITTED and not event.applicant_id:
        return False
    if event.actor is None and step not in APPLICANT_STEPS:
        return False
    try:
        check_attributes(step, event.attributes)
    except ValueError:
        return False
    return True


class _Time(msgspec.Struct, gc=False):
    occurred_at: str


_decode_event = msgspec.json.Decoder(GateEvent).decode
_decode_time = msgspec.json.Decoder(_Time).decode


def read_plain_event(raw: bytes) -> GateEvent | None:
    """``raw`` read straight into the struct, when it is an event the schema takes and
    orjson reads as msgspec does: the extra ``received_at`` text or absent, and attributes
    of text, booleans, nulls, 64-bit integers and lists of text (no float, whose digits
    the two might read apart, nor a larger integer, a float to orjson). None for anything
    else: it is read as a dict, as :meth:`Gate.validate` reads it, and told as the schema
    tells it."""
    try:
        event = _decode_event(raw)
    except msgspec.DecodeError:  # a ValidationError too
        return None
    received = event.received_at
    if received is not None and type(received) is not str:
        return None
    for value in event.attributes.values():
        kind = type(value)
        if kind is str or kind is bool or value is None:
            continue
        if kind is int:
            if _INT_MIN <= value <= _INT_MAX:
                continue
            return None
        if kind is list:
            for item in value:
                if type(item) is not str:
                    return None
            continue
        return None
    return event if _plain_time(_decode_time(raw).occurred_at) and _rules_hold(event) else None


def _plain_time(when: str) -> bool:
    """``when``, a time msgspec read, in the form of :data:`_PLAIN_TIME`: msgspec took only
    four-digit years, a calendar time of day, an offset ``Z``, ``z``, ``±hh:mm`` or
    ``±hhmm`` within a day and a fraction of a digit or more; the rest is a ``T``, and
    ``Z`` or ``±hh:mm`` after at most 6 fractional digits."""
    n = len(when)
    return when[10] == "T" and ((when[-1] == "Z" and n <= 27) or (when[-3] == ":" and n <= 32))


def _nests(values: Any) -> bool:
    for value in values:  # noqa: SIM110 - any() over a generator costs more here
        if type(value) is dict or type(value) is list:
            return True
    return False


def plain_canonical_bytes(payload: dict[str, Any], free: Any = None) -> bytes:
    """:func:`~producers.contract.canonical_bytes`, written by orjson where JCS is JSON with
    sorted keys: no fractional or exponent number, integers within ±2^53, object keys
    that sort the same by UTF-16 code unit as by code point (none beyond U+FFFF).
    ``free``: the part of ``payload`` that may hold others (the fields no schema typed,
    with their names); by default all of it."""
    body = dict(payload)
    body.pop("signature", None)
    if _plain_json(body if free is None else free):
        try:
            return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate or nested too deep
            pass
    return canonical_bytes(payload)


_LIMIT = 2**53


def _plain_json(value: Any) -> bool:
    todo = [value]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -_LIMIT <= item <= _LIMIT:
                continue
            return False
        if kind is dict:
            try:
                keys = "".join(item)
            except TypeError:  # a key that is no string
                return False
            if not keys.isascii() and max(keys) > "\uffff":
                return False
            todo.extend(item.values())
        elif kind is list:
            todo.extend(item)
        else:
            return False
    return True


_BLOCK = hashlib.sha256().block_size
_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))


@dataclass
class PrekeyedHmac:
    """HMAC-SHA256 (RFC 2104) with each key's inner and outer pads hashed once: per event,
    a copy of each and the body."""

    pads: dict[bytes, tuple[Any, Any]] = field(default_factory=dict)

    def matches(self, body: bytes, signature: str, keys: list[bytes]) -> bool:
        """:func:`~producers.contract.signature_matches`, faster."""
        for key in keys:
            pads = self.pads.get(key)
            if pads is None:
                pads = self.pads[key] = _pads(key)
            inner, outer = pads[0].copy(), pads[1].copy()
            inner.update(body)
            outer.update(inner.digest())
            if hmac.compare_digest(outer.hexdigest(), signature):
                return True
        return False


def _pads(key: bytes) -> tuple[Any, Any]:
    block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
    return (hashlib.sha256(block.translate(_INNER)), hashlib.sha256(block.translate(_OUTER)))


class Rejected(Exception):
    reasons: tuple[str, ...] = REJECT_REASONS

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in self.reasons, reason
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class KeyRing(Protocol):
    def has_keys(self, department: str) -> bool: ...
    def verification_keys(self, department: str, at: datetime) -> list[bytes]: ...


def read_object(raw: bytes, limit: int, rejected: type[Rejected], invalid: str) -> dict[str, Any]:
    """A JSON object of at most ``limit`` bytes, else ``rejected(invalid or 'invalid_json')``."""
    if len(raw) > limit:
        raise rejected(invalid, f"{len(raw)} bytes, the limit is {limit}")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise rejected("invalid_json", f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise rejected("invalid_json", f"expected a JSON object, got {type(payload).__name__}")
    return payload


def check_signature(payload: dict[str, Any], signer: str, signature: str | None,
                    keys: KeyRing, arrived: datetime, unsigned_allowed: bool,
                    rejected: type[Rejected], hmacs: PrekeyedHmac | None = None,
                    free: Any = None) -> None:
    """``payload`` signed by a key of ``signer`` valid at ``arrived`` (HMAC-SHA256 over its
    JCS canonical JSON); unsigned only when ``unsigned_allowed``. ``hmacs``: the keys
    already set up; ``free``: what of ``payload`` no schema typed (by default all of it)."""
    if signature is None:
        if unsigned_allowed:
            return
        raise rejected("missing_signature", f"{signer!r} must sign (the engine has a keyring); "
                                            "no signature given")
    valid = keys.verification_keys(signer, arrived)
    if not valid:
        known = "no key" if not keys.has_keys(signer) else "no key still valid"
        raise rejected("bad_signature", f"{signer!r} has {known} at {arrived.isoformat()}, "
                                        "when the record arrived")
    try:
        body = plain_canonical_bytes(payload, free)
    except CanonicalizationError as exc:
        raise rejected("bad_signature", f"no canonical JSON to verify: {exc}") from None
    matches = signature_matches if hmacs is None else hmacs.matches
    if not matches(body, signature, valid):
        raise rejected("bad_signature", f"signature does not verify with a key of {signer!r} "
                                        f"valid at {arrived.isoformat()}, when the record arrived")


@dataclass
class Gate:
    catalog: Catalog
    keys: KeyRing | None = None
    future_tolerance: timedelta = timedelta(minutes=5)
    #: departments that may still send unsigned events while they move to signing
    #: (settings ``unsigned_departments``; only catalog departments)
    unsigned_departments: frozenset[str] = frozenset()
    hmacs: PrekeyedHmac = field(default_factory=PrekeyedHmac, repr=False)
    #: the departments that may send each item's events, by item code (the catalog does
    #: not change while the gate runs)
    _handlers: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._handlers = {code: frozenset((item.department, *item.co_departments))
                          for code, item in self.catalog.items()}
        self.unsigned_departments = frozenset(self.unsigned_departments)
        unknown = sorted(self.unsigned_departments - set(self.catalog.departments))
        if unknown:
            raise ValueError(f"unsigned departments {unknown} are not in the catalog "
                             f"(known: {', '.join(sorted(self.catalog.departments))})")

    def parse(self, raw: bytes, now: datetime | None,
              arrived: datetime | None = None) -> GateEvent:
        """Parse and check one event on its own.

        ``now``: when the event arrived, as the worker judges it (from the Kafka record
        timestamp); events dated after it (plus the tolerance) are rejected and the signing
        key must be valid at it. ``None`` in replay: no future check, and the key must be
        valid at the event's ``received_at``, else at ``arrived`` (the replay clock before
        this event) or the event's own ``occurred_at`` if that is later (nothing arrives
        before it happened)."""
        if self.keys is None and len(raw) <= MAX_EVENT_BYTES:
            # no signature to verify over the JSON: most events need no dict
            event = read_plain_event(raw)
            if event is not None:
                return self._admit(event, now)
        payload = read_object(raw, MAX_EVENT_BYTES, Rejected, "invalid_event")
        return self.validate(payload, now, arrived)

    def validate(self, payload: dict[str, Any], now: datetime | None,
                 arrived: datetime | None = None) -> GateEvent:
        """:meth:`parse` of an event already read from JSON (a dict)."""
        try:
            event = read_event(payload)
        except EventValidationError as exc:
            raise Rejected("invalid_event", str(exc)) from None
        self._admit(event, now)
        if self.keys is not None:
            when = now or received_at(event) or max(arrived or event.occurred_at,
                                                     event.occurred_at)
            # the schema's fields hold text, the version 1 and nulls: JCS writes them as JSON
            free = [event.attributes] if _FIELDS.issuperset(payload) else \
                [event.attributes, {k: payload[k] for k in payload.keys() - _FIELDS}]
            check_signature(payload, event.department, event.signature, self.keys, when,
                            event.department in self.unsigned_departments, Rejected,
                            self.hmacs, free)
        return event

    def _admit(self, event: GateEvent, now: datetime | None) -> GateEvent:
        """The checks of an event that the schema took: its item, department and time."""
        handlers = self._handlers.get(event.item_code)
        if handlers is None:
            raise Rejected("unknown_item", f"item_code {event.item_code!r} is not in the catalog")
        if event.department not in handlers:
            item = self.catalog[event.item_code]
            named = ", ".join(repr(d) for d in (item.department, *item.co_departments))
            raise Rejected("department_mismatch",
                           f"department {event.department!r} does not handle item "
                           f"{item.code} (only {named})")
        when = event.occurred_at
        if when.year < _ORIGIN_YEAR:
            raise Rejected("time_out_of_range", f"occurred_at {when} is before {ORIGIN}")
        if now is not None and when > now + self.future_tolerance:
            raise Rejected("time_out_of_range", f"occurred_at {when.isoformat()} is in the future")
        return event

    @staticmethod
    def check_key(event: GateEvent, key: bytes | None) -> None:
        """The Kafka key must be the case id, or the case's state would split."""
        if key != event.case_id.encode():
            raise Rejected("wrong_key", f"Kafka key {key!r} is not the case_id {event.case_id!r}")

    @staticmethod
    def check_against_case(event: GateEvent, state: CaseState | None, size: int = 0) -> None:
        """The event against the case it belongs to (``size``: the event's bytes)."""
        if state is None:
            return
        if event.item_code != state.item_code:
            raise Rejected("item_mismatch", f"case {event.case_id} is item {state.item_code}, "
                                            f"event says {event.item_code}")
        if state.has_event(event.department, event.event_id):
            raise Rejected("duplicate_event_id",
                           f"event_id {event.event_id!r} of {event.department!r} already seen")
        if len(state.facts) >= MAX_FACTS_PER_CASE:
            raise Rejected("case_too_large", f"case {event.case_id} has {len(state.facts)} "
                           f"events already, the most one case may have ({MAX_FACTS_PER_CASE})")
        # keeps nothing on the state: sharded replay takes a chunk's events before it
        # sets when each was received, so a fact may still change after this
        if size > _SMALL_EVENT_BYTES and \
                len(encode_state(state, keep=False)) + size > MAX_CASE_BYTES:
            raise Rejected("case_too_large", f"case {event.case_id} would exceed "
                           f"{MAX_CASE_BYTES} bytes with this {size}-byte event")


def received_at(event: GateEvent) -> datetime | None:
    """An optional ``received_at`` field: when the worker received the event, recorded by an
    archive of its input (RFC 3339 with offset; anything else is ignored)."""
    raw = event.received_at
    if not isinstance(raw, str):
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
