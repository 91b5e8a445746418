"""The worker's parts, each over explicit ports: the batch intake, the deadline timer,
the finished-case sweep, the partitions' lag and watchdog, the lag and open-alert
metrics, and the web endpoints. ``agents.app.Worker`` builds them on Faust (the
:class:`Partitions` port is :class:`~agents.app.FaustPartitions` there); a unit test
builds them on plain fakes (tests/unit/test_worker_parts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, MutableMapping
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest

from .metrics import EngineMetrics
from .record import Record
from .supervisor import DeadLetter, StateWriter, Supervisor

log = logging.getLogger(__name__)

#: an assigned partition that delivered nothing for this long with records waiting is stuck
STUCK_AFTER_SECONDS = 10.0
#: cases a minute the finished-case sweep looks at (a few tens of milliseconds)
FINISHED_SWEEP_CASES = 20_000


class Partitions(Protocol):
    """Where this worker's consumer stands on the events topic's partitions it owns."""

    topic: str

    @property
    def rebalancing(self) -> bool: ...

    def active(self) -> set[int]:
        """The partitions of the events topic assigned to this worker."""
        ...

    def end(self, partition: int) -> int | None:
        """The end offset the last fetch reported (None: not fetched yet)."""
        ...

    def committed(self, partition: int) -> int | None:
        """The committed offset: where processing starts after an assignment."""
        ...

    async def broker_ends(self, partitions: list[int]) -> dict[int, int] | None:
        """The end offsets the broker has now (None: not known)."""
        ...

    async def position(self, partition: int) -> int | None:
        """The fetch position (the fetcher reads ahead of what is processed)."""
        ...

    async def restart(self, partition: int, offset: int) -> None:
        """Resume fetching the partition from ``offset``."""
        ...


class CaseTable(Protocol):
    """The case table: its store of case states (case id -> encoded state)."""

    @property
    def data(self) -> MutableMapping[bytes, bytes]: ...


class BatchIntake:
    """The supervising agent's work: every fetched batch of the events topic to the
    supervisor, with the case table, where states are written outside an agent and where
    rejected events go. ``on_due`` is called when a batch moved a partition's time past
    one of its deadlines (the deadline timer need not wait for its next tick)."""

    def __init__(self, supervisor: Supervisor, cases: CaseTable, write_state: StateWriter,
                 dead_letter: DeadLetter, on_due: Callable[[], None] | None = None) -> None:
        self.supervisor = supervisor
        self.cases = cases
        self.write_state = write_state
        self.dead_letter = dead_letter
        self.on_due = on_due

    async def on_batch(self, records: list[Record]) -> None:
        sv = self.supervisor
        await sv.on_batch(records, self.cases.data, self.write_state, self.dead_letter)
        if self.on_due is not None and sv.due_by_partition_time({r.partition for r in records}):
            self.on_due()


class PartitionLag:
    """Whether a partition has a backlog, and so which time its deadlines are judged by."""

    def __init__(self, supervisor: Supervisor, partitions: Partitions) -> None:
        self.supervisor = supervisor
        self.partitions = partitions

    def lagging(self, partition: int, end: int | None = None) -> bool:
        """Whether records on this partition wait to be processed (a backlog), by the end
        offset ``end`` if given, else the one the last fetch reported."""
        if end is None:
            try:
                end = self.partitions.end(partition)
            except Exception:
                end = None
        if end is None:
            return True  # not fetched yet (e.g. just taken over): judge by its own time
        last = self.supervisor.last_offset.get(partition)
        if last is None:
            # nothing processed since the assignment: compare where processing starts (the
            # committed offset; None = nothing committed, from the start) with the end. Not
            # the fetch position: the fetcher reads ahead of what the agent has processed.
            start = self.partitions.committed(partition)
            return (start or 0) < end
        return last + 1 < end

    async def partition_now(self, reading: datetime | None = None, recent: float = 0.0
                            ) -> Callable[[], dict[int, tuple[datetime, bool]]]:
        """A function that says each active partition's time and whether it is live, to be
        called under the case lock (no batch half done). A partition the last fetch says
        is caught up is confirmed with the broker: a batch takes a whole fetch, so the end
        it reported can be exactly where the batch stops while more records have arrived
        since (deadlines would fire by the wall clock with steps of their cases still
        unread). The broker is asked here, before the lock is taken (its round trip held
        up batches of events), with the clock read just before asking (``reading``, if
        read already): a partition whose processed events reach those ends is judged by
        that reading, as if asked then. One behind them is judged by that reading too once
        its events processed reach them, if its latest event is then no more than
        ``recent`` (clock seconds) behind the reading (``Supervisor.end_at_reading``)."""
        parts, sv = self.partitions, self.supervisor
        asked = sorted(parts.active()) if not parts.rebalancing else []
        if reading is None:
            reading = sv.clock.now()
        ends = await parts.broker_ends(asked) if asked else {}
        at_reading = reading.timestamp()

        def partition_now() -> dict[int, tuple[datetime, bool]]:
            out: dict[int, tuple[datetime, bool]] = {}
            if parts.rebalancing:  # began while the timer waited for the batch
                return out
            for p in sorted(parts.active()):
                fetched = not self.lagging(p)  # caught up with what its last fetch reported
                # (the broker's ends not known: the fetch's view it is)
                confirmed = fetched and (ends is None or not self.lagging(p, ends.get(p)))
                if not confirmed and ends is not None and (end := ends.get(p)) is not None:
                    sv.behind_end(p, end, at_reading, recent)
                judged = sv.partition_clock(p, not confirmed, reading, live=fetched)
                if judged is not None:
                    out[p] = judged
            return out

        return partition_now

    def partition_times(self) -> dict[int, tuple[datetime, bool]]:
        """Each active partition's time as its events say (the latest processed), and
        whether it is live (caught up with its last fetch); under the case lock."""
        parts, sv = self.partitions, self.supervisor
        if parts.rebalancing:
            return {}
        out: dict[int, tuple[datetime, bool]] = {}
        for p in sorted(parts.active()):
            judged = sv.partition_clock(p, True, live=not self.lagging(p))
            if judged is not None:
                out[p] = judged
        return out


class DeadlineTimer:
    """Fires the deadlines due on each active partition by that partition's time, with no
    event needed: every ``tick_seconds``, and sooner when the earliest deadline falls due
    by the clock before the next tick, or when a batch of events moved a partition's time
    past one (:meth:`due`): by ticks alone, a deadline falling due between two would wait
    up to a whole tick. Between ticks it judges ahead the cases that fall due within
    ``ahead_seconds`` of their partition's time (:meth:`judge_ahead`)."""

    def __init__(self, supervisor: Supervisor, cases: Any, lag: PartitionLag,
                 write_state: StateWriter, tick_seconds: float = 0.25,
                 ahead_seconds: float = 0.0) -> None:
        self.supervisor = supervisor
        self.cases = cases  # the case table (a mapping of case id -> encoded state)
        self.lag = lag
        self.write_state = write_state
        self.tick_seconds = tick_seconds
        self.ahead_seconds = ahead_seconds
        self.woken = asyncio.Event()
        #: a batch moved a partition's time past a deadline since the last tick
        self.by_events = False
        #: the clock's reading (epoch seconds) when the last tick began: deadlines up to it
        #: were looked at
        self.looked_at = float("-inf")

    async def tick(self, wait: bool = True) -> None:
        """Fire what is due by the clock on the partitions confirmed caught up with the
        broker, else by their own time (``wait``: until the last part is stored; see
        ``Supervisor.on_tick``)."""
        reading = self.supervisor.clock.now()
        self.looked_at = reading.timestamp()
        if self.lag.partitions.rebalancing or not self.supervisor.ready:
            return
        # a partition found behind the broker's end is judged by this reading once its
        # events reach that end, if they are live: its latest within a tick of the reading
        recent = self.tick_seconds * self.supervisor.clock_speed
        asking = asyncio.ensure_future(self.lag.partition_now(reading, recent))
        try:
            while not asking.done():
                # a batch that moves a partition's time past a deadline meanwhile has it
                # fired by that time now, not one round trip to the broker later
                woken = asyncio.ensure_future(self.woken.wait())
                await asyncio.wait((asking, woken), return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                if self.woken.is_set():
                    self.woken.clear()
                    if self.by_events:
                        self.by_events = False
                        await self.tick_by_events(wait=False)
        finally:
            asking.cancel()  # done, or the tick was cancelled
        await self.supervisor.on_tick(self.cases, asking.result(), self.write_state, wait=wait)

    def due(self) -> None:
        """A deadline is due by a partition's time: tick now."""
        self.by_events = True
        self.woken.set()

    async def tick_by_events(self, wait: bool = True) -> None:
        """After a batch moved a partition's time past a deadline: fire what is due by
        each partition's own time (the time of its latest event processed: every event
        up to it is in), with no round trip to the broker first. A partition judged by
        the clock waits for the next :meth:`tick`."""
        if self.lag.partitions.rebalancing or not self.supervisor.ready:
            return
        await self.supervisor.on_tick(self.cases, self.lag.partition_times, self.write_state,
                                      wait=wait)

    def _tick_due(self) -> bool:
        """Whether a tick is due now: a batch woke the timer, or a deadline fell due."""
        return self.woken.is_set() or self.pause() <= 0

    async def _rest(self, seconds: float) -> None:
        """A pause between holds of the case lock while judging ahead, cut short when a
        tick is due: a batch moved a partition's time past a deadline, or one falls due
        by the clock."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.woken.wait(), max(0.0, min(seconds, self.pause())))

    def _clock_tick_due(self) -> bool:
        """Whether a tick by the clock is due: a deadline the last one did not look at fell
        due by the clock, or a whole tick passed since it."""
        sv = self.supervisor
        since = sv.clock.now_epoch() - self.looked_at
        return self.pause() <= 0 or since >= self.tick_seconds * sv.clock_speed

    async def judge_ahead(self) -> int:
        """Judge ahead of their instant the cases that fall due within ``ahead_seconds``
        (real seconds) of their partition's time: the clock's for a partition caught up
        with its last fetch, else the time of its latest event (with a backlog, what is
        due by the clock will be judged as its events come). The tick then only stores
        them. Stops when a tick is due."""
        sv, parts = self.supervisor, self.lag.partitions
        if self.ahead_seconds <= 0 or parts.rebalancing or not sv.ready:
            return 0
        ahead = self.ahead_seconds * sv.clock_speed
        now = sv.clock.now_epoch()
        spans = {}
        for p in sorted(parts.active()):
            at = now if not self.lag.lagging(p) else sv.deadline_epoch(p)
            if at is not None:  # what is due by then already is the tick's
                spans[p] = (min(at, now), min(at, now) + ahead)
        if not spans:
            return 0
        return await sv.judge_ahead(self.cases, spans, self._tick_due, self._rest)

    def pause(self) -> float:
        """Seconds until the next tick: ``tick_seconds``, or less when a deadline the last
        tick did not look at falls due by the clock before then (none if it already has:
        the tick took a while). One the last tick looked at and left waits for its
        partition's time: a batch that moves it past calls :meth:`due`."""
        until = self.supervisor.seconds_to_next_due(after=self.looked_at)
        return self.tick_seconds if until is None else max(0.0, min(self.tick_seconds, until))

    async def run(self) -> None:
        """Tick until cancelled (the worker's task)."""
        while True:
            self.woken.clear()
            # by the partitions' own times when a batch woke it, unless a tick by the clock
            # is due as well
            by_events, self.by_events = self.by_events, False
            # the last part of a tick's burst may still be in the store as the next begins
            if by_events and not self._clock_tick_due():
                await self.tick_by_events(wait=False)
            else:
                await self.tick(wait=False)
            if not self.woken.is_set():
                await self.judge_ahead()
            if not self.woken.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.woken.wait(), self.pause())


