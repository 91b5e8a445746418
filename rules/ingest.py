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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson

from jiancha.producers.contract import (
    ApprovalEvent,
    EventValidationError,
    canonical_bytes,
    parse_event,
    signature_matches,
)
from jiancha.producers.jcs import CanonicalizationError
from jiancha.rules.case import CaseState
from jiancha.rules.catalog import Catalog
from jiancha.rules.counted_time import ORIGIN

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
                    rejected: type[Rejected]) -> None:
    """``payload`` signed by a key of ``signer`` valid at ``arrived`` (HMAC-SHA256 over its
    JCS canonical JSON); unsigned only when ``unsigned_allowed``."""
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
        body = canonical_bytes(payload)
    except CanonicalizationError as exc:
        raise rejected("bad_signature", f"no canonical JSON to verify: {exc}") from None
    if not signature_matches(body, signature, valid):
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

    def __post_init__(self) -> None:
        self.unsigned_departments = frozenset(self.unsigned_departments)
        unknown = sorted(self.unsigned_departments - set(self.catalog.departments))
        if unknown:
            raise ValueError(f"unsigned departments {unknown} are not in the catalog "
                             f"(known: {', '.join(sorted(self.catalog.departments))})")

    def parse(self, raw: bytes, now: datetime | None,
              arrived: datetime | None = None) -> ApprovalEvent:
        """Parse and check one event on its own.

        ``now``: when the event arrived, as the worker judges it (from the Kafka record
        timestamp); events dated after it (plus the tolerance) are rejected and the signing
        key must be valid at it. ``None`` in replay: no future check, and the key must be
        valid at the event's ``received_at``, else at ``arrived`` (the replay clock before
        this event) or the event's own ``occurred_at`` if that is later (nothing arrives
        before it happened)."""
        payload = read_object(raw, MAX_EVENT_BYTES, Rejected, "invalid_event")
        return self.validate(payload, now, arrived)

    def validate(self, payload: dict[str, Any], now: datetime | None,
                 arrived: datetime | None = None) -> ApprovalEvent:
        """:meth:`parse` of an event already read from JSON (a dict)."""
        try:
            event = parse_event(payload)
        except EventValidationError as exc:
            raise Rejected("invalid_event", str(exc)) from None
        item = self.catalog.get(event.item_code)
        if item is None:
            raise Rejected("unknown_item", f"item_code {event.item_code!r} is not in the catalog")
        if event.department != item.department and event.department not in item.co_departments:
            handlers = ", ".join(repr(d) for d in (item.department, *item.co_departments))
            raise Rejected("department_mismatch",
                           f"department {event.department!r} does not handle item "
                           f"{item.code} (only {handlers})")
        if event.occurred_at.year < ORIGIN.year:
            raise Rejected("time_out_of_range", f"occurred_at {event.occurred_at} is before {ORIGIN}")
        if now is not None and event.occurred_at > now + self.future_tolerance:
            raise Rejected("time_out_of_range",
                           f"occurred_at {event.occurred_at.isoformat()} is in the future")
        if self.keys is not None:
            when = now or received_at(event) or max(arrived or event.occurred_at,
                                                     event.occurred_at)
            check_signature(payload, event.department, event.signature, self.keys, when,
                            event.department in self.unsigned_departments, Rejected)
        return event

    @staticmethod
    def check_key(event: ApprovalEvent, key: bytes | None) -> None:
        """The Kafka key must be the case id, or the case's state would split."""
        if key != event.case_id.encode():
            raise Rejected("wrong_key", f"Kafka key {key!r} is not the case_id {event.case_id!r}")

    @staticmethod
    def check_against_case(event: ApprovalEvent, state: CaseState | None, size: int = 0) -> None:
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
        if size > _SMALL_EVENT_BYTES and len(state.encode()) + size > MAX_CASE_BYTES:
            raise Rejected("case_too_large", f"case {event.case_id} would exceed "
                           f"{MAX_CASE_BYTES} bytes with this {size}-byte event")


def received_at(event: ApprovalEvent) -> datetime | None:
    """An optional ``received_at`` field: when the worker received the event, recorded by an
    archive of its input (RFC 3339 with offset; anything else is ignored)."""
    raw = (event.model_extra or {}).get("received_at")
    if not isinstance(raw, str):
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
