"""Complaints (投诉处理) as pure rules: ``complaint.received`` and ``complaint.overdue``.

A complaint (topic ``complaints``, contract.md) about a case or a department raises a
yellow ``complaint.received`` at once. If no ``complaint_handled`` with the same
``complaint_id`` happened within ``working_days`` (default 15) working days — counted
like every limit: the start day not counted, ending at 24:00 of the last working day — a
red ``complaint.overdue`` fires at that instant plus the allowed lateness, with no further
event. Like every red alert it becomes ``escalated`` (督办, same alert id) when the
complaint is still not handled after the escalation period.

The worker keeps :class:`ComplaintState` in a Faust table keyed by ``complaint_id`` with
a deadline index (``rules/schedule.py``); replay keeps them in a dict. Both call
:meth:`ComplaintRules.ingest` and :meth:`ComplaintRules.evaluate`.

Before that every complaint passes :class:`ComplaintGate` (the complaints' own gate, like
:class:`rules.ingest.Gate` for events): a rejected one goes to the dead-letter topic
``complaints.dlq`` with a reason from :data:`COMPLAINT_REJECT_REASONS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from jiancha.producers.complaints import COMPLAINT_CENTRE
from jiancha.producers.contract import (
    SEVERITY_RANK,
    Alert,
    Complaint,
    EventValidationError,
    Severity,
    make_alert_id,
)

from .catalog import Catalog
from .counted_time import ORIGIN, WorkingTime
from .ingest import KeyRing, Rejected, check_signature, read_object
from .messages import escalation_prefix
from .rulebook import RuleSet
from .windows import render_alert

RECEIVED = "complaint.received"
OVERDUE = "complaint.overdue"
COMPLAINT_RULES = frozenset({RECEIVED, OVERDUE})
#: 好差评: a complaint is handled (rectified) within 15 working days
HANDLING_DAYS = 15
_TICK = timedelta(microseconds=1)


#: the ``jiancha-reason`` of a complaint on ``complaints.dlq``
COMPLAINT_REJECT_REASONS = (
    "invalid_json",
    "invalid_complaint",
    "unknown_department",
    "unknown_item",
    "missing_signature",
    "bad_signature",
    "time_out_of_range",
)
#: a complaint's text is at most 10,000 characters (30,000 bytes of Chinese)
MAX_COMPLAINT_BYTES = 64 * 1024


class ComplaintRejected(Rejected):
    reasons = COMPLAINT_REJECT_REASONS


@dataclass
class ComplaintGate:
    """Parse and check one complaint: the contract, a catalog department (and item, when it
    names one: both become labels and table keys), its time, and with a keyring the
    signature of the complaint centre (``signer``, a keyring entry: complaints come from
    the centre, not from the department they are about) by a key valid when it arrived."""

    catalog: Catalog
    keys: KeyRing | None = None
    signer: str = COMPLAINT_CENTRE
    future_tolerance: timedelta = timedelta(minutes=5)

    def parse(self, raw: bytes, now: datetime | None,
              arrived: datetime | None = None) -> Complaint:
        """``now`` and ``arrived`` as for :meth:`rules.ingest.Gate.parse`: ``now`` is when the
        record arrived (the worker's judged Kafka time), ``None`` in replay, where the key
        must be valid at ``arrived`` (the replay clock), else at the complaint's own time."""
        payload = read_object(raw, MAX_COMPLAINT_BYTES, ComplaintRejected, "invalid_complaint")
        return self.validate(payload, now, arrived)

    def validate(self, payload: dict[str, Any], now: datetime | None,
                 arrived: datetime | None = None) -> Complaint:
        try:
            complaint = Complaint.model_validate(payload)
        except ValidationError as exc:
            problems = EventValidationError.from_pydantic(exc)
            raise ComplaintRejected("invalid_complaint", str(problems)) from None
        if complaint.department not in self.catalog.departments:
            raise ComplaintRejected("unknown_department",
                                    f"department {complaint.department!r} is not in the catalog")
        item = (complaint.model_extra or {}).get("item_code")
        if item is not None and (not isinstance(item, str) or item not in self.catalog):
            raise ComplaintRejected("unknown_item",
                                    f"item_code {str(item)[:64]!r} is not in the catalog")
        if complaint.occurred_at.year < ORIGIN.year:
            raise ComplaintRejected("time_out_of_range",
                                    f"occurred_at {complaint.occurred_at} is before {ORIGIN}")
        if now is not None and complaint.occurred_at > now + self.future_tolerance:
            raise ComplaintRejected("time_out_of_range", f"occurred_at "
                                    f"{complaint.occurred_at.isoformat()} is in the future")
        if self.keys is not None:
            check_signature(payload, self.signer, complaint.signature, self.keys,
                            now or arrived or complaint.occurred_at, False, ComplaintRejected)
        return complaint


def is_complaint(payload: Mapping[str, Any]) -> bool:
    """A complaint line in a JSON Lines file of events (replay): it has a ``complaint_id``."""
    return "complaint_id" in payload


@dataclass(slots=True)
class ComplaintState:
    complaint_id: str
    department: str | None = None
    case_id: str | None = None
    item_code: str | None = None
    category: str | None = None
    received_at: float | None = None  # the complaint's occurred_at (epoch seconds)
    handled_at: float | None = None  # the first complaint_handled's occurred_at
    partition: int = -1
    raised: dict[str, int] = field(default_factory=dict)  # alert_id -> severity rank

    def encode(self) -> bytes:
        return orjson.dumps([self.complaint_id, self.department, self.case_id, self.item_code,
                             self.category, self.received_at, self.handled_at, self.partition,
                             self.raised])

    @classmethod
    def decode(cls, raw: bytes) -> ComplaintState:
        cid, dept, case, item, cat, rec, handled, p, raised = orjson.loads(raw)
        return cls(cid, dept, case, item, cat, rec, handled, p, raised)


class ComplaintRules:
    def __init__(self, ruleset: RuleSet, wt: WorkingTime,
                 departments: Mapping[str, Any] | None = None) -> None:
        self.ruleset = ruleset
        self.wt = wt
        self.departments = dict(departments or {})
        params = ruleset.rules[OVERDUE].params if OVERDUE in ruleset.rules else {}
        self.days = int(params.get("working_days", HANDLING_DAYS))

    def enabled(self, rule: str) -> bool:
        return rule in self.ruleset.rules and self.ruleset.rules[rule].enabled

    def ingest(self, state: ComplaintState | None, c: Complaint,
               partition: int = -1) -> tuple[ComplaintState, bool]:
        """Add a complaint or its closing; returns the state and whether this is a complaint
        seen for the first time (a repeat changes nothing)."""
        if state is None:
            state = ComplaintState(c.complaint_id)
        if partition >= 0:
            state.partition = partition
        at = c.occurred_at.timestamp()
        new = False
        if c.kind == "complaint":
            if state.received_at is None:
                new = True
                state.received_at = at
                state.department = c.department
                state.case_id = c.case_id
                item = (c.model_extra or {}).get("item_code")
                state.item_code = item if isinstance(item, str) and item else None
                state.category = c.category
        else:
            if state.handled_at is None or at < state.handled_at:
                state.handled_at = at
            state.department = state.department or c.department
            state.case_id = state.case_id or c.case_id
        return state, new

    def deadline(self, state: ComplaintState) -> datetime | None:
        if state.received_at is None:
            return None
        return self.wt.working_deadline(datetime.fromtimestamp(state.received_at, self.wt.tz),
                                        self.days)

    def evaluate(self, state: ComplaintState, now: datetime) -> tuple[list[Alert], datetime | None]:
        """Alerts due by ``now`` not raised before (recorded in ``state.raised``) and the
        next instant something becomes due."""
        if state.received_at is None:
            return [], None  # the closing arrived before the complaint
        received = datetime.fromtimestamp(state.received_at, self.wt.tz)
        stages: list[tuple[str, Severity, datetime, datetime]] = []  # rule, severity, due, event time
        if self.enabled(RECEIVED):
            stages.append((RECEIVED, "yellow", received, received))
        deadline = self.deadline(state)
        assert deadline is not None
        handled = state.handled_at
        if self.enabled(OVERDUE) and (handled is None or handled > deadline.timestamp()):
            due = deadline + self.ruleset.settings.allowed_lateness
            stages.append((OVERDUE, "red", due, deadline))
            days = self.ruleset.escalation_days(OVERDUE)
            escalation = None if days is None else self.wt.working_deadline(deadline - _TICK, days)
            if escalation is not None and (handled is None or handled > escalation.timestamp()):
                stages.append((OVERDUE, "escalated", max(escalation, due), deadline))
        alerts: list[Alert] = []
        next_due: datetime | None = None
        for rule, severity, due, event_time in stages:
            alert_id = make_alert_id(rule, state.complaint_id)
            if state.raised.get(alert_id, 0) >= SEVERITY_RANK[severity]:
                continue
            if due <= now:
                state.raised[alert_id] = SEVERITY_RANK[severity]
                alerts.append(self._render(rule, severity, alert_id, state, event_time, deadline, now))
            elif next_due is None or due < next_due:
                next_due = due
        return alerts, next_due

    def next_due(self, state: ComplaintState) -> datetime | None:
        return self.evaluate(state, datetime(1970, 1, 1, tzinfo=UTC))[1]

    def _render(self, rule: str, severity: Severity, alert_id: str, state: ComplaintState,
                event_time: datetime, deadline: datetime, now: datetime) -> Alert:
        from .checks.deadlines import deadline_text

        assert state.received_at is not None
        received = datetime.fromtimestamp(state.received_at, self.wt.tz)
        details: dict[str, Any] = {
            "complaint_id": state.complaint_id,
            "category": state.category or "-",
            "received_at": received.isoformat(),
            "received_text": received.strftime("%Y-%m-%d %H:%M"),
            "about_zh": f"（办件 {state.case_id}）" if state.case_id else "",
            "about_en": f" (case {state.case_id})" if state.case_id else "",
        }
        prefix = ("", "")
        if rule == OVERDUE:
            details.update(limit=self.days, deadline=deadline.isoformat(),
                           deadline_text=deadline_text(deadline, self.wt))
            if severity == "escalated":
                days = self.ruleset.escalation_days(OVERDUE)
                details["escalated_after_working_days"] = days
                prefix = escalation_prefix(days)
        return render_alert(self.ruleset, self.departments, self.wt.tz, rule, severity, alert_id,
                            department=state.department, actor=None, event_time=event_time,
                            now=now, details=details, evidence=[state.complaint_id],
                            case_id=state.case_id, item_code=state.item_code, prefix=prefix)
