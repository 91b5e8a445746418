"""What one worker does with an event and with a due deadline, apart from Faust wiring.

The :class:`Supervisor` owns the engine, the gate, the clock, the deadline indexes, the
alert sink and the metrics. What happens to an event and to a due case is replay's too
(:class:`rules.driver.CaseDriver`); the supervisor brings the worker's ports (the case
table, each partition's clock, the Redis sink, the dead letters) and its batching.

Two rules keep it correct under at-least-once delivery and backlogs:

- Alerts reach the sink (Redis) *before* the case state that records them is written, so
  a crash in between re-raises them (idempotently) instead of losing them.
- Each event is judged as of when it reached Kafka (its record timestamp), and deadlines
  on a partition that is still catching up fire by that partition's time, not the wall
  clock: a worker working through a backlog after an outage raises the same alerts as one
  that never stopped, instead of false deadlines for cases whose later steps are still in
  the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from jiancha.producers.contract import Alert, Step
from jiancha.rules.case import CaseState, Fact
from jiancha.rules.clock import Clock
from jiancha.rules.driver import CaseDriver, Judged
from jiancha.rules.engine import Engine
from jiancha.rules.ingest import Gate, GateEvent, Rejected
from jiancha.rules.schedule import DeadlineIndex, Due
from jiancha.rules.state_codec import decode_state, encode_state

from .ahead import JudgedAhead, Sent
from .metrics import EngineMetrics
from .record import Record
from .sinks.types import AlertSink, PreparingAlertSink

log = logging.getLogger(__name__)

#: a case with one of these is finished (a refusal at intake needs no further step)
FINISHING_STEPS = frozenset({Step.completed, Step.withdrawn, Step.rejected_at_intake})

#: Where a rejected event goes: (the record, reason, detail).
DeadLetter = Callable[[Record, str, str], Awaitable[None]]
#: Write a case state outside an agent: (key, value, partition).
StateWriter = Callable[[bytes, bytes, int], None]
#: Called after an accepted event was evaluated: (event, state, alerts raised, judged time).
EventObserver = Callable[[GateEvent, CaseState, list[Alert], datetime], None]
#: The first is called with every accepted event as it is judged and its case's state just
#: as the event left it: reads, records nothing, and returns what it read (None: nothing);
#: the second, once per batch where the observers are told, with what the first read of
#: the batch's events, in the records' order, and records it.
EventReader = tuple[Callable[[GateEvent, CaseState], Any], Callable[[list[Any]], None]]
#: Called once per batch with every record in order: the record, the accepted event and the
#: fact its case took in (None and None when rejected), before the batch's case states are
#: written (a crash in between forwards them again, never loses them); and the clock's
#: reading for the batch (epoch seconds).
Forwarder = Callable[[list[tuple[Record, GateEvent | None, Fact | None]], float], None]
#: Called with every alert the sink stored anew, escalated or retracted (not for known
#: ones), and the partition of the case it is about when known.
AlertObserver = Callable[[Alert, int | None], None]


@dataclass
class _DueRound:
    """Due cases a tick judged under one hold of the case lock, to be stored after it."""

    started: float
    alerts: list[Alert] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)  # the partition of each alert's case
    live_dues: list[float] = field(default_factory=list)  # due instants, live partitions'
    #: by partition, the cases that raised: back in their index once their states are
    #: written (see CaseDriver.judge_due)
    raising: list[tuple[int, DeadlineIndex[bytes], list[Judged]]] = field(default_factory=list)
    #: the states after the judgements taken ahead, encoded then (TakenAhead.encoded)
    encoded: dict[bytes, bytes] = field(default_factory=dict)
    #: for each alert, what storing it sends where made ahead (the sink's ``prepare``)
    prepared: list[Any] = field(default_factory=list)
    #: the case mirror's payload of the cases judged ahead, where made, by case id
    payloads: dict[str, bytes] = field(default_factory=dict)
    #: done once the alerts are stored and the states written (or the store failed)
    stored: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class _StoredCases:
    """The case table, decoded on reading."""

    __slots__ = ("stored",)

    def __init__(self, stored: MutableMapping[bytes, bytes]) -> None:
        self.stored = stored

    def get(self, case_id: str | bytes) -> CaseState | None:
        """A case by its id or by its key in the table (the deadline index's key)."""
        raw = self.stored.get(case_id if type(case_id) is bytes else case_id.encode())  # type: ignore[union-attr]
        return decode_state(raw, case_id) if raw is not None else None


class _BatchCases(_StoredCases):
    """The case table as a batch leaves it: a case's state as an earlier event of the
    batch left it, else as stored. Read by the table's key (a keyed event's record key,
    which the gate checked is its case id)."""

    __slots__ = ("states",)

    def __init__(self, stored: MutableMapping[bytes, bytes], states: dict[bytes, CaseState]) -> None:
        super().__init__(stored)
        self.states = states

    def get(self, key: str | bytes) -> CaseState | None:
        state = self.states.get(key)  # type: ignore[call-overload]
        return state if state is not None else _StoredCases.get(self, key)


@dataclass
class Supervisor:
    engine: Engine
    gate: Gate
    clock: Clock
    sink: AlertSink
    metrics: EngineMetrics
    #: by partition; keyed by the case table's own keys (a case id held once)
    indexes: dict[int, DeadlineIndex[bytes]] = field(default_factory=dict)
    #: judged time of each partition's last event, epoch seconds
    partition_ts: dict[int, float] = field(default_factory=dict)
    last_offset: dict[int, int] = field(default_factory=dict)
    #: per partition a tick by the clock found behind the broker's end: that end offset,
    #: the clock's reading when asked and the earliest time of its latest event that
    #: counts as live (epoch seconds). Once its events processed reach that end, every
    #: record in before the reading is in: the deadlines of a live partition are due by
    #: that reading, not only by its latest event's time (on a quiet partition the next
    #: event may be long in coming). Not while it takes in a backfill: records sent after
    #: the reading may tell of steps before it
    end_at_reading: dict[int, tuple[int, float, float]] = field(default_factory=dict)
    #: partitions whose deadline index was rebuilt from the case table: it knows every
    #: case's next due
    indexed: set[int] = field(default_factory=set)
    ready: bool = False  # partitions assigned and the case table recovered
    #: The agent and the deadline timer both read-modify-write case states across awaits
    #: (the Redis write); one lock keeps a timer from evaluating or writing back a state
    #: while an event of the same case is in flight. Held per case, never across cases.
    case_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: due cases a deadline tick judges per hold of the case lock (batches of events wait
    #: for it): about 0.2 ms each with their alerts stored, so some 10-15 ms of work
    #: (deadlines fall due by the hundred at the end of a working day)
    tick_cases: int = 64
    #: due cases judged ahead of their instant per hold of the case lock (about 0.15 ms
    #: each): a few ms at a time, so that the batch that moves a partition's time past a
    #: deadline, and the tick it wakes, wait for little of that work ahead
    ahead_cases: int = 16
    #: events taken from the topic (accepted or rejected), the wall-clock time the first
    #: batch began and the time the latest ended, and the process's CPU time (all its
    #: threads) at both: a progress figure that costs nothing to read
    processed: int = 0
    first_processed_at: float = 0.0
    last_processed_at: float = 0.0
    first_processed_cpu: float = 0.0
    last_processed_cpu: float = 0.0
    event_observers: list[EventObserver] = field(default_factory=list)
    event_readers: list[EventReader] = field(default_factory=list)
    forwarders: list[Forwarder] = field(default_factory=list)
    alert_observers: list[AlertObserver] = field(default_factory=list)
    #: writes the steps of cases that raised alerts where the alert pages read them
    #: (a ``CaseMirror``, or any callable of the states; given the payloads made ahead
    #: only if it has ``payload``)
    case_mirror: Callable[..., Awaitable[None]] | None = None
    _ingested_children: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: due cases judged ahead of their instant (:meth:`judge_ahead`)
    ahead: JudgedAhead = field(default_factory=JudgedAhead)
    #: due cases whose alerts a tick is storing outside the case lock (taken off the
    #: index; their states written once the alerts are stored): done when the future is
    in_flight: dict[bytes, asyncio.Future[None]] = field(default_factory=dict)
    #: parts of due cases being stored, oldest first: two at most, the one Redis runs and
    #: the one sent after it (:meth:`on_tick`); each gives the alerts it stored
    storing: list[asyncio.Future[list[Alert]]] = field(default_factory=list)
    #: what happens to an event and to a due case (shared with replay)
    driver: CaseDriver = field(init=False)

    def __post_init__(self) -> None:
        self.driver = CaseDriver(self.engine, self.gate)

    def index(self, partition: int) -> DeadlineIndex[bytes]:
        idx = self.indexes.get(partition)
        if idx is None:
            idx = self.indexes[partition] = DeadlineIndex()
        return idx

    def scheduled(self) -> int:
        return sum(len(i) for i in self.indexes.values())

    @property
    def clock_speed(self) -> float:
        """Simulated seconds per real second (a simulated clock's speed; 1 otherwise)."""
        return float(getattr(self.clock, "speed", 1.0))

    @property
    def partition_time(self) -> dict[int, datetime]:
        """:attr:`partition_ts` as instants."""
        return {p: datetime.fromtimestamp(t, UTC) for p, t in self.partition_ts.items()}

    def judged_epoch(self, partition: int, record_time: float | None, reading: float) -> float:
        """When this event counts as received, in epoch seconds: its Kafka timestamp on this
        clock, never in the future (a producer's clock may run ahead: ``reading``, the
        clock's reading) and never before the partition's previous event (time on one
        partition only moves forward). Per event: float arithmetic, no datetime."""
        t = self.clock.at_epoch(record_time) if record_time else reading
        if t > reading:
            t = reading
        prev = self.partition_ts.get(partition)
        if prev is not None and t < prev:
            t = prev
        self.partition_ts[partition] = t
        return t

    async def on_event(
        self, key: bytes | None, raw: bytes, partition: int, offset: int,
        record_time: float | None, cases: MutableMapping[bytes, bytes], dead_letter: DeadLetter,
    ) -> list[Alert]:
        """One record (:meth:`on_batch` of one), its state written into ``cases``."""
        return await self.on_batch([Record(key, raw, partition, offset, record_time)], cases,
                                   lambda k, v, p: cases.__setitem__(k, v), dead_letter)

    async def on_batch(self, records: Sequence[Record], cases: MutableMapping[bytes, bytes],
                       write: StateWriter, dead_letter: DeadLetter) -> list[Alert]:
        """Judge a batch of records (each partition's in offset order) and return the
        alerts raised.

        Order, so that a crash at any point loses nothing: every event is evaluated
        first, against the states as the batch leaves them (a case's events in one batch
        see each other); then the alerts of the whole batch are stored (one round trip)
        and the rejected records dead-lettered; only then, with no await in between (so no
        offset commit either), the window records are forwarded, the case states written
        and the observers told. Offsets are acked by the caller after that."""
        async with self.case_lock:
            if self.in_flight:  # a tick stores due alerts of some of these cases: wait
                waits = {w for r in records if (w := self.in_flight.get(r.key)) is not None}  # type: ignore[arg-type]
                if waits:
                    await asyncio.gather(*waits)
            started = time.monotonic()
            if not self.processed:  # the figure's time runs from when the first batch began
                self.first_processed_at = time.time()
                self.first_processed_cpu = time.process_time()
            # by the table's key: a keyed record's key is its case id's bytes (the gate
            # checks it), so the id is never encoded again to read, index or write the case
            states: dict[bytes, CaseState] = {}
            batch_cases = _BatchCases(cases, states)
            due: dict[bytes, Due] = {}
            # per record, where observers are told: (event, its case's state, how many
            # facts of it they see, alerts, judged time); rejected records left out
            order: list[tuple[GateEvent, CaseState, int, list[Alert], datetime]] = []
            observing = bool(self.event_observers)
            # per record, where records are forwarded: (record, event, the fact its case
            # took in); event None: rejected
            forwarded: list[tuple[Record, GateEvent | None, Fact | None]] = []
            forwarding = bool(self.forwarders)
            raised: list[Alert] = []
            raising: list[CaseState] = []
            partitions: list[int] = []
            rejected: list[tuple[Record, str, str]] = []
            ingested: dict[tuple[str, str], int] = {}
            reading = self.clock.now()  # one clock reading for the batch
            reading_epoch = reading.timestamp()
            take, judge_added, judged_epoch = self.driver.take, self._judge_added, self.judged_epoch
            last_offset = self.last_offset
            # each reader and what it read, in order
            reads: list[tuple[Callable[[GateEvent, CaseState], Any], list[Any]]] = [
                (read, []) for read, _ in self.event_readers]
            for rec in records:
                partition = rec.partition
                last_offset[partition] = rec.offset
                now_ts = judged_epoch(partition, rec.timestamp, reading_epoch)
                now = datetime.fromtimestamp(now_ts, UTC)
                try:
                    event, state = take(rec.value, batch_cases, now, now_ts, key=rec.key,
                                        keyed=True)
                except Rejected as r:
                    self.metrics.events_rejected.labels(r.reason).inc()
                    rejected.append((rec, r.reason, r.detail))
                    if forwarding:
                        forwarded.append((rec, None, None))
                    continue
                except Exception as exc:  # never crash on one event
                    log.exception("unexpected error on an event; sent to the DLQ")
                    self.metrics.events_rejected.labels("internal_error").inc()
                    rejected.append((rec, "internal_error", repr(exc)))
                    if forwarding:
                        forwarded.append((rec, None, None))
                    continue
                state.partition = partition
                key: bytes = rec.key  # type: ignore[assignment]  # the case id's: take() checked it
                states[key] = state
                step = event.step
                counted = (event.department, step)  # a StrEnum: a str, no .value
                ingested[counted] = ingested.get(counted, 0) + 1
                alerts, due[key] = judge_added(state, key, step, now, now_ts, due.get(key))
                if alerts:
                    raised.extend(alerts)
                    partitions.extend([partition] * len(alerts))
                    raising.append(state)
                for read, got in reads:
                    value = read(event, state)
                    if value is not None:
                        got.append(value)
                if forwarding:  # the fact the event added: the last (ingest appends it)
                    forwarded.append((rec, event, state.facts[-1]))
                if observing:
                    order.append((event, state, len(state.facts), alerts, now))
            for (department, step), n in ingested.items():  # a counter's lock once per batch
                self._ingested(department, step).inc(n)
            if raised:
                await self._store(raised, started, partitions, raising)
            if rejected:  # each delivered (awaited) before the batch's offsets may be acked
                await asyncio.gather(*(dead_letter(rec, reason, detail)
                                       for rec, reason, detail in rejected))
            # from here to the caller's ack nothing awaits: no offset commit comes between
            for forward in self.forwarders:
                forward(forwarded, reading_epoch)
            for key, state in states.items():  # the index shares the key the table keeps
                write(key, encode_state(state), state.partition)
                self.index(state.partition).put(key, due[key])
            for (_, got), (_, record) in zip(reads, self.event_readers, strict=True):
                if got:
                    record(got)
            for event, state, facts, alerts, judged in order:
                # as it was right after this event (a later one may have added facts)
                seen = state.upto(facts)
                for observe in self.event_observers:
                    observe(event, seen, alerts, judged)
            self._progress(len(records))
            return raised

    def _judge_added(self, state: CaseState, key: bytes, step: Step, now: datetime,
                     now_ts: float, in_batch: Due | None) -> tuple[list[Alert], Due]:
        """Judge a case (``key``: its key in the table) after one fact was added, running
        only the checks that read its step when it is known what the case waited for: from
        an earlier event of this batch, or from the deadline index once it was rebuilt for
        the partition."""
        if in_batch is None and state.partition in self.indexed:
            in_batch = self.index(state.partition).get(key)
        return self.driver.judge_added(state, step, now, now_ts, in_batch)

    def _ingested(self, department: str, step: str) -> Any:
        child = self._ingested_children.get((department, step))
        if child is None:
            child = self._ingested_children[(department, step)] = (
                self.metrics.events_ingested.labels(self.department_label(department), step))
        return child

    def department_label(self, department: str | None) -> str:
        """A department as a metric label: a catalog department, else ``unknown`` (a label
        value is a time series for ever: never one per string an input made up)."""
        if department in self.engine.catalog.departments:
            return department  # type: ignore[return-value]
        return "unknown"

    def _progress(self, n: int) -> None:
        self.processed += n
        self.last_processed_at = time.time()
        self.last_processed_cpu = time.process_time()

    async def on_tick(
        self, cases: MutableMapping[bytes, bytes],
        partition_now: dict[int, tuple[datetime, bool]]
        | Callable[[], dict[int, tuple[datetime, bool]]],
        write: StateWriter, *, wait: bool = True,
    ) -> list[Alert]:
        """Fire every deadline due by each active partition's time, with no event needed.

        ``partition_now`` maps each active partition to (its time, whether it is live, i.e.
        caught up with its events, so that how late its deadlines fire is the timer's
        doing, not a backlog's), or is a function that says so: it is then called under
        the case lock, once no batch is half done (a batch held up by Redis has its
        offsets counted as read before its states are written).

        At most ``tick_cases`` due cases are judged (or eight times as many judged ahead
        taken) under one hold of the case lock; their alerts are stored after it is let go,
        the cases in flight meanwhile (:attr:`in_flight`: a batch with an event of one waits
        for it), and batches of other cases go on. Then the tick goes on (asking
        ``partition_now`` again), the next part taken while the last is stored (Redis
        runs one while the worker sends the next; :attr:`storing`). Deadlines fall due in
        bursts (many cases share the end of a working day), and a burst judged whole held
        up the live stream.

        Returns the alerts stored; with ``wait`` false, the last part may still be in the
        store (the timer's next tick need not wait for it: instants follow each other
        closely at the end of a day), and its alerts are the next tick's to return.
        """
        fired: list[Alert] = []
        storing = self.storing
        more = True
        try:
            while more:
                async with self.case_lock:
                    clocks = partition_now if isinstance(partition_now, dict) else partition_now()
                    taken, more = self._take_due(cases, clocks, self.tick_cases)
                    for _, _, judged in taken.raising:
                        for j in judged:
                            self.in_flight[j.case_id] = taken.stored  # type: ignore[index]
                if taken.alerts or taken.raising:
                    storing.append(asyncio.ensure_future(self._release(taken, write)))
                    await asyncio.sleep(0)  # its store sent before the next part is taken
                while len(storing) > 1:  # two parts at most in the store at once
                    fired.extend(await storing.pop(0))
            while wait and storing:
                fired.extend(await storing.pop(0))
        finally:
            if wait and storing:  # a part failed (raised): the one after it is stored all the same
                await asyncio.wait(storing)
                storing.clear()
        self.metrics.deadlines_scheduled.set(self.scheduled())
        return fired

    def _take_due(self, cases: MutableMapping[bytes, bytes],
                  clocks: dict[int, tuple[datetime, bool]], limit: float
                  ) -> tuple[_DueRound, bool]:
        """Judge up to ``limit`` due cases (under the case lock); and whether cases may be
        left that were due."""
        taken = _DueRound(started=time.monotonic())
        store = _StoredCases(cases)
        ahead = self.ahead.against(cases) if self.ahead else None
        left = limit
        for partition, (now, live) in clocks.items():
            index = self.indexes.get(partition)
            if not index or left <= 0:
                continue
            # the checks that wait run (the index keeps which), not every check; a case
            # judged ahead of its instant is only stored
            judged, used = self.driver.judge_due(index, store, now, now.timestamp(), left,
                                                 ahead)
            left -= used
            if not judged:
                continue
            taken.raising.append((partition, index, judged))
            sent = ahead.sent if ahead is not None else {}
            for j in judged:
                taken.alerts.extend(j.alerts)
                taken.partitions.extend([partition] * len(j.alerts))
                made = sent.get(j.case_id)  # type: ignore[call-overload]
                if made is not None and made[0] is not None:
                    taken.prepared.extend(made[0])
                else:
                    taken.prepared.extend([None] * len(j.alerts))
                if made is not None and made[1] is not None:
                    taken.payloads[j.state.case_id] = made[1]
                if live:
                    taken.live_dues.append(cast(float, j.before.at))
        if ahead is not None:
            taken.encoded = ahead.encoded
        return taken, left <= 0

    async def _release(self, taken: _DueRound, write: StateWriter) -> list[Alert]:
        """Store the alerts of due cases judged, then write their states (as for a batch
        of events: the alerts in one round trip, then the states that record them), and
        put them back in the index; their cases are in flight until then."""
        speed = self.clock_speed
        try:
            if taken.alerts:
                await self._store(taken.alerts, taken.started, taken.partitions,
                                  (j.state for _, _, judged in taken.raising for j in judged),
                                  taken.prepared, taken.payloads)
        except BaseException:
            for _, index, judged in taken.raising:  # due again: judged whole next tick
                for j in judged:
                    index.schedule(j.case_id, j.before.at)
            raise
        else:
            encoded = taken.encoded
            for partition, index, judged in taken.raising:
                for j in judged:
                    state = encoded.get(j.case_id)  # type: ignore[call-overload]
                    write(j.case_id, state if state is not None else encode_state(j.state),
                          partition)  # the table's key
                self.driver.settle(index, judged)
            stored_at = self.clock.now().timestamp()
            for due in taken.live_dues:  # how late after it was due, in real seconds
                self.metrics.deadline_lateness.observe(max(0.0, (stored_at - due) / speed))
        finally:
            for _, _, judged in taken.raising:
                for j in judged:
                    if self.in_flight.get(j.case_id) is taken.stored:  # type: ignore[call-overload]
                        del self.in_flight[j.case_id]  # type: ignore[arg-type]
            taken.stored.set_result(None)
        return taken.alerts

    def _sent(self, judged: Judged) -> Sent | None:
        """What storing a judgement's alerts will send (the sink's and the mirror's), made
        ahead where they can make it."""
        if not judged.alerts:
            return None
        sink, mirror = self.sink, self.case_mirror
        prepared = ([sink.prepare(a) for a in judged.alerts]
                    if isinstance(sink, PreparingAlertSink) else None)
        payload = getattr(mirror, "payload", None)
        return prepared, (payload(judged.state) if payload is not None else None)

    async def judge_ahead(self, cases: MutableMapping[bytes, bytes],
                          spans: dict[int, tuple[float, float]],
                          stop: Callable[[], bool],
                          rest: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> int:
        """Judge ahead of their instant the cases of each partition due within its span in
        ``spans`` (after the first instant, by the second; epoch seconds), ``ahead_cases``
        per hold of the case lock, each hold followed by a pause as long (it is work ahead
        of time: half the worker's time at most; ``rest`` pauses, and may end a pause
        early), until none is left or ``stop`` says a tick is due; held in :attr:`ahead`
        for the tick that fires them (agents/ahead.py). Returns how many were judged."""
        dues = [at for index in self.indexes.values() if (at := index.next_due()) is not None]
        self.ahead.prune(min(dues) if dues else None)
        tz = self.clock.now().tzinfo or UTC
        judged_ahead = 0
        while not stop() and not self.ahead.full:
            began = time.monotonic()
            async with self.case_lock:
                if not self.ready:
                    break
                store = _StoredCases(cases)
                budget = left = min(self.ahead_cases, self.ahead.max_held - len(self.ahead))
                for partition, (after_ts, until_ts) in spans.items():
                    index = self.indexes.get(partition)
                    if not index or left <= 0:
                        continue
                    for j in self.driver.judge_ahead(index, store, until_ts, tz,
                                                     self.ahead.holds, left, after_ts):
                        self.ahead.keep(j, cases.get(j.case_id),  # type: ignore[arg-type]
                                        encode_state(j.state), self._sent(j))
                        left -= 1
                        judged_ahead += 1
                if left == budget:
                    break  # none left to judge ahead
            # then as long a pause as that took: batches go first, and the fetches that
            # bring them (judging ahead back to back held up the event loop's I/O)
            await rest(time.monotonic() - began)
        return judged_ahead

    async def sweep_finished(self, cases: MutableMapping[bytes, bytes], keys: Sequence[bytes],
                             clocks: dict[int, float], retention_seconds: float,
                             delete: Callable[[bytes, int], None]) -> int:
        """Take finished cases out of the table once ``retention_seconds`` have passed since
        they finished by their partition's time (``clocks``, epoch seconds): completed,
        withdrawn or refused at intake, with nothing left due. Their alerts stay in Redis;
        a step reported after that would start the case afresh. ``keys``: the part of the
        table looked at this time (a sweep goes through it a slice at a time). Under the
        case lock, so no batch is half way through one of them."""
        removed = 0
        async with self.case_lock:
            for key in keys:
                raw = cases.get(key)
                if raw is None or key in self.in_flight:
                    continue
                state = decode_state(raw, key)
                now = clocks.get(state.partition)
                index = self.indexes.get(state.partition)
                if now is None or index is None or index.get(key).at is not None:
                    continue  # not this worker's, its time not known, or something is due
                ended = max((f.at for f in state.facts if f.step in FINISHING_STEPS), default=None)
                if ended is None or ended + retention_seconds > now:
                    continue
                delete(key, state.partition)
                removed += 1
        if removed:
            self.metrics.cases_removed.inc(removed)
        return removed

    def partition_clock(self, partition: int, lagging: bool, now: datetime | None = None,
                        live: bool = False) -> tuple[datetime, bool] | None:
        """The time deadlines on this partition are judged by, and whether it is live: the
        wall (or simulated) clock (``now``: its reading when the partition was seen caught
        up) when caught up, else the time of the last event processed from it; None (fire
        nothing yet) while it has a backlog and no event of it was processed since it was
        assigned. A lagging partition is still ``live`` when only events that came after
        its last fetch wait: its time is that of its latest events."""
        if not lagging:
            return (now if now is not None else self.clock.now()), True
        known = self.deadline_epoch(partition)
        return (datetime.fromtimestamp(known, UTC), live) if known is not None else None

    def behind_end(self, partition: int, end: int, reading: float, recent: float) -> None:
        """A tick by the clock at ``reading`` (epoch seconds) found the partition behind
        the broker's ``end`` offset: see :attr:`end_at_reading`; ``recent``: how far
        behind the reading (clock seconds) its latest event's time may be for it to count
        as live. An earlier such end not yet reached is kept (it is reached first)."""
        kept = self.end_at_reading.get(partition)
        if kept is None or self._reached(partition, kept[0]):
            self.end_at_reading[partition] = (end, reading, reading - recent)

    def _reached(self, partition: int, end: int) -> bool:
        last = self.last_offset.get(partition)
        return last is not None and last + 1 >= end

    def deadline_epoch(self, partition: int) -> float | None:
        """A partition's time for its deadlines when it is not confirmed caught up: that of
        its latest event processed, or the reading of a tick whose broker end its events
        processed have reached since, its latest event's time near that reading
        (:attr:`end_at_reading`), whichever is later; None while nothing of it was
        processed since it was assigned."""
        at = self.partition_ts.get(partition)
        kept = self.end_at_reading.get(partition)
        if at is not None and kept is not None and kept[2] <= at < kept[1] \
                and self._reached(partition, kept[0]):
            return kept[1]
        return at

    def seconds_to_next_due(self, after: float | None = None) -> float | None:
        """Real seconds until the clock reaches the earliest deadline after ``after`` (epoch
        seconds; default: now), among each partition's earliest (negative: it is past);
        None: none. A deadline a tick at ``after`` did not fire waits for its partition's
        time (events still on the way), not for the clock."""
        now = self.clock.now_epoch()
        since = now if after is None else after
        ahead = [at for index in self.indexes.values()
                 if (at := index.next_due()) is not None and at > since]
        if not ahead:
            return None
        return (min(ahead) - now) / self.clock_speed

    def due_by_partition_time(self, partitions: Iterable[int]) -> bool:
        """Whether a deadline of one of ``partitions`` is due by that partition's time
        (a batch of its events moved it past one)."""
        for p in partitions:
            index, at = self.indexes.get(p), self.deadline_epoch(p)
            if index is not None and at is not None and index.may_be_due(at):
                return True
        return False

    def rebuild_index(self, states: Iterable[tuple[bytes, CaseState]],
                      active_partitions: set[int]) -> int:
        """After an assignment: the deadline index of the partitions this worker now owns.

        A partition kept from before keeps its time; one taken over has no time until its
        first event is processed: its table may hold facts of events past the committed
        offset, which will be delivered again, and until then its deadlines wait (unless
        nothing is left to deliver, when the clock itself is right)."""
        self.indexes = {p: DeadlineIndex() for p in active_partitions}
        self.ahead.clear()
        self.partition_ts = {p: t for p, t in self.partition_ts.items()
                             if p in active_partitions}
        self.last_offset = {p: o for p, o in self.last_offset.items() if p in active_partitions}
        self.end_at_reading = {p: e for p, e in self.end_at_reading.items()
                               if p in active_partitions}
        n = 0
        for key, state in states:  # keyed as the table is (its own key objects)
            if state.partition not in active_partitions:
                continue
            n += 1
            self.index(state.partition).put(key, self.engine.next_due(state))
        self.indexed = set(active_partitions)
        self.metrics.cases.set(n)
        self.metrics.deadlines_scheduled.set(self.scheduled())
        self.ready = True
        return n

    async def _store(self, alerts: list[Alert], started: float, partitions: Sequence[int],
                     states: Iterable[CaseState], prepared: Sequence[Any] | None = None,
                     payloads: dict[str, bytes] | None = None) -> None:
        """Store alerts and mirror the steps of their cases (``states``) at the same time,
        not one round trip after the other: the mirror is for the alert pages, and never
        fails. ``prepared``, ``payloads``: what the sink and the mirror send, where made
        ahead (:meth:`judge_ahead`)."""
        if self.case_mirror is None:
            await self.publish(alerts, started, partitions, prepared)
        else:
            mirrored = (self.case_mirror(states, payloads) if payloads
                        else self.case_mirror(states))
            await asyncio.gather(self.publish(alerts, started, partitions, prepared), mirrored)

    async def publish(self, alerts: list[Alert], started: float,
                      partitions: Sequence[int | None] | None = None,
                      prepared: Sequence[Any] | None = None) -> None:
        """Store alerts (``partitions``: the partition of each alert's case, if known;
        ``prepared``: the sink's ``prepare`` of each alert, None where not made)."""
        if prepared is not None and any(p is not None for p in prepared):
            outcomes = await cast(PreparingAlertSink, self.sink).publish(alerts, prepared)
        else:
            outcomes = await self.sink.publish(alerts)
        elapsed = time.monotonic() - started
        where = partitions if partitions is not None else [None] * len(alerts)
        for alert, outcome, partition in zip(alerts, outcomes, where, strict=True):
            if outcome == "known":
                continue
            if outcome == "retracted":
                self.metrics.alerts_retracted.labels(alert.rule,
                                                     self.department_label(alert.department)).inc()
            else:
                self.metrics.alerts.labels(alert.rule, alert.severity,
                                           self.department_label(alert.department)).inc()
                self.metrics.event_to_alert.observe(elapsed)
            for observe in self.alert_observers:
                observe(alert, partition)
