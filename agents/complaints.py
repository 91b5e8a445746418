"""Complaints in the worker: ``complaint.received`` and ``complaint.overdue`` (logic in
``rules/complaints.py``, shared with replay).

- ``complaints-feed`` reads the ``complaints`` topic (key = case_id or department, per the
  contract) and repartitions each valid complaint by ``complaint_id`` to the internal
  topic ``{app_id}-complaints-by-id``, keeping its Kafka timestamp, so a complaint and its
  ``complaint_handled`` meet on one partition whatever key their producers chose.
- ``complaints`` keeps each complaint's state in the Faust table ``complaints`` (keyed by
  complaint id, changelogged), raises the alerts due (through the supervisor's Redis
  sink) and schedules the next one in a per-partition deadline index, rebuilt from the
  table when partitions are assigned; a timer fires ``complaint.overdue`` with no event.
  The agent and the timer each read a complaint's state, store its alerts (awaiting
  Redis) and write the state back: one lock keeps either from writing back a state the
  other changed meanwhile (a closing taken while the timer stored the complaint's
  ``complaint.received`` would otherwise be lost, and the complaint raised as overdue).

Every complaint passes the complaints' gate (:class:`~rules.complaints.ComplaintGate`:
the contract, a catalog department, its time, the complaint centre's signature by a key
valid when the record reached Kafka). A rejected one goes to ``complaints.dlq`` (setting
``complaints_dlq_topic``) as it came, with ``jiancha-reason``, ``jiancha-error`` and
``jiancha-source`` headers, and is counted by reason (``jiancha_complaints_rejected_total``).
Every complaint seen for the first time goes to the extensions' ``on_complaint`` hook (the
indicators count them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from prometheus_client import Counter
from pydantic import ValidationError

from jiancha.producers.contract import Complaint
from jiancha.rules.complaints import ComplaintGate, ComplaintRejected, ComplaintRules, ComplaintState
from jiancha.rules.driver import ComplaintFlow
from jiancha.rules.schedule import DeadlineIndex

from .extensions import Extension, WorkerContext
from .windows import Repartition, active

log = logging.getLogger(__name__)

class Complaints(Extension):
    """The complaints' extension: the feed, the ``complaints`` agent and table, the
    deadline index and its timer (see the module's description). Each complaint seen
    for the first time is told to ``ctx.complaint_seen`` (every extension's
    ``on_complaint``)."""

    # set by install()
    app: faust.App
    table: Any
    rep: Repartition

    def __init__(self, ctx: WorkerContext) -> None:
        self.settings, self.supervisor = ctx.settings, ctx.supervisor
        engine = self.supervisor.engine
        self.rules = ComplaintRules(engine.ruleset, engine.working_time, engine.catalog.departments)
        self.flow = ComplaintFlow(self.rules)
        self.metrics = ctx.metrics
        self.complaint_seen = ctx.complaint_seen
        self.indexes: dict[int, DeadlineIndex] = {}
        #: held from reading a complaint's state to writing it back (the module's description)
        self.state_lock = asyncio.Lock()

    def install(self, app: faust.App) -> None:
        s, sv = self.settings, self.supervisor
        self.app = app
        n = s.topic_partitions
        self.rejected = Counter("jiancha_complaints_rejected", "Complaint records the complaints' "
                                "gate rejected (sent to the complaints' dead-letter topic), by "
                                "reason", ["reason"], registry=self.metrics.registry)
        self.received = Counter("jiancha_complaints", "Complaints and closings accepted, by kind",
                                ["kind"], registry=self.metrics.registry)
        source = app.topic(s.complaints_topic, partitions=n, key_type=bytes, value_type=bytes)
        self.dlq = app.topic(s.complaints_dlq_topic, partitions=n, key_type=bytes,
                             value_type=bytes)
        self.gate = ComplaintGate(sv.engine.catalog, sv.gate.keys, s.complaints_signer,
                                  future_tolerance=sv.gate.future_tolerance)
        by_id = app.topic(f"{s.app_id}-complaints-by-id", partitions=n, internal=True,
                          key_type=bytes, value_type=bytes)
        self.table = app.Table("complaints", default=None, partitions=n, key_type=bytes,
                               value_type=bytes)
        self.rep = Repartition(app, sv.clock, s.complaints_topic, by_id, n)
        self.rep.install()
        self.repartition = self.rep.target_name
        app.agent(source, name="complaints-feed")(self.feed)
        app.agent(by_id, name="complaints")(self.complaints)
        app.timer(min(1.0, s.deadline_tick_seconds * 4), name="complaint_deadlines")(self.fire)
        self.table.on_recover(self.rebuild_index)

    def index(self, partition: int) -> DeadlineIndex:
        return self.indexes.setdefault(partition, DeadlineIndex())

    def stored(self, complaint_id: str) -> ComplaintState | None:
        raw = self.table.data.get(complaint_id.encode())
        return ComplaintState.decode(raw) if raw is not None else None

    async def feed(self, stream: faust.StreamT) -> None:
        rep = self.rep
        async for event in stream.events():
            msg = event.message
            try:
                # the key valid when the record reached Kafka (its judged time)
                complaint = self.gate.parse(event.value or b"", rep.judge(msg.timestamp))
            except ComplaintRejected as r:
                rep.read(msg)
                self.rejected.labels(r.reason).inc()
                where = f"{msg.topic}:{msg.partition}:{msg.offset}"
                log.warning("complaint on %s rejected (%s): %s", where, r.reason,
                            r.detail.replace("\n", " ")[:500])
                # delivered before the offset moves on: a crash sends it again, never loses it
                sent = await self.dlq.send(key=msg.key, value=event.value, headers=[
                    ("jiancha-reason", r.reason.encode()),
                    ("jiancha-error", r.detail.encode()[:4000]),
                    ("jiancha-source", where.encode()),
                ])
                await sent
                continue
            await rep.forward(msg, complaint.complaint_id.encode(), event.value)

    async def complaints(self, stream: faust.StreamT) -> None:
        table = self.table
        async for event in stream.events():
            msg = event.message
            now = self.rep.processed(event)
            if now is None:
                continue  # a watermark
            try:
                complaint = Complaint.model_validate_json(event.value)
            except ValidationError:
                continue  # checked by the feed
            started = time.monotonic()
            key = complaint.complaint_id.encode()
            async with self.state_lock:
                stored = table.get(key)
                state, new, alerts, nxt = self.flow.take(
                    ComplaintState.decode(stored) if stored is not None else None, complaint,
                    now, msg.partition)
                self.received.labels(complaint.kind).inc()
                if alerts:
                    await self.supervisor.publish(alerts, started)  # before the state that records them
                table[key] = state.encode()
                self.index(msg.partition).schedule(state.complaint_id, nxt)
            if new and state.received_at is not None:
                self.complaint_seen(state.department, state.item_code, state.received_at)

    async def fire(self) -> None:
        app, sv = self.app, self.supervisor
        if app.rebalancing or not sv.ready:
            return
        for partition in active(app, self.repartition):
            idx = self.indexes.get(partition)
            if not idx:
                continue
            now = self.rep.fire_time(partition)
            if now is None:
                continue
            started = time.monotonic()
            async with self.state_lock:
                for state, alerts, nxt in self.flow.judge_due(idx, self.stored, now):
                    if alerts:
                        await sv.publish(alerts, started)  # before the state that records them
                        key = state.complaint_id.encode()
                        value = state.encode()
                        self.table.data[key] = value
                        self.table.send_changelog(partition, key, value)
                    idx.schedule(state.complaint_id, nxt)

    async def rebuild_index(self) -> None:
        partitions = set(active(self.app, self.repartition))
        self.indexes.clear()
        count = 0
        for raw in list(self.table.data.values()):
            if raw is None:
                continue
            state = ComplaintState.decode(raw)
            if state.partition not in partitions:
                continue
            count += 1
            nxt = self.rules.next_due(state)
            self.index(state.partition).schedule(state.complaint_id,
                                                 nxt.timestamp() if nxt else None)
        log.info("complaint index rebuilt: %d complaints on partitions %s", count,
                 sorted(partitions))
