"""The batch source: a Faust consumer that hands the records of chosen topics to a handler
one fetched batch at a time, instead of one message at a time through a stream.

Why: stock Faust does a good deal of work on every message before an agent sees it (a
``Message`` and an ``Event`` object, four asyncio tasks in ``wait_first``, a queue, the
stream's iterator, the ack), which alone caps a worker whatever the agent does. The
supervising agent works a batch at a time instead: one Redis round trip for the alerts of
the whole batch, one ack bookkeeping pass.

Everything else stays Faust's: the group membership and assignment, table recovery, the
commit task (offsets committed are the acked ones, as for a stream), flow control during a
rebalance (``wait_empty`` waits for a batch in flight, through a tracked message that
stands for it) and every other topic, which keeps the stock per-message path.

Only the drain loop is replaced, by a subclass of the transport's consumer installed
before the consumer is created (:func:`install`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.types import TP
from faust.types.tuples import ack_lock

from ..record import Record

log = logging.getLogger(__name__)


#: a :class:`Record` from its fields as a tuple: what ``Record(...)`` does, without the
#: Python-level ``__new__`` a named tuple has (a third of the cost, per record)
_record = tuple.__new__

#: Process a batch (records of one topic, possibly of several partitions, each partition's
#: in offset order). Returning means every record is done: their offsets are acked.
BatchHandler = Callable[[list[Record]], Awaitable[None]]


if TYPE_CHECKING:  # what the mixin extends, for the type checker (at run time, see install)
    from faust.transport.drivers.aiokafka import Consumer as _TransportConsumer
else:
    _TransportConsumer = object


class BatchingConsumer(_TransportConsumer):
    """Mixin over the transport's consumer class (see :func:`install`)."""

    batch_handlers: dict[str, BatchHandler]
    #: how long the broker may hold a fetch waiting for records (Faust fixes 1.5 s; a
    #: broker that answers only then adds that much latency to a live event)
    fetch_max_wait_ms: int = 1500

    def _new_consumer_thread(self) -> Any:
        thread = super()._new_consumer_thread()
        create = thread._create_consumer
        fetch = thread._fetch_records
        wait_ms = self.fetch_max_wait_ms

        def create_consumer(loop: Any) -> Any:
            consumer = create(loop)
            consumer._fetch_max_wait_ms = wait_ms  # read by its fetcher when it starts
            return consumer

        async def fetch_records(consumer: Any, active_partitions: Any, timeout: float | None = None,
                                max_records: int | None = None) -> Any:
            if active_partitions is not None:
                fetch_only(consumer, active_partitions)
            return await fetch(consumer, active_partitions, timeout=timeout,
                               max_records=max_records)

        thread._create_consumer = create_consumer  # type: ignore[method-assign]
        thread._fetch_records = fetch_records  # type: ignore[method-assign]
        return thread

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - via workers
        handlers = self.batch_handlers
        app = self.app
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records and not self.should_stop:
                    if self.flow_active:
                        await self._deliver(records, active, handlers, app)
                    else:  # as stock getmany: a rebalance began, go back to the committed offsets
                        try:
                            await self.perform_seek()
                        except Exception as exc:
                            log.warning("seek while the flow is stopped failed: %r", exc)
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            log.exception("drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, records: Any, active: set[TP] | None,
                       handlers: dict[str, BatchHandler], app: Any) -> None:
        generation = app.consumer_generation_id
        buffered = self._buffered_partitions
        batches: dict[str, list[Record]] = {}
        taken: dict[TP, list[int]] = {}
        last: tuple[TP, Any] | None = None
        for tp, recs in records.items():
            if active is not None and tp not in active and tp not in buffered:
                continue
            app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic not in handlers:
                await self._deliver_each(tp, recs, generation)
                continue
            batch = batches.setdefault(tp.topic, [])
            offsets = taken[tp] = []
            partition = tp.partition
            r_offset = self._read_offset[tp]
            for rec in recs:
                offset = rec.offset
                if r_offset is not None and offset < r_offset:
                    continue  # read before (as stock: dropped)
                if r_offset and offset - r_offset > 1:  # a gap (compaction, markers)
                    await self._add_gap(tp, r_offset + 1, offset)
                ts = rec.timestamp
                batch.append(_record(Record, (rec.key, rec.value, partition, offset,
                                              ts / 1000.0 if ts is not None else None)))
                offsets.append(offset)
                r_offset = offset
                last_rec = rec
            if offsets:
                last = (tp, last_rec)
        if not batches or last is None:
            return
        if app.consumer_generation_id != generation or not self.flow_active:
            return  # a rebalance began while fetching: these are read again after it
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()
        await app.flow_control.acquire()
        # one tracked message stands for the batch: a rebalance waits for it (wait_empty)
        standin = self._to_message(*last)
        unacked = self._unacked_messages
        unacked.add(standin)
        try:
            for topic, batch in batches.items():
                await handlers[topic](batch)
            self._ack_offsets(taken)
        finally:
            standin.acked = True
            unacked.discard(standin)
            waiting = self._waiting_for_ack
            if waiting is not None and not waiting.done():  # what Faust's ack does
                waiting.set_result(None)
        now = monotonic()
        inbound = app.monitor.stream_inbound_time
        for tp, offsets in taken.items():
            if offsets:
                self._read_offset[tp] = offsets[-1]
                inbound[tp] = now  # for Faust's slow-processing check

    def _ack_offsets(self, taken: dict[TP, list[int]]) -> None:
        """What ``Consumer.ack`` does per message, once per batch."""
        n = 0
        with ack_lock:
            for tp, offsets in taken.items():
                committed = self._committed_offset[tp]
                index = self._acked_index[tp]
                acked = self._acked[tp]
                for offset in offsets:
                    if (committed is None or offset >= committed) and offset not in index:
                        index.add(offset)
                        acked.append(offset)
                        n += 1
            self._n_acked += n

    async def _deliver_each(self, tp: TP, recs: list[Any], generation: int) -> None:
        """The stock per-message path, for every other topic."""
        app = self.app
        callback = self.callback
        for rec in recs:
            if not self.flow_active or app.consumer_generation_id != generation:
                return
            offset = rec.offset
            r_offset = self._read_offset[tp]
            if r_offset is not None and offset < r_offset:
                continue
            if r_offset and offset - r_offset > 1 and app.topics.acks_enabled_for(tp.topic):
                await self._add_gap(tp, r_offset + 1, offset)
            commit_every = self._commit_every
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            message = self._to_message(tp, rec)
            await self.wait_first(callback(message), self.suspend_flow.wait())
            self._read_offset[tp] = offset


