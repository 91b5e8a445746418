"""What one worker does with an event and with a due deadline, apart from Faust wiring.

The :class:`Supervisor` owns the engine, the gate, the clock, the deadline index, the
alert sink and the metrics. Alerts reach Redis *before* the case state that records
them is written, so a crash in between re-raises (idempotently) instead of losing them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

from agents.metrics import EngineMetrics
from agents.sinks.types import AlertSink
from producers.contract import Alert, ApprovalEvent
from rules.case import CaseState
from rules.clock import Clock
from rules.engine import Engine
from rules.ingest import Gate, Rejected
from rules.schedule import DeadlineIndex

log = logging.getLogger(__name__)

#: Where a rejected event goes: (key, original bytes, reason, detail).
DeadLetter = Callable[[bytes | None, bytes, str, str], "object"]


@dataclass
class Supervisor:
    engine: Engine
    gate: Gate
    clock: Clock
    sink: AlertSink
    metrics: EngineMetrics
    index: DeadlineIndex = field(default_factory=DeadlineIndex)
    ready: bool = False  # partitions assigned and the case table recovered

    def decide(
        self, key: bytes | None, raw: bytes, cases: MutableMapping[bytes, bytes]
    ) -> tuple[ApprovalEvent, CaseState, datetime]:
        """Parse and check an event against its case; raises :class:`Rejected`."""
        now = self.clock.now()
        event = self.gate.parse(raw, now)
        self.gate.check_key(event, key)
        stored = cases.get(event.case_id.encode())
        state = CaseState.decode(stored) if stored is not None else None
        self.gate.check_against_case(event, state)
        return event, self.engine.ingest(state, event, now), now

    async def on_event(
        self, key: bytes | None, raw: bytes, partition: int,
        cases: MutableMapping[bytes, bytes], dead_letter: DeadLetter,
    ) -> list[Alert]:
        started = time.monotonic()
        try:
            event, state, now = self.decide(key, raw, cases)
        except Rejected as r:
            self.metrics.events_rejected.labels(r.reason).inc()
            await dead_letter(key, raw, r.reason, r.detail)  # type: ignore[misc]
            return []
        except Exception as exc:  # never crash on one event
            log.exception("unexpected error on an event; sent to the DLQ")
            self.metrics.events_rejected.labels("internal_error").inc()
            await dead_letter(key, raw, "internal_error", repr(exc))  # type: ignore[misc]
            return []
        state.partition = partition
        self.metrics.events_ingested.labels(event.department, event.step.value).inc()
        alerts, nxt = self.engine.evaluate(state, now)
        if alerts:
            await self.publish(alerts, started)
        cases[event.case_id.encode()] = state.encode()
        self.index.schedule(state.case_id, nxt.timestamp() if nxt else None)
        return alerts

    async def on_tick(
        self, cases: MutableMapping[bytes, bytes], active_partitions: set[int],
        write: Callable[[bytes, bytes, int], None],
    ) -> list[Alert]:
        """Fire every deadline due by now, with no event needed."""
        now = self.clock.now()
        fired: list[Alert] = []
        for case_id in list(self.index.pop_due(now.timestamp())):
            key = case_id.encode()
            stored = cases.get(key)
            if stored is None:
                continue
            state = CaseState.decode(stored)
            if state.partition not in active_partitions:
                continue  # moved to another worker in a rebalance
            started = time.monotonic()
            alerts, nxt = self.engine.evaluate(state, now)
            if alerts:
                await self.publish(alerts, started)
                for a in alerts:
                    lateness = (now - a.event_time).total_seconds()
                    if lateness >= 0:
                        self.metrics.deadline_lateness.observe(lateness)
                write(key, state.encode(), state.partition)
                fired.extend(alerts)
            self.index.schedule(case_id, nxt.timestamp() if nxt else None)
        self.metrics.deadlines_scheduled.set(len(self.index))
        return fired

    def rebuild_index(self, states: Iterable[CaseState], active_partitions: set[int]) -> int:
        self.index.clear()
        n = 0
        for state in states:
            if state.partition not in active_partitions:
                continue
            n += 1
            nxt = self.engine.next_due(state)
            self.index.schedule(state.case_id, nxt.timestamp() if nxt else None)
        self.metrics.cases.set(n)
        self.metrics.deadlines_scheduled.set(len(self.index))
        self.ready = True
        return n

    async def publish(self, alerts: list[Alert], started: float) -> None:
        outcomes = await self.sink.publish(alerts)
        elapsed = time.monotonic() - started
        for alert, outcome in zip(alerts, outcomes, strict=True):
            if outcome == "known":
                continue
            self.metrics.alerts.labels(alert.rule, alert.severity, alert.department or "").inc()
            self.metrics.event_to_alert.observe(elapsed)
