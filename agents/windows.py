"""Window rules in the worker: ``actor.burst``, ``department.denial_spike``,
``department.silent``. What a record does and what falls due is
``rules.windows.WindowFlow``, shared with replay; here are its stores over Faust tables
(:class:`BatchStore` for the agent, :class:`TimerStore` for the timer), the
repartitioning and the timer.

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
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from prometheus_client import Counter

from jiancha.producers.contract import Alert
from jiancha.rules.case import Fact
from jiancha.rules.clock import Clock
from jiancha.rules.ingest import GateEvent
from jiancha.rules.windows import (
    CLOSE,
    COUNT,
    WindowFlow,
    WindowRecord,
    WindowRules,
    fact_fields,
    own_window,
    record_of,
    spans_after,
)

from .extensions import Extension, WorkerContext
from .record import Record
from .runtime import CoalescedChangelog, CommitBarrier, PartitionOffsets

log = logging.getLogger(__name__)


#: The value prefix of a watermark record on a repartitioned topic (never a JSON record).
MARKER = b"\x00wm"
#: The value prefix of a batch of records for one key: ``[[timestamp, value], ...]``.
BATCH = b"\x00bt"
#: Records held for one key before its batch is sent anyway.
BATCH_MAX = 500
#: The fields of a window record as forwarded (:func:`~rules.windows.fact_fields`).
_FIELDS = len(WindowRecord._fields)


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
                 partitions: int, barrier: CommitBarrier | None = None,
                 interval: float = 0.5) -> None:
        self.app = app
        self.barrier = barrier
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
        self._batches: dict[str | bytes, list[tuple[float, int, int, Any]]] = {}
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
            assert self.barrier is not None, "batched forwarding sends at the commit barrier"
            self.barrier.add(self.flush_batches, first=True)

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
        self._read(msg.partition, msg.offset, self.judge_epoch(msg.timestamp))

    def _read(self, partition: int, offset: int, judged: float) -> None:
        if judged > self.up_time.get(partition, float("-inf")):
            self.up_time[partition] = judged  # every record before is forwarded
        self.up_offset[partition] = offset

    async def forward(self, msg: Any, key: bytes, value: bytes) -> None:
        judged = self.judge_epoch(msg.timestamp)
        await self.target.send(key=key, value=value, timestamp=msg.timestamp)
        # only once the record is handed to the producer: a marker sent after it is behind it
        if judged > self.up_time.get(msg.partition, float("-inf")):
            self.up_time[msg.partition] = judged
        self.up_offset[msg.partition] = msg.offset

    def forward_batched(self, records: Iterable[tuple[Any, str | bytes | None, Any]],
                        now: float | None = None) -> None:
        """Forward each ``(msg, key, item)`` in order later, ``item`` (JSON-able) in a batch
        for ``key`` (one message for many records; a str is sent as its UTF-8 bytes) with
        the upstream partition and offset it came from (``msg``), or where ``key`` is None
        take it as :meth:`read`; ``now``: the clock's reading (epoch seconds) for them
        all, taken here unless given. A batch of records is one call: per record,
        :meth:`judge_epoch` inline and nothing built that is not kept."""
        if now is None:
            now = self.clock.now_epoch()
        at_epoch = self.clock.at_epoch
        batches, held = self._batches, self._held
        for msg, key, item in records:
            ts = msg.timestamp
            judged = at_epoch(ts) if ts else now
            if judged > now:
                judged = now
            partition, offset = msg.partition, msg.offset
            if key is None:
                self._read(partition, offset, judged)
                continue
            batch = batches.get(key)
            if batch is None:
                batch = batches[key] = []
            batch.append((ts or judged, partition, offset, item))
            before = held.get(partition)
            if before is not None and before[0] > judged:
                judged = before[0]
            held[partition] = (judged, offset)
            if len(batch) >= BATCH_MAX:
                self.flush_batches()
                batches, held = self._batches, self._held

    def flush_batches(self) -> None:
        """Hand every held batch to the producer (in order, through Faust's buffer: the
        watermarks follow the same way), then count their upstream progress."""
        batches, self._batches = self._batches, {}
        for key, records in batches.items():
            self.target.send_soon(key=key.encode() if isinstance(key, str) else key,
                                  value=BATCH + orjson.dumps(records),
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
        committed = PartitionOffsets(self.app, topic).committed(partition)
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

    def batch(self, event: Any) -> list[Any] | None:
        """The records of a batch message of the repartitioned topic as sent, ``[Kafka
        time, upstream partition, upstream offset, item]`` each (:meth:`judge_epoch` of
        the time is when it counts as received), or None for a watermark marker (taken in
        here)."""
        value = event.value
        if isinstance(value, bytes) and value.startswith(BATCH):
            try:
                records = orjson.loads(memoryview(value)[len(BATCH):])
            except orjson.JSONDecodeError:
                records = None
            if type(records) is not list:
                log.warning("unreadable batch on %s skipped", self.target_name)
                return []
            return records
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


class WindowTables:
    """The worker's window tables (:class:`Windows`), read and written by the stores below."""

    def __init__(self, rules: WindowRules, state: Any, department: Any, handlers: Any,
                 last_seen: Any, changelogs: dict[int, CoalescedChangelog]) -> None:
        self.rules = rules
        self.state = state  # department -> its state, and "p": its partition
        self.department = department  # windowed: department -> its window's value
        self.handlers = handlers  # handler -> its decisions, and "p"
        self.last_seen = last_seen  # department -> {"p", "spans": events not final}
        self.changelogs = changelogs
        #: the record's time in local-epoch seconds: the windows align to it
        self.shifted = 0.0

    def write(self, tbl: Any, key: Any, value: Any, partition: int) -> None:
        """Outside an agent: the store, and the changelog partition explicitly."""
        if value is None:
            self.changelogs[id(tbl)].delete(key, partition)
        else:
            self.changelogs[id(tbl)].set(key, value, partition)


