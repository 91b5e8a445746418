"""Wire contract v1 (``shared/spec/contract.md``): approval-step events, complaints, alerts.

These pydantic models are the public API. The JSON Schemas in ``producers/schema/`` are
generated from them (``jiancha schema export``) and a test fails when they drift.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from .jcs import CanonicalizationError, canonicalize

SCHEMA_VERSION = 1

#: no control characters (NUL, line breaks, ESC, C1): ids end up in keys, logs and labels
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]+$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_CONTROL)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL)]
#: RFC 3339 with seconds and an offset (pydantic alone also takes epoch numbers and "1700000000")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
#: an extension beyond any lawful one (the catalog allows at most 60 days) still reaches the
#: rules and is alerted as unlawful; a year or more is no extension but garbage
MAX_EXTENSION_DAYS = 365
#: a fee in CNY: at most 2 decimals, below a billion, no sign, exponent, space or underscore
AMOUNT = re.compile(r"(0|[1-9]\d{0,8})(\.\d{1,2})?")
MAX_ATTRIBUTE_TEXT = 2000
MAX_SUPPLEMENT_ITEMS = 200
#: arrays and objects in an event nest at most this deep (the case state is JSON too)
MAX_NESTING = 16


def nesting_depth(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (0 for a scalar), without recursion."""
    deepest, level = 0, [(value, 0)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            break
        level.extend((child, depth + 1) for child in children)
    return deepest


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value  # built in Python, not read from the wire
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise ValueError(f"expected an RFC 3339 timestamp with offset such as "
                         f"'2026-11-30T09:00:00+08:00', got {value!r}")
    return value


def _exact_version(value: Any) -> Any:
    if type(value) is not int:  # True and 1.0 equal 1 but are no version
        raise ValueError(f"schema_version must be the integer 1, got {value!r}")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
Version = Annotated[Literal[1], BeforeValidator(_exact_version)]


class Step(StrEnum):
    submitted = "submitted"
    supplement_requested = "supplement_requested"
    supplement_received = "supplement_received"
    accepted = "accepted"
    rejected_at_intake = "rejected_at_intake"
    reviewed = "reviewed"
    suspended = "suspended"
    resumed = "resumed"
    extended = "extended"
    decided = "decided"
    fee_charged = "fee_charged"
    delivered = "delivered"
    completed = "completed"
    withdrawn = "withdrawn"


#: Steps the applicant takes: ``actor`` may be omitted (it is then ``applicant``).
APPLICANT_STEPS = frozenset({Step.submitted, Step.supplement_received, Step.withdrawn})

#: Art. 45 reasons that lawfully stop the clock.
LAWFUL_SUSPENSION_REASONS = frozenset(
    {
        "hearing",
        "tendering",
        "auction",
        "inspection",
        "testing",
        "quarantine",
        "appraisal",
        "expert_review",
    }
)


def _require(attrs: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in attrs:
        raise ValueError(f"attributes.{key} is required ({what})")
    value = attrs[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"attributes.{key} must be {what}, got {value!r}")
    return value


def _check_items(attrs: dict[str, Any]) -> None:
    if "items" not in attrs:
        return
    items = attrs["items"]
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError("attributes.items must be a list of strings")
    if len(items) > MAX_SUPPLEMENT_ITEMS:
        raise ValueError(f"attributes.items has {len(items)} entries, at most "
                         f"{MAX_SUPPLEMENT_ITEMS}")
    if any(len(i) > MAX_ATTRIBUTE_TEXT for i in items):
        raise ValueError(f"attributes.items: an entry is longer than {MAX_ATTRIBUTE_TEXT} "
                         "characters")


def _check_opinion(attrs: dict[str, Any]) -> None:
    opinion = _require(attrs, "opinion", str, "'agree' or 'disagree'")
    if opinion not in ("agree", "disagree"):
        raise ValueError(f"attributes.opinion must be 'agree' or 'disagree', got {opinion!r}")


def _check_reason(attrs: dict[str, Any]) -> None:
    _require(attrs, "reason", str, "a string: hearing, tendering, … or free text")


def _check_extension(attrs: dict[str, Any]) -> None:
    days = _require(attrs, "days", int, "a whole number of working days")
    if not 1 <= days <= MAX_EXTENSION_DAYS:
        raise ValueError(f"attributes.days must be 1 to {MAX_EXTENSION_DAYS}, got {days}")
    if "approved_by" in attrs and not isinstance(attrs["approved_by"], str | None):
        raise ValueError("attributes.approved_by must be a string")


def _check_outcome(attrs: dict[str, Any]) -> None:
    outcome = _require(attrs, "outcome", str, "'grant' or 'deny'")
    if outcome not in ("grant", "deny"):
        raise ValueError(f"attributes.outcome must be 'grant' or 'deny', got {outcome!r}")


def _check_amount(attrs: dict[str, Any]) -> None:
    amount = _require(attrs, "amount", str, "a decimal string in CNY such as '50.00'")
    if not AMOUNT.fullmatch(amount):
        raise ValueError("attributes.amount must be a non-negative amount in CNY below "
                         f"1,000,000,000 with at most 2 decimals such as '50.00', got "
                         f"{amount[:40]!r}")


#: the checks of one step's own attributes (looked up once: reading a member off an enum
#: class, ``Step.reviewed``, costs more than the check)
_STEP_ATTRIBUTES: dict[Step, Callable[[dict[str, Any]], None]] = {
    Step.supplement_requested: _check_items,
    Step.reviewed: _check_opinion,
    Step.suspended: _check_reason,
    Step.extended: _check_extension,
    Step.decided: _check_outcome,
    Step.fee_charged: _check_amount,
}
_TEXT_ATTRIBUTES = ("reason", "approved_by", "fee_code")


def check_attributes(step: Step, attrs: dict[str, Any]) -> None:
    """Shape checks only: what the rules judge (a deny without reason, an extension
    without approver or longer than the law allows, an unlawful suspension reason) is
    valid input and becomes an alert."""
    check = _STEP_ATTRIBUTES.get(step)
    if check is not None:
        check(attrs)
    if not attrs:
        return
    for key in _TEXT_ATTRIBUTES:
        value = attrs.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"attributes.{key} must be a string")
            if len(value) > MAX_ATTRIBUTE_TEXT:
                raise ValueError(f"attributes.{key} is longer than {MAX_ATTRIBUTE_TEXT} "
                                 "characters")


class ApprovalEvent(BaseModel):
    """One approval step, as a department emits it (topic ``approval-events``)."""

    model_config = ConfigDict(extra="allow", frozen=True, use_enum_values=False)

    schema_version: Version = Field(description="Contract version, 1.")
    event_id: Id = Field(description="Unique per department; a repeat is dropped.")
    case_id: Id = Field(description="办件编号, unique across the city; the Kafka key.")
    item_code: Code = Field(description="事项编码 from the item catalog.")
    department: Code = Field(description="Code of the department emitting the event.")
    step: Step
    occurred_at: Timestamp = Field(
        description="RFC 3339 timestamp with offset: when the step happened (event time)."
    )
    actor: Id | None = Field(
        None, description="Handler id (经办人); 'applicant' for applicant steps."
    )
    applicant_id: Id | None = Field(
        None, description="Hashed applicant identity; required on 'submitted'."
    )
    channel: Literal["online", "window", "mobile"] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, description="Step-specific.")
    signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="HMAC-SHA256 hex over the RFC 8785 (JCS) canonical JSON of every "
        "other field; required of every department when the engine has a keyring."
    )

    @model_validator(mode="after")
    def _step_rules(self) -> ApprovalEvent:
        if nesting_depth([self.attributes, self.model_extra]) > MAX_NESTING:
            raise ValueError(f"arrays and objects nest deeper than {MAX_NESTING} levels")
        if self.step is Step.submitted and not self.applicant_id:
            raise ValueError("applicant_id is required on step 'submitted'")
        if self.actor is None and self.step not in APPLICANT_STEPS:
            raise ValueError(f"actor is required on staff step {self.step.value!r}")
        check_attributes(self.step, self.attributes)
        return self

    @property
    def effective_actor(self) -> str:
        return self.actor or "applicant"

    def wire_dict(self) -> dict[str, Any]:
        """The JSON object as sent on the wire (RFC 3339 times, no None fields)."""
        return self.model_dump(mode="json", exclude_none=True)


