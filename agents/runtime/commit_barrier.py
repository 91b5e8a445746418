"""Changelog records coalesced in memory between offset commits, sent before each commit.

Faust flushes its producer right before it commits consumer offsets
(``Consumer.commit``: ``producer.flush()``, then the commit), and when partitions are
revoked, once the agents are idle and before the next owner recovers the tables. Hooks
registered here run at those points (and only there: a record sent later, during the
rebalance, would race the recovery's end offsets), so the records an extension keeps in
memory (many updates of one key become one record) reach Kafka before the offsets of the
events that made them: a crash loses nothing that the committed offsets say was
processed, as if every update had been sent at once.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faust.serializers.codecs import get_codec
from faust.types import ModelT

log = logging.getLogger(__name__)

#: A hook: hands records to the producer; may return an awaitable that finishes handing
#: them over (awaited before the flush).
Hook = Callable[[], Awaitable[None] | None]


def owner(app: Any, topic: str) -> Callable[[], set[int] | None]:
    """The partitions of ``topic`` this worker has as active assignments now (None: not
    known, keep all). A record for a partition that moved away is dropped, not sent: the
    new owner reads the events again from the committed offsets and writes it itself, and
    a record sent now would race its recovery (Faust refuses a changelog whose end is
    behind what it read)."""

    def owned() -> set[int] | None:
        try:
            return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
        except Exception:
            return None

    return owned


class CommitBarrier:
    """The point before every producer flush, hence before every offset commit: hooks
    (they only hand records to the producer) run there. ``first`` hooks run before the
    others (records that must reach Kafka before the states that assume them). One per
    app: the worker makes it and hands it to whoever keeps records until a commit."""

    def __init__(self, app: Any) -> None:
        self._first: list[Hook] = []
        self._rest: list[Hook] = []
        producer = app.producer
        flush = producer.flush

        async def flush_after_hooks() -> None:
            for run in [*self._first, *self._rest]:
                handed = run()
                if inspect.isawaitable(handed):
                    await handed
            await flush()

        producer.flush = flush_after_hooks

    def add(self, hook: Hook, first: bool = False) -> None:
        (self._first if first else self._rest).append(hook)


class CoalescedChangelog:
    """A Faust table whose changelog records are sent at the commit barrier: the latest
    value (or deletion) of each key written since the last one, once. The store is written
    at once, so reads see every write. Writes through the table (``table[k] = v``, a
    windowed table's ``wrapper[k] = v``) are taken over; :meth:`set` and :meth:`delete`
    write outside an agent, with the partition given.

    For tables written per event with few distinct keys (a department's window): one
    record per key and commit interval instead of one per event."""

    def __init__(self, app: Any, table: Any, source_topic: str, barrier: CommitBarrier) -> None:
        self.app = app
        self.table = table
        # raw bytes keys and values go to Kafka as they are; others are encoded here as
        # Faust's changelog would encode them (its serializer registry), in record batches
        self.raw = (getattr(table, "key_type", None) is bytes
                    and getattr(table, "value_type", None) is bytes)
        self.owned = owner(app, source_topic)
        self.pending: dict[Any, int] = {}
        table.on_key_set = self._on_key_set  # the instance's hooks, called by __setitem__
        table.on_key_del = self._on_key_del
        barrier.add(self.send)  # also when partitions are revoked

    def _on_key_set(self, key: Any, value: Any) -> None:
        self.pending[key] = self.table.partition_for_key(key)

    def _on_key_del(self, key: Any) -> None:
        self.pending[key] = self.table.partition_for_key(key)

    def set(self, key: Any, value: Any, partition: int) -> None:
        self.table.data[key] = value
        self.pending[key] = partition

    def delete(self, key: Any, partition: int) -> None:
        self.table.data.pop(key, None)
        self.pending[key] = partition

    def send(self) -> Awaitable[None] | None:
        pending, self.pending = self.pending, {}
        if not pending:
            return None
        data = self.table.data
        owned = self.owned()
        direct = _kafka_producer(self.app)
        if direct is not None:
            encode_key, encode_value = self._encoders()
            by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
            for key, partition in pending.items():
                if owned is None or partition in owned:
                    value = data.get(key)
                    by_partition.setdefault(partition, []).append(
                        (encode_key(key), None if value is None else encode_value(value)))
            return send_batches(direct, self.table.changelog_topic.get_topic_name(),
                                by_partition)
        for key, partition in pending.items():
            if owned is not None and partition not in owned:
                continue
            if key in data:
                self.table.send_changelog(partition, key, data[key])
            else:
                self.table.send_changelog(partition, key, None, value_serializer="raw")
        return None

    def _encoders(self) -> tuple[Callable[[Any], bytes], Callable[[Any], bytes]]:
        """Key and value to bytes, as the table's changelog topic would send them."""
        if self.raw:
            return _as_is, _as_is
        table, registry = self.table, self.app.serializers
        return (_encoder(table.key_type, table.key_serializer,
                         functools.partial(registry.dumps_key, table.key_type,
                                           serializer=table.key_serializer)),
                _encoder(table.value_type, table.value_serializer,
                         functools.partial(registry.dumps_value, table.value_type,
                                           serializer=table.value_serializer)))


def _encoder(typ: Any, serializer: Any, registered: Callable[[Any], bytes]
             ) -> Callable[[Any], bytes]:
    """What the registry does for a plain (not model) type with a named codec: bytes as
    they are, anything else through the codec, which is looked up once here instead of
    once per record; the registry itself for anything else."""
    if typ is not None or not isinstance(serializer, str):
        return registered
    codec = get_codec(serializer)

    def encode(obj: Any) -> bytes:
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, ModelT):
            return registered(obj)
        return codec.dumps(obj)
    return encode


def _as_is(raw: Any) -> bytes:
    return raw  # type: ignore[no-any-return]


def _kafka_producer(app: Any) -> Any:
    """The aiokafka producer under Faust's (None where there is none in this loop, e.g. a
    threaded producer)."""
    if getattr(app.conf, "producer_threaded", False):
        return None
    return getattr(app.producer, "_producer", None)


async def send_batches(producer: Any, topic: str,
                       records: dict[int, list[tuple[bytes, bytes | None]]],
                       max_backoff: float = 5.0) -> None:
    """Hand raw records to the aiokafka producer, a record batch per partition (and per
    ``max_batch_size``), and wait until the broker has each: a record costs little more
    than its encoding, where Faust's producer buffer handles each record on its own, with
    a round trip of its own.

    A batch the broker refuses (or that times out) is sent again with back-off, and this
    returns only once every batch is delivered: it runs before the offset commit, which
    then waits rather than commit offsets whose states were lost."""
    pending = records
    backoff = 0.1
    while pending:
        sent: list[tuple[int, list[tuple[bytes, bytes | None]], Any]] = []
        for partition, items in pending.items():
            sent.extend(await _hand_over(producer, topic, partition, items))
        failed: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for partition, items, delivered in sent:
            try:
                await delivered
            except Exception as exc:
                log.warning("changelog batch of %d record(s) to %s[%d] not delivered (%r); "
                            "sent again in %.1fs, the offset commit waits", len(items), topic,
                            partition, exc, backoff)
                failed.setdefault(partition, []).extend(items)
        pending = failed
        if pending:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)


async def _hand_over(producer: Any, topic: str, partition: int,
                     items: list[tuple[bytes, bytes | None]]
                     ) -> list[tuple[int, list[tuple[bytes, bytes | None]], Any]]:
    """The records of one partition as record batches handed to the producer: (partition,
    the batch's records, its delivery future) each."""
    out = []
    batch = producer.create_batch()
    chunk: list[tuple[bytes, bytes | None]] = []
    for key, value in items:
        if batch.append(key=key, value=value, timestamp=None) is None:
            out.append((partition, chunk, await producer.send_batch(batch, topic,
                                                                    partition=partition)))
            batch, chunk = producer.create_batch(), []
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes does not fit a "
                                 f"batch of {topic}: raise JIANCHA_KAFKA_PRODUCER_BATCH_BYTES")
        chunk.append((key, value))
    if batch.record_count():
        out.append((partition, chunk, await producer.send_batch(batch, topic, partition=partition)))
    return out
