"""Offline, deterministic replay (contract.md): events in file order, an event-time clock,
the same engine as the worker; alerts sorted by (event_time, alert_id).

The clock is the latest ``occurred_at`` seen so far; after the last event it moves to
``until`` so that every deadline up to then fires. Detected-at times are that clock, so
two runs over the same file give byte-identical output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from producers.contract import Alert
from rules.case import CaseState
from rules.clock import EventTimeClock
from rules.engine import Engine
from rules.ingest import Gate, KeyRing, Rejected
from rules.schedule import DeadlineIndex


@dataclass
class ReplayResult:
    alerts: list[Alert] = field(default_factory=list)
    events: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def replay(
    lines: Iterable[bytes],
    engine: Engine,
    until: datetime | None = None,
    keys: KeyRing | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    gate = Gate(engine.catalog, keys)
    clock = EventTimeClock()
    cases: dict[str, CaseState] = {}
    index = DeadlineIndex()
    result = ReplayResult()

    def fire_due() -> None:
        now = clock.now()
        for case_id in list(index.pop_due(now.timestamp())):
            state = cases[case_id]
            alerts, nxt = engine.evaluate(state, now)
            result.alerts.extend(alerts)
            index.schedule(case_id, nxt.timestamp() if nxt else None)

    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
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
        alerts, nxt = engine.evaluate(state, clock.now())
        result.alerts.extend(alerts)
        index.schedule(event.case_id, nxt.timestamp() if nxt else None)
        fire_due()
        if on_progress is not None and result.events % 10_000 == 0:
            on_progress(result.events)
    if until is not None:
        clock.advance(until)
        fire_due()
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
