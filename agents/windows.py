"""Window rules in the worker: ``actor.burst``, ``department.denial_spike``,
``department.silent`` (logic in ``rules/windows.py``, shared with replay).

- ``windows-feed`` (a second agent on the events topic) parses each event with the gate
  and repartitions a compact :class:`~rules.windows.WindowRecord` by department to the
  internal topic ``{app_id}-windows-by-department`` (what ``stream.group_by`` does, done
  by hand so that the record keeps its Kafka timestamp: a backlog is judged as of when
  each event reached Kafka, as the case rules judge it).
- ``windows`` (on that topic) adds the record to two Faust **windowed tables**, tumbling
  windows in event time aligned to local time: ``windows-burst`` keyed by handler
  (``department/actor``) and ``windows-department`` keyed by department; and keeps the
  department's events that are not final yet as spans in ``windows-last`` (silence).
- a timer closes the windows whose end plus the allowed lateness is past the partition's
  low watermark (:class:`Repartition`), judges them (alerts through the supervisor's
  Redis sink) and deletes them — the windows' expiry, in event time. Faust's own
  ``expires`` is measured against the wall clock and keeps a heap entry per write, so it
  would drop a backfill's windows before they are judged and grow with every event: not
  used. Closed windows' counts go to the department's history in ``windows-state``
  (baselines); the same timer judges ``department.silent`` with no event.

A record that reached Kafka after its window's end plus the allowed lateness is late and
left out (``jiancha_window_late_records_total``).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust
from prometheus_client import Counter

from producers.contract import Alert
from rules.clock import Clock
from rules.ingest import Rejected
from rules.windows import WindowRecord, WindowRules, burst_add, dept_add, span_add

if TYPE_CHECKING:
    from agents.extensions import WorkerContext

log = logging.getLogger(__name__)


class Repartition:
    """A topic this worker repartitions by a new key (what ``stream.group_by`` does, done by
    hand to keep each record's Kafka timestamp), and the time on each partition of the
    repartitioned topic.

    A record is judged as of when it reached Kafka upstream (its timestamp, kept by the
    forward) on the worker's clock, never in the future. Due things on a repartitioned
    partition fire by a low watermark (:meth:`fire_time`), the earliest of: for every
    upstream partition this worker reads, the clock when it is caught up, else the time of
    the last record read from it; and the time of every record forwarded but not yet
    processed on that partition. Upstream partitions are independent (a backlog is read
    from each at its own pace), so the latest time seen would close a window while an
    earlier record that is on time for it is still on its way; the low watermark never
    does. A record that reached Kafka after its window's end plus the allowed lateness is
    late. (With several workers, records forwarded by another worker are only bounded by
    the time of the last record processed on the partition.)
    """

    def __init__(self, app: faust.App, clock: Clock, source: str, target: Any) -> None:
        self.app = app
        self.clock = clock
        self.source = source
        self.target = target
        self.target_name: str = target.get_topic_name()
        self.up_time: dict[int, float] = {}
        self.up_offset: dict[int, int] = {}
        self._seq = itertools.count()
        self._unacked: dict[int, float] = {}  # forward number -> judged time (epoch)
        self._unacked_heap: list[tuple[float, int]] = []
        self._acked: dict[int, list[tuple[float, int]]] = {}  # partition -> heap (judged, offset)
        self._acked_max: dict[int, int] = {}
        self.down_offset: dict[int, int] = {}
        self.down_time: dict[int, float] = {}
        self.fired: dict[int, datetime] = {}

    def judge(self, record_time: float | None) -> datetime:
        now = self.clock.now()
        return min(self.clock.at(record_time), now) if record_time else now

    def read(self, event: Any) -> datetime:
        """An upstream record was read (forwarded or not): the upstream partition's progress."""
        msg = event.message
        judged = self.judge(msg.timestamp)
        t = judged.timestamp()
        if t > self.up_time.get(msg.partition, float("-inf")):
            self.up_time[msg.partition] = t
        self.up_offset[msg.partition] = msg.offset
        return judged

    async def forward(self, event: Any, key: bytes, value: bytes) -> None:
        judged = self.read(event).timestamp()
        seq = next(self._seq)
        self._unacked[seq] = judged
        heapq.heappush(self._unacked_heap, (judged, seq))
        delivery = await self.target.send(key=key, value=value, timestamp=event.message.timestamp)
        delivery.add_done_callback(functools.partial(self._delivered, seq))

    def _delivered(self, seq: int, delivery: Any) -> None:
        judged = self._unacked.pop(seq, None)
        if judged is None or delivery.cancelled() or delivery.exception() is not None:
            return  # not delivered: nothing to wait for (the producer logged it)
        meta = delivery.result()
        heapq.heappush(self._acked.setdefault(meta.partition, []), (judged, meta.offset))
        self._acked_max[meta.partition] = max(self._acked_max.get(meta.partition, -1), meta.offset)

    def processed(self, event: Any) -> datetime:
        """A record of the repartitioned topic is being processed: its judged time."""
        msg = event.message
        judged = self.judge(msg.timestamp)
        self.down_offset[msg.partition] = msg.offset
        self.down_time[msg.partition] = judged.timestamp()
        return judged

    def _pending(self, partition: int) -> float | None:
        """The earliest time of a record forwarded and not yet processed on ``partition``."""
        heap = self._unacked_heap
        while heap and heap[0][1] not in self._unacked:
            heapq.heappop(heap)
        best = heap[0][0] if heap else None
        acked = self._acked.get(partition)
        done = self.down_offset.get(partition, -1)
        while acked and acked[0][1] <= done:
            heapq.heappop(acked)
        if acked and (best is None or acked[0][0] < best):
            best = acked[0][0]
        return best

    def _end(self, topic: str, partition: int) -> int | None:
        try:
            return self.app.consumer.highwater(faust.types.TP(topic, partition))
        except Exception:
            return None

    def _resumed_at(self, topic: str, partition: int) -> int:
        """The last offset processed before this worker got the partition (the committed
        offset is the next one to read)."""
        committed = getattr(self.app.consumer, "_committed_offset", {}).get(
            faust.types.TP(topic, partition))
        return committed - 1 if committed is not None else -1

    def upstream_behind(self, partition: int) -> bool:
        end = self._end(self.source, partition)
        if end is None:
            return True  # the end offset is not known before the first fetch
        last = self.up_offset.get(partition, self._resumed_at(self.source, partition))
        return last + 1 < end

    def fire_time(self, partition: int) -> datetime | None:
        """The time due things on ``partition`` fire by (never going back), or None while
        it cannot be known yet."""
        prev = self.fired.get(partition)
        now = self.clock.now().timestamp()
        bounds: list[float] = []
        for up in active(self.app, self.source):
            if self.upstream_behind(up):
                t = self.up_time.get(up)
                if t is None:
                    return prev
                bounds.append(t)
            else:
                bounds.append(now)
        pending = self._pending(partition)
        if pending is not None:
            bounds.append(pending)
        end = self._end(self.target_name, partition)
        if end is None:
            return prev
        known = max(self.down_offset.get(partition, self._resumed_at(self.target_name, partition)),
                    self._acked_max.get(partition, -1))
        if end > known + 1:  # records this worker did not forward (another worker, a restart)
            t = self.down_time.get(partition)
            if t is None:
                return prev
            bounds.append(t)
        fire = datetime.fromtimestamp(min(bounds) if bounds else now, UTC)
        if prev is not None and fire < prev:
            fire = prev
        self.fired[partition] = fire
        return fire


def active(app: faust.App, topic: str) -> list[int]:
    try:
        return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)
    except Exception:
        return []