_NO_STATE: dict[str, Any] = {}


class BatchStore:
    """The :class:`~rules.windows.WindowStore` of a batch of records in the agent: each
    window, handler and department's spans copied once (:func:`~rules.windows.own_window`),
    changed in place by every record of the batch, and written once at the end
    (:meth:`write`); the departments' states only read (the timer changes them)."""

    def __init__(self, tables: WindowTables, partition: int) -> None:
        self.tables = tables
        self.partition = partition
        self.states: dict[str, Any] = {}
        self.windows: dict[tuple[str, float], tuple[float, dict[str, Any]]] = {}
        self.handlers: dict[str, dict[str, Any]] = {}
        self.spans_of: dict[str, list[list[Any]]] = {}

    def state(self, department: str) -> Any:
        st = self.states.get(department)
        if st is None:
            st = self.states[department] = self.tables.state.data.get(department) or _NO_STATE
        return st

    def put_state(self, department: str, value: dict[str, Any]) -> None:
        raise AssertionError("a record never changes its department's state")

    def window(self, department: str, start: float, at: float) -> dict[str, Any] | None:
        got = self.windows.get((department, start))
        if got is not None:
            return got[1]
        t = self.tables
        t.shifted = at + t.rules.offset(at)
        # a copy of our own: the table's value stays as it was until the batch writes it
        return own_window(t.department[department].value())

    def put_window(self, department: str, start: float, at: float, value: dict[str, Any]) -> None:
        key = (department, start)
        if key not in self.windows:
            value["p"] = self.partition
            self.windows[key] = (at, value)

    def drop_window(self, department: str, start: float) -> None:
        raise AssertionError("a record never closes a window")

    def handler(self, handler: str) -> dict[str, Any] | None:
        value = self.handlers.get(handler)
        return own_window(self.tables.handlers.data.get(handler)) if value is None else value

    def put_handler(self, handler: str, value: dict[str, Any] | None) -> None:
        if value is not None and handler not in self.handlers:
            value["p"] = self.partition
            self.handlers[handler] = value

    def spans(self, department: str) -> list[list[Any]]:
        spans = self.spans_of.get(department)
        if spans is None:
            seen = self.tables.last_seen.data.get(department) or {}
            spans = list(seen.get("spans") or [])
            last = self.state(department).get("L")
            if last is not None:  # those before the last final event are final: dropped
                spans = spans_after(spans, last[0])
            self.spans_of[department] = spans
        return spans

    def put_spans(self, department: str, spans: list[list[Any]]) -> None:
        self.spans_of[department] = spans

    def write(self) -> None:
        """Each window, handler and department's spans the batch changed, once."""
        t, partition = self.tables, self.partition
        department = t.department
        for (scope, _), (at, value) in self.windows.items():
            t.shifted = at + t.rules.offset(at)
            department[scope] = value
        for handler, value in self.handlers.items():
            t.handlers[handler] = value
        for dept, spans in self.spans_of.items():
            t.last_seen[dept] = {"p": partition, "spans": spans}


