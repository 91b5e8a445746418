"""Offline, deterministic replay (contract.md): events in file order, an event-time clock,
the same engine as the worker; alerts sorted by (event_time, alert_id).

The clock is the latest ``occurred_at`` seen so far; after the last event it moves to
``until`` so that every deadline up to then fires. Detected-at times are that clock, so
two runs over the same file give byte-identical output.

Besides the case rules, replay drives the window rules (``rules/windows.py``) and the
complaint rules (``rules/complaints.py``: a line with a ``complaint_id`` is a complaint or
its closing), and, when given an :class:`~rules.indicators.IndicatorBook`, feeds it every
accepted event, complaint and alert, as the worker does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from pydantic import ValidationError

from producers.contract import Alert, Complaint
from rules.case import CaseState
from rules.clock import EventTimeClock
from rules.complaints import ComplaintRules, ComplaintState, is_complaint
from rules.engine import Engine
from rules.indicators import IndicatorBook
from rules.ingest import Gate, KeyRing, Rejected
from rules.schedule import DeadlineIndex
from rules.windows import WindowRecord, WindowRules, WindowTracker


@dataclass
class ReplayResult:
    alerts: list[Alert] = field(default_factory=list)
    events: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    complaints: int = 0
    late_window_records: int = 0


def replay(
    lines: Iterable[bytes],
    engine: Engine,
    until: datetime | None = None,
    keys: KeyRing | None = None,
    on_progress: Callable[[int], None] | None = None,
    *,
    windows: bool = True,
    indicators: IndicatorBook | None = None,
) -> ReplayResult:
    gate = Gate(engine.catalog, keys)
    clock = EventTimeClock()
    cases: dict[str, CaseState] = {}
    index = DeadlineIndex()
    result = ReplayResult()
    departments = engine.catalog.departments
    tracker = WindowTracker(WindowRules(engine.ruleset, engine.working_time, departments)) \
        if windows else None
    complaint_rules = ComplaintRules(engine.ruleset, engine.working_time, departments)
    complaints: dict[str, ComplaintState] = {}
    complaint_index = DeadlineIndex()

    def raised(alerts: list[Alert]) -> None:
        result.alerts.extend(alerts)
        if indicators is not None:
            for alert in alerts:
                indicators.on_alert(alert)

    def fire_due() -> None:
        now = clock.now()
        for case_id in list(index.pop_due(now.timestamp())):
            state = cases[case_id]
            alerts, due = engine.judge(state, now)
            raised(alerts)
            index.put(case_id, due)
        for complaint_id in list(complaint_index.pop_due(now.timestamp())):
            alerts, nxt = complaint_rules.evaluate(complaints[complaint_id], now)
            raised(alerts)
            complaint_index.schedule(complaint_id, nxt.timestamp() if nxt else None)
        if tracker is not None:
            raised(tracker.advance(now))

    def on_complaint(lineno: int, raw: bytes) -> bool:
        """Handle a complaint line; False when the line is not a complaint."""
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(payload, dict) or not is_complaint(payload):
            return False
        try:
            complaint = Complaint.model_validate(payload)
        except ValidationError as exc:
            result.rejected["invalid_complaint"] = result.rejected.get("invalid_complaint", 0) + 1
            problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            result.problems.append(f"line {lineno}: invalid_complaint: {problem}")
            return True
        result.complaints += 1
        clock.advance(complaint.occurred_at)
        cid = complaint.complaint_id
        state, new = complaint_rules.ingest(complaints.get(cid), complaint)
        complaints[cid] = state
        if new and indicators is not None and state.received_at is not None:
            indicators.on_complaint(state.department, state.item_code, state.received_at)
        alerts, nxt = complaint_rules.evaluate(state, clock.now())
        raised(alerts)
        complaint_index.schedule(cid, nxt.timestamp() if nxt else None)
        fire_due()
        return True

    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        if b'"complaint_id"' in raw and on_complaint(lineno, raw):
            continue
        try:
            event = gate.parse(raw, None)
            state = cases.get(event.case_id)
            gate.check_against_case(event, state)
        except Rejected as r:
            result.rejected[r.reason] = result.rejected.get(r.reason, 0) + 1
            result.problems.append(f"line {lineno}: {r.reason}: {r.detail}")
            continue
        result.events += 1
        clock.advance(event.occurred_at)
        received = _received_at(event) or event.occurred_at
        state = engine.ingest(state, event, received)
        cases[event.case_id] = state
        alerts, due = engine.judge(state, clock.now(), event.step, index.get(event.case_id))
        raised(alerts)
        if indicators is not None:
            indicators.on_event(event, state)
        if tracker is not None:
            raised(tracker.observe(WindowRecord.from_event(event), clock.now()))
        index.put(event.case_id, due)
        fire_due()
        if on_progress is not None and result.events % 10_000 == 0:
            on_progress(result.events)
    if until is not None:
        clock.advance(until)
        fire_due()
    if tracker is not None:
        result.late_window_records = tracker.late
    result.alerts.sort(key=lambda a: (a.event_time, a.alert_id))
    return result


def _received_at(event: object) -> datetime | None:
    """An optional ``received_at`` field (added by archives of the worker's input)."""
    extra = getattr(event, "model_extra", None) or {}
    raw = extra.get("received_at")
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            return None
        return dt if dt.tzinfo else None
    return None
