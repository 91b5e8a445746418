"""Window rules in the worker: ``actor.burst``, ``department.denial_spike``,
``department.silent`` (logic in ``rules/windows.py``, shared with replay).

- the supervising agent hands each event it accepted (before writing its case state) to
  this module, which repartitions a compact :class:`~rules.windows.WindowRecord` by
  department to the internal topic ``{app_id}-windows-by-department`` (what
  ``stream.group_by`` does, done by hand so that the record keeps its Kafka timestamp: a
  backlog is judged as of when each event reached Kafka, as the case rules judge it), in
  batches: one message per department, with each record's time and upstream offset.
  Only accepted events count, as in replay; and the events are parsed once, not by a
  second agent on the events topic.
- ``windows`` (on that topic) adds the record to a Faust **windowed table**, tumbling
  windows in event time aligned to local time, ``windows-department`` keyed by
  department; a decision to its handler's recent decisions in ``windows-handlers``
  (keyed by ``department/actor``: a sliding count, ``rules.windows.burst_add``); and
  keeps the department's events that are not final yet as spans in ``windows-last``
  (silence).
- a timer closes the windows whose end plus the allowed lateness is past the partition's
  watermark (:class:`Repartition`), judges them (alerts through the supervisor's
  Redis sink) and deletes them — the windows' expiry, in event time; it counts the
  handlers' decisions final by then and drops idle handlers alike. Faust's own
  ``expires`` is measured against the wall clock and keeps a heap entry per write, so it
  would drop a backfill's windows before they are judged and grow with every event: not
  used. Closed windows' counts go to the department's history in ``windows-state``
  (baselines); the same timer judges ``department.silent`` with no event.

A record that reached Kafka after its window's end plus the allowed lateness is late and
left out (``jiancha_window_late_records_total``).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import faust
import orjson
from prometheus_client import Counter

from agents.commit_barrier import CoalescedChangelog, before_commit
from producers.contract import Alert, ApprovalEvent
from rules.case import Fact
from rules.clock import Clock
from rules.windows import (
    WindowRecord,
    WindowRules,
    burst_add,
    dept_add,
    fact_fields,
    own_window,
    span_add,
    spans_after,
)

if TYPE_CHECKING:
    from agents.extensions import WorkerContext
    from agents.record import Record

log = logging.getLogger(__name__)


#: The value prefix of a watermark record on a repartitioned topic (never a JSON record).
MARKER = b"\x00wm"
#: The value prefix of a batch of records for one key: ``[[timestamp, value], ...]``.
BATCH = b"\x00bt"
#: Records held for one key before its batch is sent anyway.
BATCH_MAX = 500


class Forwarded(NamedTuple):
    """A record of a batch: its judged time, where it came from upstream, what it holds."""

    judged: float  # epoch seconds
    up_partition: int
    up_offset: int
    item: Any


class Repartition:
    """A topic this worker repartitions by a new key (what ``stream.group_by`` does, done by
    hand to keep each record's Kafka timestamp), with **in-band watermarks**, so that due
    things on a repartitioned partition fire only once every record before them is in.

    A record is judged as of when it reached Kafka upstream (its timestamp, kept by the
    forward) on the worker's clock, never in the future. Every ``interval`` seconds each
    worker sends, to every partition of the repartitioned topic, a marker with a
    watermark for each upstream partition it reads: the clock when it is caught up on
    that partition, else the time of the last record it forwarded from it. A marker
    follows, in the log, every record its sender forwarded before it, so once a partition
    has processed markers from every upstream partition, the least of their watermarks is
    a time before which nothing more can come (:meth:`fire_time`) — whichever worker
    forwards from which partition, and across a worker that died: records it read but
    never forwarded are forwarded again by the next owner, after the last watermark it
    sent. Upstream partitions are read at their own pace (a backlog, a takeover), so
    anything less (the latest time seen, this worker's own partitions) would close a
    window while a record on time for it is still on its way. A record that reached
    Kafka after its window's end plus the allowed lateness is late.

    Markers are reset when partitions are revoked: after a rebalance a partition is read
    again from its committed offset, and only markers read since then say what was read.
    """

    def __init__(self, app: faust.App, clock: Clock, source: str, target: Any,
                 partitions: int, interval: float = 0.5) -> None:
        self.app = app
        self.clock = clock
        self.source = source
        self.target = target
        self.target_name: str = target.get_topic_name()
        self.partitions = partitions
        self.interval = interval
        self.up_time: dict[int, float] = {}  # upstream partition -> last forwarded record's time
        self.up_offset: dict[int, int] = {}  # upstream partition -> last offset read
        self.marks: dict[int, dict[int, float]] = {}  # partition -> upstream partition -> watermark
        self.fired: dict[int, datetime] = {}
        # batched forwarding: records by key, and the upstream progress they stand for
        # (it counts for the watermarks only once they are handed to the producer)
        self._batches: dict[bytes, list[tuple[float, int, int, Any]]] = {}
        self._held: dict[int, tuple[float, int]] = {}

    def install(self, batched: bool = False) -> None:
        """Send the watermarks on a timer; forget the markers read when partitions move.
        With ``batched``, records given to :meth:`forward_batched` go out as one message
        per key on a short timer and before every offset commit (before the case states
        written since, so a crash never keeps a state whose records were not sent)."""
        name = f"watermarks:{self.target_name}"
        self.app.timer(self.interval, name=name)(self.send_watermarks)
        self.app.on_partitions_revoked.connect(self._revoked, weak=False)
        if batched:
            before_commit(self.app, self.flush_batches, first=True)

            async def flush() -> None:
                if not self.app.rebalancing:
                    self.flush_batches()

            self.app.timer(0.1, name=f"batches:{self.target_name}")(flush)

    async def _revoked(self, sender: Any = None, revoked: Any = None, **kwargs: Any) -> None:
        self.marks.clear()
        self.fired.clear()
        self.up_time.clear()
        self.up_offset.clear()

    def judge(self, record_time: float | None, now: datetime | None = None) -> datetime:
        """When a record counts as received: its Kafka timestamp on this clock, never after
        ``now`` (the clock's reading, taken here unless given)."""
        now = self.clock.now() if now is None else now
        return min(self.clock.at(record_time), now) if record_time else now

    def judge_epoch(self, record_time: float | None, now: float | None = None) -> float:
        """:meth:`judge` in epoch seconds (per record: no datetime built)."""
        now = self.clock.now_epoch() if now is None else now
        return min(self.clock.at_epoch(record_time), now) if record_time else now

    def read(self, msg: Any) -> None:
        """An upstream record (anything with ``partition``, ``offset`` and ``timestamp``:
        a Faust message, a batch record) was read and not forwarded: progress only."""
        judged = self.judge_epoch(msg.timestamp)
        if judged > self.up_time.get(msg.partition, float("-inf")):
            self.up_time[msg.partition] = judged  # every record before is forwarded
        self.up_offset[msg.partition] = msg.offset

    async def forward(self, msg: Any, key: bytes, value: bytes) -> None:
        judged = self.judge_epoch(msg.timestamp)
        await self.target.send(key=key, value=value, timestamp=msg.timestamp)
        # only once the record is handed to the producer: a marker sent after it is behind it
        if judged > self.up_time.get(msg.partition, float("-inf")):
            self.up_time[msg.partition] = judged
        self.up_offset[msg.partition] = msg.offset

    def forward_batched(self, msg: Any, key: bytes, item: Any, now: float | None = None) -> None:
        """Forward ``item`` (JSON-able) later, in a batch for ``key`` (one message for many
        records), with the upstream partition and offset it came from (``msg``); ``now``
        is the clock's reading (epoch seconds), taken here unless given."""
        judged = self.judge_epoch(msg.timestamp, now)
        batch = self._batches.setdefault(key, [])
        batch.append((msg.timestamp or judged, msg.partition, msg.offset, item))
        held = self._held.get(msg.partition)
        self._held[msg.partition] = (max(judged, held[0]) if held else judged, msg.offset)
        if len(batch) >= BATCH_MAX:
            self.flush_batches()

    def flush_batches(self) -> None:
        """Hand every held batch to the producer (in order, through Faust's buffer: the
        watermarks follow the same way), then count their upstream progress."""
        batches, self._batches = self._batches, {}
        for key, records in batches.items():
            self.target.send_soon(key=key, value=BATCH + orjson.dumps(records),
                                  timestamp=max(r[0] for r in records))
        held, self._held = self._held, {}
        for partition, (judged, offset) in held.items():
            if judged > self.up_time.get(partition, float("-inf")):
                self.up_time[partition] = judged
            if offset > self.up_offset.get(partition, -1):
                self.up_offset[partition] = offset

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

    def watermarks(self) -> dict[str, float]:
        """This worker's watermark for each upstream partition it reads (where known)."""
        now = self.clock.now().timestamp()
        out: dict[str, float] = {}
        for up in active(self.app, self.source):
            if not self.upstream_behind(up):
                out[str(up)] = now
            elif up in self.up_time:
                out[str(up)] = self.up_time[up]
        return out

    async def send_watermarks(self) -> None:
        if self.app.rebalancing:
            return
        self.flush_batches()  # a marker follows every record it covers
        marks = self.watermarks()
        if not marks:
            return
        value = MARKER + orjson.dumps(marks)
        for partition in range(self.partitions):
            # through the producer buffer, as the batches: never ahead of them
            self.target.send_soon(key=MARKER, value=value, partition=partition)

    def batch(self, event: Any) -> list[Forwarded] | None:
        """The records of a batch message of the repartitioned topic, or None for a
        watermark marker (taken in here)."""
        value = event.value
        if isinstance(value, bytes) and value.startswith(BATCH):
            now = self.clock.now_epoch()  # one clock reading for the batch
            try:
                return [Forwarded(self.judge_epoch(float(t), now), int(up), int(offset), item)
                        for t, up, offset, item in orjson.loads(value[len(BATCH):])]
            except (orjson.JSONDecodeError, TypeError, ValueError):
                log.warning("unreadable batch on %s skipped", self.target_name)
                return []
        if self.processed(event) is not None:
            log.warning("a record that is not a batch on %s skipped", self.target_name)
        return None

    def processed(self, event: Any) -> datetime | None:
        """A record of the repartitioned topic is being processed: its judged time, or
        None for a watermark marker (taken in here; nothing else to do with it)."""
        msg = event.message
        value = event.value
        if isinstance(value, bytes) and value.startswith(MARKER):
            try:
                marks = orjson.loads(value[len(MARKER):])
            except orjson.JSONDecodeError:
                return None
            seen = self.marks.setdefault(msg.partition, {})
            for up, t in marks.items():
                if float(t) > seen.get(int(up), float("-inf")):
                    seen[int(up)] = float(t)
            return None
        return self.judge(msg.timestamp)

    def fire_time(self, partition: int) -> datetime | None:
        """The time due things on ``partition`` fire by (never going back), or None while
        it cannot be known yet (no marker yet from some upstream partition)."""
        prev = self.fired.get(partition)
        seen = self.marks.get(partition, {})
        if len(seen) < self.partitions:
            return prev
        fire = min(datetime.fromtimestamp(min(seen.values()), UTC), self.clock.now())
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
    duplicates = Counter("jiancha_window_duplicate_records", "Records forwarded again after a "
                         "takeover and counted once", registry=ctx.metrics.registry)
    by_department = app.topic(f"{s.app_id}-windows-by-department", partitions=n, internal=True,
                              key_type=bytes, value_type=bytes)
    rep = Repartition(app, sv.clock, s.events_topic, by_department, n)
    rep.install(batched=True)
    shifted = [0.0]  # the record's time in local-epoch seconds: Faust's windows align to it

    def relative(event: Any = None) -> float:
        return shifted[0]

    def table(name: str) -> Any:
        return app.Table(name, default=dict, partitions=n,
                         schema=faust.Schema(key_serializer="json", value_serializer="json"))

    handlers = table("windows-handlers")  # handler -> {"p": partition, "q", "k", "e": decisions}
    department = table("windows-department").tumbling(cfg.dept_size).relative_to(relative)
    last_seen = table("windows-last")  # department -> {"p": partition, "spans": events not final}
    state = table("windows-state")  # department -> {"h": history, "bc", "dc", "L", "s", "p"}
    # few keys, written on every event: one changelog record per key and commit interval
    changelogs = {id(t): CoalescedChangelog(app, t, by_department.get_topic_name())
                  for t in (handlers, department.table, last_seen, state)}

    def forward(record: Record, ev: ApprovalEvent | None, fact: Fact | None, now: float) -> None:
        """The supervising agent hands over each record it took (None: rejected)."""
        if ev is None or fact is None:
            rep.read(record)
            return
        rep.forward_batched(record, ev.department.encode(), fact_fields(ev.case_id, fact), now)

    sv.forwarders.append(forward)

    @app.agent(by_department, name="windows")
    async def windows(stream: faust.StreamT) -> None:
        async for event in stream.events():
            records = rep.batch(event)
            if records:
                window_records(event.message.partition, records)

    def window_records(partition: int, records: list[Forwarded]) -> None:
        """A batch of records into the windows (in the agent: the tables know the
        partition). Each record is added in order to the window values as this batch
        leaves them; each window touched is written once, at the end."""
        dept_windows: dict[tuple[str, float], tuple[float, dict[str, Any]]] = {}
        handler_values: dict[str, dict[str, Any]] = {}
        spans_of: dict[str, list[list[Any]]] = {}

        def window(tbl: Any, scope: str, at: float) -> dict[str, Any]:
            """A window the batch has not touched yet (the caller looks that up)."""
            shifted[0] = at + rules.offset(at)
            # a copy of our own, changed in place by each record of the batch: the table's
            # value stays as it was until the batch writes the window back
            return own_window(tbl[scope].value())

        # per batch, not per record: the department's state (only the timer changes it)
        states: dict[str, dict[str, Any]] = {}
        dept_size = cfg.dept_size
        window_start, is_late, merge = rules.window_start, rules.is_late, rules.merge_seconds
        for now, up_partition, up_offset, item in records:
            # where it came from: a record forwarded again after a takeover is recognised
            up = str(up_partition)
            try:
                rec = WindowRecord.from_fields(item)
            except Exception:
                log.warning("windows: bad record on %s skipped", rep.target_name)
                continue
            dept = rec.department
            st = states.get(dept)
            if st is None:
                st = states[dept] = state.data.get(dept) or {}
            start = window_start(rec.at, dept_size)
            end = start + dept_size
            if is_late(end, now) or end <= st.get("dc", 0):
                late.labels("department").inc()
            else:
                got = dept_windows.get((dept, start))
                value = got[1] if got is not None else window(department, dept, rec.at)
                # counted once: records from one upstream partition come in its order, so
                # one at or before the last counted from there is a copy (a takeover)
                counted = value.get("u")
                if counted is None:
                    counted = value["u"] = {}
                if int(counted.get(up, -1)) >= up_offset:
                    duplicates.inc()
                else:
                    dept_add(value, rec)
                    counted[up] = up_offset
                    if got is None:
                        value["p"] = partition
                        dept_windows[dept, start] = (rec.at, value)
            if rec.decision:
                if rules.burst_late(rec.at, now, st.get("bc", 0)):
                    late.labels("actor.burst").inc()
                else:
                    handler = rec.handler
                    value = handler_values.get(handler)
                    if value is None:
                        value = handler_values[handler] = own_window(handlers.data.get(handler))
                        value["p"] = partition
                    burst_add(value, rec)
            # silence: the department's events not yet final, as spans (order-insensitive)
            last = st.get("L")
            if last is None or rec.at > last[0]:
                spans = spans_of.get(dept)
                if spans is None:
                    seen = last_seen.data.get(dept) or {}
                    spans = list(seen.get("spans") or [])
                    if last is not None:
                        spans = spans_after(spans, last[0])
                    spans_of[dept] = spans
                span_add(spans, rec.at, rec.event_id, merge)
        for (scope, _), (at, value) in dept_windows.items():
            shifted[0] = at + rules.offset(at)
            department[scope] = value
        for handler, value in handler_values.items():
            handlers[handler] = value
        for dept, spans in spans_of.items():
            last_seen[dept] = {"p": partition, "spans": spans}

    def write(tbl: Any, key: Any, value: Any, partition: int) -> None:
        # outside an agent: the store, and the changelog partition explicitly
        if value is None:
            changelogs[id(tbl)].delete(key, partition)
        else:
            changelogs[id(tbl)].set(key, value, partition)

    tables = (handlers, department.table)

    def open_windows() -> dict[int, list[tuple[float, int, str, float, Any]]]:
        """Every open window by partition, as (end, kind, scope, start, key), and every
        handler as (when its next decision is final, 0, handler, that, handler): the
        tables are scanned once per tick, not once per partition."""
        out: dict[int, list[tuple[float, int, str, float, Any]]] = {}
        for key, value in list(department.table.data.items()):
            if not isinstance(value, dict):
                continue
            scope, (shifted_start, _) = key
            start = shifted_start - rules.offset(shifted_start)
            out.setdefault(value.get("p"), []).append((start + cfg.dept_size, 1, scope, start, key))
        for handler, value in list(handlers.data.items()):
            nxt = rules.burst_next(value) if isinstance(value, dict) else None
            if nxt is not None:
                out.setdefault(value.get("p"), []).append((nxt, 0, handler, nxt, handler))
        return out

    def close_due(partition: int, now: datetime,
                  windows: dict[int, list[tuple[float, int, str, float, Any]]] | None = None,
                  ) -> tuple[list[Alert], dict[str, dict[str, Any]]]:
        t = now.timestamp()
        windows = open_windows() if windows is None else windows
        due = sorted(w for w in windows.get(partition, ()) if rules.is_late(w[0], t))
        changed: dict[str, dict[str, Any]] = {}
        alerts: list[Alert] = []
        for end, kind, scope, start, key in due:
            # read now, not from the scan: records may have come in since (an earlier
            # partition's publish awaited), and a window may be closed already
            value = tables[kind].data.get(key)
            if not isinstance(value, dict) or value.get("p") != partition:
                continue
            dept = scope.partition("/")[0]
            st = changed.get(dept) or dict(state.data.get(dept) or {})
            st["p"] = partition
            if kind == 0:
                st["bc"] = max(st.get("bc", 0), t)  # see rules.burst_late
                value = own_window(value)
                alerts.extend(rules.burst_advance(scope, value, t, now))
                write(handlers, key, value if rules.burst_next(value) is not None else None,
                      partition)
            else:
                st["dc"] = max(st.get("dc", 0), end)
                alert, st["h"] = rules.close_denial(scope, start, value, st.get("h") or {}, now)
                write(department.table, key, None, partition)
                if alert is not None:
                    alerts.append(alert)
            changed[dept] = st
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
        windows = open_windows()
        for partition in active(app, rep.target_name):
            now = rep.fire_time(partition)
            if now is None:
                continue
            started = time.monotonic()
            alerts, changed = close_due(partition, now, windows)
            if alerts:
                await sv.publish(alerts, started)
                if app.rebalancing:
                    return  # the partition may have moved: its next owner closes them again
            for dept, st in changed.items():
                write(state, dept, st, partition)