class TimerStore:
    """The :class:`~rules.windows.WindowStore` of the timer closing what is due on one
    partition: handlers and windows written at once (nothing is awaited before, and records
    taken in while the alerts are stored change them); the departments' states kept in
    :attr:`changed`, written once the alerts that they record are stored."""

    def __init__(self, tables: WindowTables, partition: int,
                 keys: dict[tuple[str, float], Any]) -> None:
        self.tables = tables
        self.partition = partition
        self.keys = keys  # (department, start) -> the window's key in the windowed table
        self.changed: dict[str, dict[str, Any]] = {}

    def state(self, department: str) -> Any:
        return (self.changed.get(department) or self.tables.state.data.get(department)
                or _NO_STATE)

    def put_state(self, department: str, value: dict[str, Any]) -> None:
        value["p"] = self.partition
        self.changed[department] = value

    def _mine(self, value: Any) -> dict[str, Any] | None:
        return value if isinstance(value, dict) and value.get("p") == self.partition else None

    def window(self, department: str, start: float, at: float) -> dict[str, Any] | None:
        key = self.keys.get((department, start))
        # read now, not from the scan: records may have come in since (an earlier
        # partition's alerts awaited), and a window may be closed already
        return None if key is None else self._mine(self.tables.department.table.data.get(key))

    def put_window(self, department: str, start: float, at: float, value: dict[str, Any]) -> None:
        raise AssertionError("the timer never adds to a window")

    def drop_window(self, department: str, start: float) -> None:
        t = self.tables
        t.write(t.department.table, self.keys[department, start], None, self.partition)

    def handler(self, handler: str) -> dict[str, Any] | None:
        value = self._mine(self.tables.handlers.data.get(handler))
        return None if value is None else own_window(value)

    def put_handler(self, handler: str, value: dict[str, Any] | None) -> None:
        self.tables.write(self.tables.handlers, handler, value, self.partition)

    def spans(self, department: str) -> list[list[Any]]:
        seen = self._mine(self.tables.last_seen.data.get(department))
        return seen.get("spans") or [] if seen is not None else []

    def put_spans(self, department: str, spans: list[list[Any]]) -> None:
        """Not written: the spans before the last final event are dropped when a record
        next reads them (:meth:`BatchStore.spans`); written here, they would be ahead of
        the state that says they are final."""


