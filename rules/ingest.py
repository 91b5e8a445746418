"""The gate every event passes before the rules: parse, validate, verify, de-duplicate.

Shared by the worker and replay. A rejected event becomes :class:`Rejected` with a
stable ``reason`` (a metric label and the DLQ header) and a human ``detail``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson

from producers.contract import ApprovalEvent, EventValidationError, parse_event, verify_signature
from rules.case import CaseState
from rules.catalog import Catalog
from rules.counted_time import ORIGIN

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
)

MAX_EVENT_BYTES = 64 * 1024


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REJECT_REASONS, reason
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class KeyRing(Protocol):
    def has_keys(self, department: str) -> bool: ...
    def verification_keys(self, department: str, at: datetime) -> list[bytes]: ...


@dataclass
class Gate:
    catalog: Catalog
    keys: KeyRing | None = None
    future_tolerance: timedelta = timedelta(minutes=5)

    def parse(self, raw: bytes, now: datetime | None) -> ApprovalEvent:
        """Parse and check one event on its own (``now`` None: no future check)."""
        if len(raw) > MAX_EVENT_BYTES:
            raise Rejected("invalid_event", f"event is {len(raw)} bytes, the limit is {MAX_EVENT_BYTES}")
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Rejected("invalid_json", f"not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise Rejected("invalid_json", "expected a JSON object")
        return self.validate(payload, now)

    def validate(self, payload: dict[str, Any], now: datetime | None) -> ApprovalEvent:
        """:meth:`parse` of an event already read from JSON (a dict)."""
        try:
            event = parse_event(payload)
        except EventValidationError as exc:
            raise Rejected("invalid_event", str(exc)) from None
        if event.item_code not in self.catalog:
            raise Rejected("unknown_item", f"item_code {event.item_code!r} is not in the catalog")
        if event.occurred_at.year < ORIGIN.year:
            raise Rejected("time_out_of_range", f"occurred_at {event.occurred_at} is before {ORIGIN}")
        if now is not None and event.occurred_at > now + self.future_tolerance:
            raise Rejected("time_out_of_range",
                           f"occurred_at {event.occurred_at.isoformat()} is in the future")
        if self.keys is not None and self.keys.has_keys(event.department):
            if event.signature is None:
                raise Rejected("missing_signature",
                               f"department {event.department!r} signs its events; none given")
            if not verify_signature(payload, self.keys.verification_keys(event.department,
                                                                          event.occurred_at)):
                raise Rejected("bad_signature",
                               f"signature does not verify with {event.department!r}'s keys")
        return event

    @staticmethod
    def check_key(event: ApprovalEvent, key: bytes | None) -> None:
        """The Kafka key must be the case id, or the case's state would split."""
        if key != event.case_id.encode():
            raise Rejected("wrong_key", f"Kafka key {key!r} is not the case_id {event.case_id!r}")

    @staticmethod
    def check_against_case(event: ApprovalEvent, state: CaseState | None) -> None:
        if state is None:
            return
        if event.item_code != state.item_code:
            raise Rejected("item_mismatch", f"case {event.case_id} is item {state.item_code}, "
                                            f"event says {event.item_code}")
        if state.has_event(event.department, event.event_id):
            raise Rejected("duplicate_event_id",
                           f"event_id {event.event_id!r} of {event.department!r} already seen")