class FinishedSweep:
    """A slice of the case table a minute: finished cases past their retention leave it
    (with a tombstone in its changelog), so the table holds the open cases, not all."""

    def __init__(self, supervisor: Supervisor, cases: CaseTable, partitions: Partitions,
                 delete: Callable[[bytes, int], None], retention_seconds: float,
                 chunk: int = FINISHED_SWEEP_CASES) -> None:
        self.supervisor = supervisor
        self.cases = cases
        self.partitions = partitions
        self.delete = delete
        self.retention_seconds = retention_seconds
        self.chunk = chunk
        self.sweep_from = 0  # where the next sweep of the case table starts

    async def sweep(self) -> None:
        sv = self.supervisor
        if self.partitions.rebalancing or not sv.ready:
            return
        keys = list(self.cases.data.keys())
        if self.sweep_from >= len(keys):
            self.sweep_from = 0
        chunk = keys[self.sweep_from:self.sweep_from + self.chunk]
        self.sweep_from += len(chunk)
        await sv.sweep_finished(self.cases.data, chunk, dict(sv.partition_ts),
                                self.retention_seconds, self.delete)


class PartitionWatchdog:
    """A partition taken over with records waiting but none delivered for a while is
    resumed and sought to where processing starts. Seen with Faust on Tansu after a
    worker was killed before its first offset commit; a no-op otherwise."""

    def __init__(self, supervisor: Supervisor, partitions: Partitions, metrics: EngineMetrics,
                 monotonic: Callable[[], float] = time.monotonic,
                 stuck_after: float = STUCK_AFTER_SECONDS) -> None:
        self.supervisor = supervisor
        self.partitions = partitions
        self.metrics = metrics
        self.monotonic = monotonic
        self.stuck_after = stuck_after
        self.assigned_at: dict[int, float] = {}  # monotonic time each partition was (re)assigned

    def assigned(self, actives: set[int]) -> None:
        """The partitions assigned now (the case table recovered)."""
        now = self.monotonic()
        for p in list(self.assigned_at):
            if p not in actives:
                del self.assigned_at[p]
        for p in actives:
            self.assigned_at.setdefault(p, now)

    async def check(self) -> None:
        sv, parts = self.supervisor, self.partitions
        if not sv.ready or parts.rebalancing:
            return
        now = self.monotonic()
        for p in parts.active():
            since = self.assigned_at.get(p)
            if p in sv.last_offset or since is None or now - since < self.stuck_after:
                continue
            end = parts.end(p)
            start = parts.committed(p) or 0
            if end is not None and start >= end:
                continue  # nothing to deliver
            log.warning("partition %s of %s: records waiting (from %s to %s) but none "
                        "delivered for %.0fs; resuming it", p, parts.topic, start, end,
                        now - since)
            self.metrics.partition_restarts.inc()
            await parts.restart(p, start)
            self.assigned_at[p] = now