class Windows(Extension):
    """The window rules' extension: the repartitioning by department, the ``windows``
    agent, its tables and the timer closing what is due (see the module's description)."""

    # set by install()
    app: faust.App
    rep: Repartition
    tables: WindowTables
    flow: WindowFlow

    def __init__(self, ctx: WorkerContext) -> None:
        self.settings, self.supervisor = ctx.settings, ctx.supervisor
        engine = self.supervisor.engine
        self.rules = WindowRules(engine.ruleset, engine.working_time, engine.catalog.departments)
        cfg = self.rules.cfg
        self.active = bool(cfg.burst_on or cfg.denial_on or cfg.silent_on)
        self.metrics = ctx.metrics
        self.barrier = ctx.commit_barrier

    def install(self, app: faust.App) -> None:
        s, sv, rules = self.settings, self.supervisor, self.rules
        cfg = rules.cfg
        n = s.topic_partitions
        self.app = app
        late = Counter("jiancha_window_late_records",
                       "Records left out of a window that was already closed (late beyond the "
                       "allowed lateness)", ["rule"], registry=self.metrics.registry)
        duplicates = Counter("jiancha_window_duplicate_records", "Records forwarded again after "
                             "a takeover and counted once", registry=self.metrics.registry)
        by_department = app.topic(f"{s.app_id}-windows-by-department", partitions=n,
                                  internal=True, key_type=bytes, value_type=bytes)
        self.rep = Repartition(app, sv.clock, s.events_topic, by_department, n, self.barrier)
        self.rep.install(batched=True)

        def table(name: str) -> Any:
            return app.Table(name, default=dict, partitions=n,
                             schema=faust.Schema(key_serializer="json", value_serializer="json"))

        handlers = table("windows-handlers")  # handler -> {"p": partition, "q", "k", "e": decisions}
        # Faust's windows align to the record's time in local-epoch seconds
        department = table("windows-department").tumbling(cfg.dept_size).relative_to(self._shifted)
        last_seen = table("windows-last")  # department -> {"p": partition, "spans": events not final}
        state = table("windows-state")  # department -> {"h": history, "bc", "dc", "L", "s", "p"}
        # few keys, written on every event: one changelog record per key and commit interval
        changelogs = {id(t): CoalescedChangelog(app, t, by_department.get_topic_name(), self.barrier)
                      for t in (handlers, department.table, last_seen, state)}
        self.tables = WindowTables(rules, state, department, handlers, last_seen, changelogs)
        self.flow = WindowFlow(rules, lambda rule: late.labels(rule).inc(), duplicates.inc)
        app.agent(by_department, name="windows")(self.windows)
        app.timer(min(1.0, s.deadline_tick_seconds * 4), name="close_windows")(self.close_windows)

    def _shifted(self, event: Any = None) -> float:
        return self.tables.shifted

    def on_records(self, records: list[tuple[Record, GateEvent | None, Fact | None]],
                   now: float) -> None:
        """The supervising agent hands over each batch of records it took (event None:
        rejected); each accepted one is forwarded keyed by its department (encoded once
        per batch sent, not per record)."""
        self.rep.forward_batched([(record, None, None) if event is None or fact is None
                              else (record, event.department, fact_fields(event.case_id, fact))
                              for record, event, fact in records], now)

    async def windows(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            records = self.rep.batch(event)
            if records:
                self.window_records(event.message.partition, records)

    def window_records(self, partition: int, records: list[Any]) -> None:
        """A batch of records into the windows (in the agent: the tables know the
        partition), as :meth:`Repartition.batch` read them. Each record is added in order
        to the window values as this batch leaves them; each window touched is written
        once, at the end."""
        store = BatchStore(self.tables, partition)
        observe = self.flow.observe
        clock = self.rep.clock
        at_epoch = clock.at_epoch
        now = clock.now_epoch()  # one clock reading for the batch
        ups: dict[int, str] = {}  # upstream partitions as the windows count them
        for entry in records:
            try:
                ts, up, offset, item = entry
                # when it counts as received: Repartition.judge_epoch, inline
                judged = at_epoch(ts) if ts else now
                if judged > now:
                    judged = now
                if type(item) is not list or len(item) != _FIELDS:
                    raise ValueError(item)
                rec = record_of(item)
                source = ups.get(up)
                if source is None:
                    source = ups[up] = str(int(up))
            except Exception:
                log.warning("windows: bad record on %s skipped", self.rep.target_name)
                continue
            # where it came from: a record forwarded again after a takeover is recognised
            observe(store, rec, judged, (source, offset))
        store.write()

    def due(self, partition: int, t: float,
            windows: dict[int, list[tuple[float, int, str, float, Any]]]
            ) -> tuple[list[tuple[int, str, float]], dict[tuple[str, float], Any]]:
        """The handlers to count and the windows to close on ``partition`` by ``t``, in the
        order they fall due, and the windows' table keys."""
        listed = sorted(w for w in windows.get(partition, ()) if self.rules.is_late(w[0], t))
        keys = {(scope, start): key for _, kind, scope, start, key in listed if kind == CLOSE}
        return [(kind, scope, start) for _, kind, scope, start, _ in listed], keys

    def close_due(self, partition: int, now: datetime,
                  windows: dict[int, list[tuple[float, int, str, float, Any]]] | None = None,
                  ) -> tuple[list[Alert], dict[str, dict[str, Any]]]:
        """What is due on ``partition`` by ``now``: the alerts, and the departments' states
        that record them (written once the alerts are stored). Handlers and windows are
        written here, before anything is awaited: records taken in meanwhile change them."""
        t = now.timestamp()
        listed, keys = self.due(partition, t, self.open_windows() if windows is None else windows)
        store = TimerStore(self.tables, partition, keys)
        silences = [dept for dept, seen in list(self.tables.last_seen.data.items())
                    if seen and seen.get("p") == partition]
        return self.flow.advance(store, listed, silences, t, now), store.changed

    def open_windows(self) -> dict[int, list[tuple[float, int, str, float, Any]]]:
        """Every open window by partition, as (end, CLOSE, department, start, key), and
        every handler as (when its next decision is final, COUNT, handler, that,
        handler): the tables are scanned once per tick, not once per partition."""
        rules = self.rules
        out: dict[int, list[tuple[float, int, str, float, Any]]] = {}
        for key, value in list(self.tables.department.table.data.items()):
            if not isinstance(value, dict):
                continue
            scope, (shifted_start, _) = key
            start = shifted_start - rules.offset(shifted_start)
            out.setdefault(value.get("p"), []).append(
                (start + rules.cfg.dept_size, CLOSE, scope, start, key))
        for handler, value in list(self.tables.handlers.data.items()):
            nxt = rules.burst_next(value) if isinstance(value, dict) else None
            if nxt is not None:
                out.setdefault(value.get("p"), []).append((nxt, COUNT, handler, nxt, handler))
        return out

    async def close_windows(self) -> None:
        app, sv = self.app, self.supervisor
        if app.rebalancing or not sv.ready:
            return
        windows = self.open_windows()
        for partition in active(app, self.rep.target_name):
            now = self.rep.fire_time(partition)
            if now is None:
                continue
            started = time.monotonic()
            alerts, changed = self.close_due(partition, now, windows)
            if alerts:
                await sv.publish(alerts, started)
                if app.rebalancing:
                    return  # the partition may have moved: its next owner closes them again
            for dept, st in changed.items():
                self.tables.write(self.tables.state, dept, st, partition)