class Complaint(BaseModel):
    """A complaint, or its closing (topic ``complaints``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Version
    kind: Literal["complaint", "complaint_handled"] = "complaint"
    complaint_id: Id
    department: Code
    case_id: Id | None = None
    occurred_at: Timestamp
    category: Code | None = None
    text: str | None = Field(None, max_length=10_000)
    signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="HMAC-SHA256 hex over the RFC 8785 (JCS) canonical JSON of every "
        "other field with the department's key, as for events."
    )


Severity = Literal["yellow", "red", "escalated"]
AlertStatus = Literal["open", "acknowledged", "resolved", "retracted"]
SEVERITY_RANK: dict[str, int] = {"yellow": 1, "red": 2, "escalated": 3}


class Alert(BaseModel):
    """An alert, the same JSON in every sink (Redis, replay output, notifications)."""

    model_config = ConfigDict(frozen=True)

    alert_id: str = Field(description="Deterministic: rule + case + what makes it distinct.")
    rule: str
    severity: Severity
    case_id: str | None = None
    item_code: str | None = None
    department: str | None = None
    actor: str | None = None
    detected_at: AwareDatetime = Field(description="When the engine raised it (processing time).")
    event_time: AwareDatetime = Field(description="When the violation happened (deadline instant).")
    message_zh: str
    message_en: str
    legal_basis: str
    evidence: list[str] = Field(default_factory=list, description="event_ids that prove it")
    status: AlertStatus = "open"
    details: dict[str, Any] = Field(default_factory=dict, description="the numbers behind it")

    def to_json(self) -> bytes:
        """Pydantic's JSON of the alert, written by orjson from the fields as they are (its
        datetimes read as pydantic writes them, UTC as ``Z``), in half the time. What
        orjson cannot write (a set, bytes, a key not a string in ``details``) goes through
        pydantic's JSON mode."""
        try:
            return orjson.dumps(self.__dict__, option=orjson.OPT_UTC_Z)
        except TypeError:
            return orjson.dumps(self.model_dump(mode="json"))


