"""The batch consumer's bookkeeping, on stand-ins (the drain loop itself runs in every
integration test: the supervising agent takes its events through it)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.types import TP

from jiancha.agents.runtime.batch_source import BatchingConsumer, fetch_only, install


class _Bookkeeping(BatchingConsumer):
    def __init__(self) -> None:
        self._committed_offset: Any = defaultdict(lambda: None)
        self._acked_index: Any = defaultdict(set)
        self._acked: Any = defaultdict(list)
        self._n_acked = 0


def test_a_batch_acks_its_offsets_once_and_none_before_the_committed_one() -> None:
    c = _Bookkeeping()
    tp = TP("events", 3)
    c._committed_offset[tp] = 10
    c._ack_offsets({tp: [8, 9, 10, 11, 12]})
    c._ack_offsets({tp: [12, 13]})  # 12 again: a copy is acked once
    assert c._acked[tp] == [10, 11, 12, 13]
    assert c._acked_index[tp] == {10, 11, 12, 13}
    assert c._n_acked == 4


class _Thread:
    def _create_consumer(self, loop: Any) -> Any:
        return SimpleNamespace(_fetch_max_wait_ms=1500)

    async def _fetch_records(self, consumer: Any, active_partitions: Any,
                             timeout: float | None = None, max_records: int | None = None) -> Any:
        return {tp: [] for tp in consumer.assignment() if tp not in consumer.paused()}


class _AiokafkaConsumer:
    """What aiokafka's consumer says of its partitions and does on pause and resume."""

    def __init__(self, assigned: set[TopicPartition], paused: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.stopped = set(paused)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self.stopped)

    def pause(self, *tps: TopicPartition) -> None:
        assert all(isinstance(tp, TopicPartition) for tp in tps)  # as aiokafka checks
        self.stopped.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.stopped.difference_update(tps)


class _StockConsumer:
    def _new_consumer_thread(self) -> Any:
        return _Thread()


def _app(consumer: Any = None) -> Any:
    added: list[Any] = []
    return SimpleNamespace(_consumer=consumer, transport=SimpleNamespace(Consumer=_StockConsumer),
                           topics=SimpleNamespace(add=added.append), added=added)


def test_install_subclasses_the_transport_consumer_and_subscribes_the_topic() -> None:
    app = _app()
    topic = SimpleNamespace(get_topic_name=lambda: "events")

    async def handler(records: list[Any]) -> None: ...

    install(app, topic, handler, fetch_max_wait_ms=20)
    cls = app.transport.Consumer
    assert issubclass(cls, BatchingConsumer) and issubclass(cls, _StockConsumer)
    assert cls.batch_handlers == {"events": handler}
    assert app.added == [topic]
    # the fetch wait reaches the aiokafka consumer the thread creates
    thread = cls()._new_consumer_thread()
    assert thread._create_consumer(None)._fetch_max_wait_ms == 20


def test_install_refuses_once_the_consumer_exists() -> None:
    with pytest.raises(RuntimeError, match="before the consumer is created"):
        install(_app(consumer=object()), SimpleNamespace(get_topic_name=lambda: "e"),
                lambda records: None)  # type: ignore[arg-type, return-value]


def test_aiokafka_fetches_only_the_partitions_faust_takes_records_of() -> None:
    """A partition Faust paused in its own bookkeeping (a changelog after recovery) is
    paused in aiokafka too, and resumed with it: records fetched for a partition nobody
    takes stopped every fetch from its broker for aiokafka's prefetch back-off."""
    events = [TopicPartition("events", p) for p in range(2)]
    changelog = [TopicPartition("cases-changelog", p) for p in range(2)]
    consumer = _AiokafkaConsumer({*events, *changelog}, paused={events[1]})
    fetch_only(consumer, {TP("events", 0), TP("events", 1)})  # Faust's TPs
    assert consumer.paused() == set(changelog)
    fetch_only(consumer, {TP("events", 0), TP("events", 1), TP("cases-changelog", 1)})
    assert consumer.paused() == {changelog[0]}  # recovering it: fetched again


def test_the_thread_fetches_after_pausing_what_is_not_taken() -> None:
    app = _app()

    async def handler(records: list[Any]) -> None: ...

    install(app, SimpleNamespace(get_topic_name=lambda: "events"), handler)
    thread = app.transport.Consumer()._new_consumer_thread()
    consumer = _AiokafkaConsumer({TopicPartition("events", 0), TopicPartition("c", 0)}, set())
    fetched = asyncio.run(thread._fetch_records(consumer, {TP("events", 0)}, timeout=1.0))
    assert list(fetched) == [TopicPartition("events", 0)]