class OpenAlertCounts(Protocol):
    """The open alerts of each department, from the alert store."""

    async def open_counts(self, departments: list[str]) -> list[int]: ...


class LagReporter:
    """Consumer lag and open-alert counts, for Prometheus (every few seconds)."""

    def __init__(self, supervisor: Supervisor, partitions: Partitions, metrics: EngineMetrics,
                 open_alerts: OpenAlertCounts | None) -> None:
        self.supervisor = supervisor
        self.partitions = partitions
        self.metrics = metrics
        self.open_alerts = open_alerts

    async def observe(self) -> None:
        parts = self.partitions
        try:
            for p in parts.active():
                end = parts.end(p)
                pos = await parts.position(p)
                if end is not None and pos is not None:
                    self.metrics.consumer_lag.labels(parts.topic, str(p)).set(max(0, end - pos))
        except Exception as exc:  # metrics must never stop the worker
            log.debug("lag metric failed: %r", exc)
        if self.open_alerts is not None:
            try:
                depts = sorted(self.supervisor.engine.catalog.departments)
                counts = await self.open_alerts.open_counts(depts)
                for d, c in zip(depts, counts, strict=True):
                    self.metrics.open_alerts.labels(d).set(c)
            except Exception as exc:
                log.debug("open-alert metric failed: %r", exc)