def register(app: faust.App, ctx: WorkerContext) -> None:
    s, sv = ctx.settings, ctx.supervisor
    engine = sv.engine
    rules = WindowRules(engine.ruleset, engine.working_time, engine.catalog.departments)
    cfg = rules.cfg
    if not (cfg.burst_on or cfg.denial_on or cfg.silent_on):
        return
    n = s.topic_partitions
    late = Counter("jiancha_window_late_records",
                   "Records left out of a window that was already closed (late beyond the "
                   "allowed lateness)", ["rule"], registry=ctx.metrics.registry)
    events = app.topic(s.events_topic, partitions=n, key_type=bytes, value_type=bytes)
    by_department = app.topic(f"{s.app_id}-windows-by-department", partitions=n, internal=True,
                              key_type=bytes, value_type=bytes)
    rep = Repartition(app, sv.clock, s.events_topic, by_department)
    shifted = [0.0]  # the record's time in local-epoch seconds: Faust's windows align to it

    def relative(event: Any = None) -> float:
        return shifted[0]

    def table(name: str) -> Any:
        return app.Table(name, default=dict, partitions=n,
                         schema=faust.Schema(key_serializer="json", value_serializer="json"))

    burst = table("windows-burst").tumbling(cfg.burst_size).relative_to(relative)
    department = table("windows-department").tumbling(cfg.dept_size).relative_to(relative)
    last_seen = table("windows-last")  # department -> {"p": partition, "spans": events not final}
    state = table("windows-state")  # department -> {"h": history, "bc", "dc", "L", "s", "p"}

    @app.agent(events, name="windows-feed")
    async def feed(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                ev = sv.gate.parse(event.value, None)
                sv.gate.check_key(ev, event.key)
            except Rejected:
                rep.read(event)
                continue  # the supervising agent dead-letters it
            except Exception:
                rep.read(event)
                log.debug("windows: unreadable record skipped", exc_info=True)
                continue
            rec = WindowRecord.from_event(ev)
            await rep.forward(event, rec.department.encode(), rec.encode())

    @app.agent(by_department, name="windows")
    async def windows(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            now = rep.processed(event).timestamp()
            try:
                rec = WindowRecord.decode(event.value)
            except Exception:
                log.warning("windows: bad record on %s skipped", rep.target_name)
                continue
            st = state.data.get(rec.department) or {}
            shifted[0] = rec.at + rules.offset(rec.at)
            start = rules.window_start(rec.at, cfg.dept_size)
            if rules.is_late(start + cfg.dept_size, now) or start + cfg.dept_size <= st.get("dc", 0):
                late.labels("department").inc()
            else:
                value = dept_add(department[rec.department].value(), rec)
                value["p"] = msg.partition
                department[rec.department] = value
            if rec.decision:
                start = rules.window_start(rec.at, cfg.burst_size)
                if rules.is_late(start + cfg.burst_size, now) or start + cfg.burst_size <= st.get("bc", 0):
                    late.labels("actor.burst").inc()
                else:
                    value = burst_add(burst[rec.handler].value(), rec)
                    value["p"] = msg.partition
                    burst[rec.handler] = value
            # silence: the department's events not yet final, as spans (order-insensitive)
            last = (state.data.get(rec.department) or {}).get("L")
            if last is None or rec.at > last[0]:
                seen = last_seen.data.get(rec.department) or {}
                spans = [sp for sp in seen.get("spans", []) if last is None or sp[2] > last[0]]
                last_seen[rec.department] = {
                    "p": msg.partition,
                    "spans": span_add(spans, rec.at, rec.event_id, rules.merge_seconds)}

    def write(tbl: Any, key: Any, value: Any, partition: int) -> None:
        # outside an agent: the store and the changelog partition explicitly
        if value is None:
            tbl.data.pop(key, None)
            tbl.send_changelog(partition, key, None, value_serializer="raw")
        else:
            tbl.data[key] = value
            tbl.send_changelog(partition, key, value)

    def close_due(partition: int, now: datetime) -> tuple[list[Alert], dict[str, dict[str, Any]]]:
        t = now.timestamp()
        due: list[tuple[float, int, str, float, Any, Any]] = []
        for kind, wrapper, size in ((0, burst, cfg.burst_size), (1, department, cfg.dept_size)):
            tbl = wrapper.table
            for key, value in list(tbl.data.items()):
                if not isinstance(value, dict) or value.get("p") != partition:
                    continue
                scope, (shifted_start, _) = key
                start = shifted_start - rules.offset(shifted_start)
                if rules.is_late(start + size, t):
                    due.append((start + size, kind, scope, start, key, value))
        changed: dict[str, dict[str, Any]] = {}
        alerts: list[Alert] = []
        for end, kind, scope, start, key, value in sorted(due, key=lambda d: d[:4]):
            dept = scope.partition("/")[0]
            st = changed.get(dept) or dict(state.data.get(dept) or {})
            st["p"] = partition
            if kind == 0:
                st["bc"] = max(st.get("bc", 0), end)
                alert = rules.close_burst(scope, start, value, now)
                write(burst.table, key, None, partition)
            else:
                st["dc"] = max(st.get("dc", 0), end)
                alert, st["h"] = rules.close_denial(scope, start, value, st.get("h") or {}, now)
                write(department.table, key, None, partition)
            changed[dept] = st
            if alert is not None:
                alerts.append(alert)
        for dept, seen in list(last_seen.data.items()):
            if not seen or seen.get("p") != partition:
                continue
            st = changed.get(dept) or dict(state.data.get(dept) or {})
            old_last = tuple(st["L"]) if st.get("L") else None
            last, _, judged, found = rules.silence_advance(old_last, seen.get("spans", []),
                                                           st.get("s", 0), t)
            for at, event_id in found:
                alert = rules.judge_silence(dept, at, event_id, st.get("h") or {}, now)
                if alert is not None:
                    alerts.append(alert)
            if last != old_last or judged != st.get("s", 0):
                st["L"], st["s"], st["p"] = list(last) if last else None, judged, partition
                changed[dept] = st
        return alerts, changed

    @app.timer(min(1.0, s.deadline_tick_seconds * 4), name="close_windows")
    async def close_windows() -> None:
        if app.rebalancing or not sv.ready:
            return
        for partition in active(app, rep.target_name):
            now = rep.fire_time(partition)
            if now is None:
                continue
            started = time.monotonic()
            alerts, changed = close_due(partition, now)
            if alerts:
                from agents.indicators import hint_partition

                for a in alerts:
                    hint_partition(a.alert_id, partition)
                await sv.publish(alerts, started)
            for dept, st in changed.items():
                write(state, dept, st, partition)
