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

Every complaint passes the complaints' gate (:class:`~rules.complaints.ComplaintGate`:
the contract, a catalog department, its time, the complaint centre's signature by a key
valid when the record reached Kafka). A rejected one goes to ``complaints.dlq`` (setting
``complaints_dlq_topic``) as it came, with ``jiancha-reason``, ``jiancha-error`` and
``jiancha-source`` headers, and is counted by reason (``jiancha_complaints_rejected_total``).
Observers registered with :func:`complaint_observers` see every complaint seen for the
first time (the indicators count them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import faust
from prometheus_client import Counter
from pydantic import ValidationError

from jiancha.agents.windows import Repartition, active
from jiancha.producers.contract import Complaint
from jiancha.rules.complaints import ComplaintGate, ComplaintRejected, ComplaintRules, ComplaintState
from jiancha.rules.driver import ComplaintFlow
from jiancha.rules.schedule import DeadlineIndex

if TYPE_CHECKING:
    from jiancha.agents.extensions import WorkerContext

log = logging.getLogger(__name__)

#: (department, item code, received at epoch seconds) of a complaint seen for the first time
ComplaintObserver = Callable[[str | None, str | None, float], None]


def complaint_observers(app: faust.App) -> list[ComplaintObserver]:
    """The app's complaint observers (created on first use)."""
    observers = getattr(app, "_jiancha_complaint_observers", None)
    if observers is None:
        observers = []
        app._jiancha_complaint_observers = observers  # type: ignore[attr-defined]
    return observers


def register(app: faust.App, ctx: WorkerContext) -> None:
    s, sv = ctx.settings, ctx.supervisor
    engine = sv.engine
    rules = ComplaintRules(engine.ruleset, engine.working_time, engine.catalog.departments)
    flow = ComplaintFlow(rules)
    n = s.topic_partitions
    rejected = Counter("jiancha_complaints_rejected", "Complaint records the complaints' gate "
                       "rejected (sent to the complaints' dead-letter topic), by reason",
                       ["reason"], registry=ctx.metrics.registry)
    received = Counter("jiancha_complaints", "Complaints and closings accepted, by kind",
                       ["kind"], registry=ctx.metrics.registry)
    source = app.topic(s.complaints_topic, partitions=n, key_type=bytes, value_type=bytes)
    dlq = app.topic(s.complaints_dlq_topic, partitions=n, key_type=bytes, value_type=bytes)
    gate = ComplaintGate(engine.catalog, sv.gate.keys, s.complaints_signer,
                         future_tolerance=sv.gate.future_tolerance)
    by_id = app.topic(f"{s.app_id}-complaints-by-id", partitions=n, internal=True,
                      key_type=bytes, value_type=bytes)
    table = app.Table("complaints", default=None, partitions=n, key_type=bytes, value_type=bytes)
    rep = Repartition(app, sv.clock, s.complaints_topic, by_id, n)
    rep.install()
    repartition = rep.target_name
    indexes: dict[int, DeadlineIndex] = {}
    observers = complaint_observers(app)

    def index(partition: int) -> DeadlineIndex:
        return indexes.setdefault(partition, DeadlineIndex())

    def stored(complaint_id: str) -> ComplaintState | None:
        raw = table.data.get(complaint_id.encode())
        return ComplaintState.decode(raw) if raw is not None else None

    @app.agent(source, name="complaints-feed")
    async def feed(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                # the key valid when the record reached Kafka (its judged time)
                complaint = gate.parse(event.value or b"", rep.judge(msg.timestamp))
            except ComplaintRejected as r:
                rep.read(msg)
                rejected.labels(r.reason).inc()
                where = f"{msg.topic}:{msg.partition}:{msg.offset}"
                log.warning("complaint on %s rejected (%s): %s", where, r.reason,
                            r.detail.replace("\n", " ")[:500])
                # delivered before the offset moves on: a crash sends it again, never loses it
                sent = await dlq.send(key=msg.key, value=event.value, headers=[
                    ("jiancha-reason", r.reason.encode()),
                    ("jiancha-error", r.detail.encode()[:4000]),
                    ("jiancha-source", where.encode()),
                ])
                await sent
                continue
            await rep.forward(msg, complaint.complaint_id.encode(), event.value)

    @app.agent(by_id, name="complaints")
    async def complaints(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            now = rep.processed(event)
            if now is None:
                continue  # a watermark
            try:
                complaint = Complaint.model_validate_json(event.value)
            except ValidationError:
                continue  # checked by the feed
            started = time.monotonic()
            key = complaint.complaint_id.encode()
            stored = table.get(key)
            state, new, alerts, nxt = flow.take(
                ComplaintState.decode(stored) if stored is not None else None, complaint, now,
                msg.partition)
            received.labels(complaint.kind).inc()
            if alerts:
                await sv.publish(alerts, started)  # before the state that records them
            table[key] = state.encode()
            index(msg.partition).schedule(state.complaint_id, nxt)
            if new and state.received_at is not None:
                for observe in observers:
                    observe(state.department, state.item_code, state.received_at)

    @app.timer(min(1.0, s.deadline_tick_seconds * 4), name="complaint_deadlines")
    async def fire() -> None:
        if app.rebalancing or not sv.ready:
            return
        for partition in active(app, repartition):
            idx = indexes.get(partition)
            if not idx:
                continue
            now = rep.fire_time(partition)
            if now is None:
                continue
            started = time.monotonic()
            for state, alerts, nxt in flow.judge_due(idx, stored, now):
                if alerts:
                    await sv.publish(alerts, started)  # before the state that records them
                    key = state.complaint_id.encode()
                    value = state.encode()
                    table.data[key] = value
                    table.send_changelog(partition, key, value)
                idx.schedule(state.complaint_id, nxt)

    @table.on_recover
    async def rebuild_index() -> None:
        partitions = set(active(app, repartition))
        indexes.clear()
        count = 0
        for raw in list(table.data.values()):
            if raw is None:
                continue
            state = ComplaintState.decode(raw)
            if state.partition not in partitions:
                continue
            count += 1
            nxt = rules.next_due(state)
            index(state.partition).schedule(state.complaint_id, nxt.timestamp() if nxt else None)
        log.info("complaint index rebuilt: %d complaints on partitions %s", count, sorted(partitions))