class AlertStoreHealth(Protocol):
    """The alert sink's health: why it refuses alerts now (None: it takes them)."""

    @property
    def degraded(self) -> str | None: ...


class WebEndpoints:
    """What the worker's pages answer: ``/metrics``, ``/progress``, ``/health``."""

    def __init__(self, supervisor: Supervisor, cases: CaseTable, partitions: Partitions,
                 lag: PartitionLag, sink: AlertStoreHealth, registry: CollectorRegistry) -> None:
        self.supervisor = supervisor
        self.cases = cases
        self.partitions = partitions
        self.lag = lag
        self.sink = sink
        self.registry = registry

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    def progress(self) -> dict[str, Any]:
        """Events processed and when (wall clock; and the process's CPU time then): cheap
        to poll, unlike /metrics."""
        sv = self.supervisor
        return {"events": sv.processed, "first_at": sv.first_processed_at,
                "last_at": sv.last_processed_at, "first_cpu": sv.first_processed_cpu,
                "last_cpu": sv.last_processed_cpu}

    def partition_status(self) -> dict[str, Any]:
        sv, parts = self.supervisor, self.partitions
        out = {}
        for p in sorted(parts.active()):
            t = sv.partition_time.get(p)
            out[str(p)] = {"last_offset": sv.last_offset.get(p),
                           "end_offset": parts.end(p),
                           "committed": parts.committed(p),
                           "time": t.isoformat() if t else None,
                           "lagging": self.lag.lagging(p), "scheduled": len(sv.index(p))}
        return out

    def health(self) -> dict[str, Any]:
        sv = self.supervisor
        # degraded once a rule's check has raised: the cases it failed on wait for a retry,
        # and a faulty rule stays faulty until it is fixed and the worker restarted
        failing = dict(sorted(sv.engine.check_errors.items()))
        # and while Redis refuses the alerts (down, out of memory, read-only): held, retried
        store = self.sink.degraded
        return {"status": "degraded" if failing or store else "ok",
                "check_errors": failing, "alert_store": store or "ok",
                "ready": sv.ready and not self.partitions.rebalancing,
                "cases": len(self.cases.data), "scheduled": sv.scheduled(),
                "partitions": sorted(self.partitions.active()),
                "partition_status": self.partition_status()}

