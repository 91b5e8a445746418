"""The batch consumer's bookkeeping, on stand-ins (the drain loop itself runs in every
integration test: the supervising agent takes its events through it)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from jiancha.agents.runtime.batch_source import BatchingConsumer, install


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
