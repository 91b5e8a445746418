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
from typing import Any

import orjson

from jiancha.producers.contract import Alert

from .case import CaseState, Fact
from .clock import EventTimeClock
from .collector import tuned_collector
from .complaints import (
    ComplaintGate,
    ComplaintRejected,
    ComplaintRules,
    ComplaintState,
    is_complaint,
)
from .driver import CaseDriver, ComplaintFlow
from .engine import Engine
from .indicators import IndicatorBook
from .ingest import Gate, GateEvent, KeyRing, Rejected, received_at
from .schedule import DeadlineIndex
from .windows import WindowRules, WindowTracker, fact_fields, record_of


@dataclass
class ReplayResult:
    alerts: list[Alert] = field(default_factory=list)
    events: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    complaints: int = 0
    late_window_records: int = 0
    #: complaint lines the complaints' gate rejected, by reason (events: ``rejected``)
    rejected_complaints: dict[str, int] = field(default_factory=dict)


class SideRules:
    """What replay drives beside the case rules, in one pass over the whole file: the
    complaint rules and the window rules (both keyed by other things than a case). Shared
    by :func:`replay` and the sharded replay's parent (``rules.replay_parallel``)."""

    def __init__(self, engine: Engine, clock: EventTimeClock, result: ReplayResult, *,
                 windows: bool, indicators: IndicatorBook | None,
                 keys: KeyRing | None = None) -> None:
        departments = engine.catalog.departments
        self.gate = ComplaintGate(engine.catalog, keys)
        self.clock = clock
        self.result = result
        self.indicators = indicators
        self.tracker = WindowTracker(WindowRules(engine.ruleset, engine.working_time,
                                                 departments)) if windows else None
        self.flow = ComplaintFlow(ComplaintRules(engine.ruleset, engine.working_time,
                                                 departments))
        self.complaints: dict[str, ComplaintState] = {}
        self.index = DeadlineIndex()

    def raised(self, alerts: list[Alert]) -> None:
        self.result.alerts.extend(alerts)
        if self.indicators is not None:
            for alert in alerts:
                self.indicators.on_alert(alert)

    def fire_due(self, now: datetime, t: float | None = None) -> None:
        """Complaint deadlines and windows due by ``now`` (asked after every line; ``t``:
        ``now`` in epoch seconds, if the caller has it)."""
        if t is None:
            t = now.timestamp()
        self.flow.fire_due(self.index, self.complaints, now, t, self.raised)
        if self.tracker is not None and self.tracker.may_be_due(t):
            self.raised(self.tracker.advance(now, t))

    def observe(self, event: GateEvent, fact: Fact, now: datetime, t: float) -> None:
        """An accepted event (the clock already moved to it: ``now``, ``t`` in epoch
        seconds; ``fact``: what its case took in) into the windows."""
        if self.tracker is not None:
            alerts = self.tracker.observe(record_of(fact_fields(event.case_id, fact)), now, t)
            if alerts:
                self.raised(alerts)

    def may_be_due(self, t: float) -> bool:
        """Whether :meth:`fire_due` at ``t`` (epoch seconds) could find something due."""
        return self.index.may_be_due(t) or (self.tracker is not None
                                            and self.tracker.may_be_due(t))

    def complaint(self, lineno: int, payload: dict[str, Any]) -> bool:
        """A complaint line (see :func:`complaint_payload`): through the complaints' gate
        (its key valid when the line was read: at the clock before it moves), the clock
        moved, judged. False when it was rejected (the clock did not move)."""
        result = self.result
        try:
            complaint = self.gate.validate(payload, None, arrived=self.clock.now())
        except ComplaintRejected as r:
            result.rejected_complaints[r.reason] = result.rejected_complaints.get(r.reason, 0) + 1
            result.problems.append(f"line {lineno}: {r.reason}: {r.detail}")
            return False
        result.complaints += 1
        self.clock.advance(complaint.occurred_at)
        cid = complaint.complaint_id
        state, new, alerts, nxt = self.flow.take(self.complaints.get(cid), complaint,
                                                 self.clock.now())
        self.complaints[cid] = state
        if new and self.indicators is not None and state.received_at is not None:
            self.indicators.on_complaint(state.department, state.item_code, state.received_at)
        self.raised(alerts)
        self.index.schedule(cid, nxt)
        return True

    def finish(self) -> None:
        if self.tracker is not None:
            self.result.late_window_records = self.tracker.late


def complaint_payload(raw: bytes) -> dict[str, Any] | None:
    """The JSON object of a complaint line (one with a ``complaint_id``), else None: the
    line is then read as an event."""
    if b'"complaint_id"' not in raw:
        return None
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) and is_complaint(payload) else None


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
    with tuned_collector():  # as the worker runs (rules/collector.py)
        return _replay(lines, engine, until, keys, on_progress, windows, indicators)


def _replay(lines: Iterable[bytes], engine: Engine, until: datetime | None,
            keys: KeyRing | None, on_progress: Callable[[int], None] | None, windows: bool,
            indicators: IndicatorBook | None) -> ReplayResult:
    driver = CaseDriver(engine, Gate(engine.catalog, keys))
    clock = EventTimeClock()
    cases: dict[str, CaseState] = {}
    index = DeadlineIndex()
    result = ReplayResult()
    sides = SideRules(engine, clock, result, windows=windows, indicators=indicators, keys=keys)
    raised = sides.raised
    take, on_event, case_due = driver.take, driver.on_event, index.may_be_due

    def fire_due() -> None:
        now, t = clock.now(), clock.now_epoch()
        driver.fire_due(index, cases, now, t, raised)
        sides.fire_due(now, t)

    for lineno, raw in enumerate(lines, 1):
        if b'"complaint_id"' in raw:  # complaint_payload's own test, before its call
            complaint = complaint_payload(raw)
            if complaint is not None:
                if sides.complaint(lineno, complaint):
                    fire_due()
                continue
        elif not raw or raw.isspace():  # a blank line (bytes.strip's whitespace)
            continue
        try:
            # the signing key valid when the line was read: at the clock before it moves
            event, state = take(raw, cases, None, arrived=clock.now())
        except Rejected as r:
            result.rejected[r.reason] = result.rejected.get(r.reason, 0) + 1
            result.problems.append(f"line {lineno}: {r.reason}: {r.detail}")
            continue
        result.events += 1
        cases[event.case_id] = state
        fact = state.facts[-1]
        clock.advance(event.occurred_at, fact.at)
        now, now_ts = clock.now(), clock.now_epoch()
        fact.received = now_ts if event.received_at is None else received_epoch(event, now_ts)
        on_event(index, state, event.step, now, now_ts, raised)
        if indicators is not None:
            indicators.on_event(event, state)
        sides.observe(event, fact, now, now_ts)
        # what is due (asked after every line): the calls only where something may be
        if case_due(now_ts):
            driver.fire_due(index, cases, now, now_ts, raised)
        if sides.may_be_due(now_ts):
            sides.fire_due(now, now_ts)
        if on_progress is not None and result.events % 10_000 == 0:
            on_progress(result.events)
    if until is not None:
        clock.advance(until)
        fire_due()
    sides.finish()
    result.alerts.sort(key=lambda a: (a.event_time, a.alert_id))
    return result


def received_epoch(event: GateEvent, clock: float) -> float:
    """When replay counts an event as received, in epoch seconds: its ``received_at`` if
    it has one, else ``clock``, the replay clock once advanced to the event (as a live
    worker would have received it when its line was read: a line behind the latest
    ``occurred_at`` so far arrived late)."""
    at = received_at(event)
    return clock if at is None else at.timestamp()