def fetch_only(consumer: Any, active: Any) -> None:
    """Have the aiokafka ``consumer`` fetch only the partitions Faust takes records of now
    (``active``): pause the others, resume these. Runs in the consumer's thread, before each
    fetch of records.

    Faust pauses a partition in its own bookkeeping only (a table's changelog after its
    recovery, a stream whose buffer is full) and asks aiokafka for the records of the
    others, so aiokafka goes on fetching the paused ones. Their records are never taken,
    and while a partition holds fetched records younger than aiokafka's prefetch back-off
    (0.1 s) no fetch goes to its broker for any partition: each changelog record the
    worker writes at a commit stopped the events topic for 0.1 s."""
    assigned = consumer.assignment()
    paused = consumer.paused()
    pause = [tp for tp in assigned if tp not in active and tp not in paused]
    resume = [tp for tp in paused if tp in active]
    if pause:
        consumer.pause(*pause)
    if resume:
        consumer.resume(*resume)


def install(app: Any, topic: Any, handler: BatchHandler, fetch_max_wait_ms: int = 1500) -> None:
    """Have ``app``'s consumer hand the records of ``topic`` (a Faust topic) to ``handler``
    in batches.
    Must run before the consumer is created (in ``create_app``); the topic is added to the
    subscription here (no agent iterates it)."""
    if app._consumer is not None:
        raise RuntimeError("install batch handlers before the consumer is created")
    transport = app.transport
    cls = transport.Consumer
    if not issubclass(cls, BatchingConsumer):
        cls = type(f"Batching{cls.__name__}", (BatchingConsumer, cls),
                   {"batch_handlers": {}, "fetch_max_wait_ms": fetch_max_wait_ms})
        transport.Consumer = cls
    cls.batch_handlers[topic.get_topic_name()] = handler
    app.topics.add(topic)