@functools.lru_cache(maxsize=1 << 16)  # the same open cases are evaluated again and again
def make_alert_id(rule: str, case_or_scope: str, *distinct: str) -> str:
    """Same violation → same id, so redelivery never creates a second alert."""
    raw = "\x1f".join((rule, case_or_scope, *distinct)).encode()
    return f"{rule.split('.')[0][:3]}-{hashlib.sha256(raw).hexdigest()[:24]}"


# --- signing ------------------------------------------------------------------------


def canonical_bytes(payload: dict[str, Any]) -> bytes:
    """RFC 8785 (JCS) canonical JSON of every field but ``signature`` (keys sorted by UTF-16
    code units, ECMAScript numbers, minimal escapes, no spaces, UTF-8): what any language's
    JCS library writes. Raises :class:`~producers.jcs.CanonicalizationError` on what JSON
    cannot hold (NaN, a lone surrogate)."""
    return canonicalize({k: v for k, v in payload.items() if k != "signature"})


def sign_payload(payload: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_bytes(payload), hashlib.sha256).hexdigest()


def verify_signature(payload: dict[str, Any], keys: list[bytes]) -> bool:
    sig = payload.get("signature")
    if not isinstance(sig, str):
        return False
    try:
        body = canonical_bytes(payload)
    except CanonicalizationError:
        return False
    return signature_matches(body, sig, keys)


def signature_matches(body: bytes, signature: str, keys: list[bytes]) -> bool:
    """Whether ``signature`` is the HMAC-SHA256 hex of ``body`` under one of ``keys``."""
    return any(
        hmac.compare_digest(hmac.new(k, body, hashlib.sha256).hexdigest(), signature)
        for k in keys
    )


class EventValidationError(ValueError):
    """An event does not follow the contract; ``problems`` names each bad field."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in problems))

    @classmethod
    def from_pydantic(cls, exc: ValidationError) -> EventValidationError:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "event"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append((field, msg))
        return cls(problems)


def parse_event(raw: bytes | str | dict[str, Any]) -> ApprovalEvent:
    """Parse and validate one event; raises :class:`EventValidationError`."""
    try:
        if isinstance(raw, dict):
            return ApprovalEvent.model_validate(raw)
        return ApprovalEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise EventValidationError.from_pydantic(exc) from None


def _attribute_schema() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What :func:`check_attributes` checks, in JSON Schema: the attributes' properties of
    any step, and per step (``if`` step ``then`` attributes) the rest."""
    text = {"type": ["string", "null"], "maxLength": MAX_ATTRIBUTE_TEXT}
    anywhere = {"reason": text, "approved_by": text, "fee_code": text}

    def on(step: Step, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
        attributes: dict[str, Any] = {"properties": properties}
        if required:
            attributes["required"] = required
        then: dict[str, Any] = {"properties": {"attributes": attributes}}
        if required:
            then["required"] = ["attributes"]
        return {"if": {"properties": {"step": {"const": step.value}}, "required": ["step"]},
                "then": then}

    per_step = [
        on(Step.supplement_requested, {"items": {
            "type": "array", "maxItems": MAX_SUPPLEMENT_ITEMS,
            "items": {"type": "string", "maxLength": MAX_ATTRIBUTE_TEXT}}}, []),
        on(Step.reviewed, {"opinion": {"enum": ["agree", "disagree"]}}, ["opinion"]),
        on(Step.suspended, {"reason": {"type": "string"}}, ["reason"]),
        on(Step.extended, {"days": {"type": "integer", "minimum": 1,
                                    "maximum": MAX_EXTENSION_DAYS}}, ["days"]),
        on(Step.decided, {"outcome": {"enum": ["grant", "deny"]}}, ["outcome"]),
        on(Step.fee_charged, {"amount": {"type": "string", "pattern": f"^{AMOUNT.pattern}$"}},
           ["amount"]),
    ]
    return anywhere, per_step


def event_json_schema() -> dict[str, Any]:
    schema = ApprovalEvent.model_json_schema()
    anywhere, per_step = _attribute_schema()
    schema["properties"]["attributes"]["properties"] = anywhere
    schema["properties"]["occurred_at"]["pattern"] = f"^{RFC3339.pattern}$"
    schema["allOf"] = per_step
    schema["$id"] = "https://jiancha.example/schema/approval-event.v1.json"
    schema["title"] = "jiancha approval-step event v1"
    return schema


def alert_json_schema() -> dict[str, Any]:
    schema = Alert.model_json_schema()
    schema["$id"] = "https://jiancha.example/schema/alert.v1.json"
    schema["title"] = "jiancha alert v1"
    return schema


def complaint_json_schema() -> dict[str, Any]:
    schema = Complaint.model_json_schema()
    schema["properties"]["occurred_at"]["pattern"] = f"^{RFC3339.pattern}$"
    schema["$id"] = "https://jiancha.example/schema/complaint.v1.json"
    schema["title"] = "jiancha complaint event v1"
    return schema


