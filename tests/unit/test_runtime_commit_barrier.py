"""Changelog records coalesced between commits are sent before the producer flush that
precedes every offset commit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.serializers import Registry
from faust.types import TP

from jiancha.agents.runtime.commit_barrier import CoalescedChangelog, CommitBarrier


class _Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    def append(self, key: bytes, value: bytes | None, timestamp: None) -> object:
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class _Kafka:
    """aiokafka's producer as far as record batches go."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[None]:
        self.log.append(("batch", topic, partition, batch.records))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered


class _Producer:
    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self._producer = _Kafka(log)

    async def flush(self) -> None:
        self.log.append("flush")


class _App:
    def __init__(self, threaded: bool = False) -> None:
        self.log: list[Any] = []
        self.producer = _Producer(self.log)
        self.conf = SimpleNamespace(producer_threaded=threaded)
        self.serializers = Registry()


class _Table(dict):  # type: ignore[type-arg]
    """What a Faust table offers here: ``data``, the key hooks, the changelog."""

    key_type = value_type = None
    key_serializer = value_serializer = "json"
    changelog_topic = SimpleNamespace(get_topic_name=lambda: "t-changelog")

    def __init__(self, log: list[Any], partition: int) -> None:
        super().__init__()
        self.data: dict[Any, Any] = {}
        self.log = log
        self.partition = partition

    def __setitem__(self, key: Any, value: Any) -> None:
        self.on_key_set(key, value)
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        self.on_key_del(key)
        del self.data[key]

    def on_key_set(self, key: Any, value: Any) -> None:
        raise AssertionError("the changelog is sent at once")

    def on_key_del(self, key: Any) -> None:
        raise AssertionError("the changelog is sent at once")

    def partition_for_key(self, key: Any) -> int:
        return self.partition

    def send_changelog(self, partition: int, key: Any, value: Any, **kw: Any) -> None:
        self.log.append(("changelog", partition, key, value))


def test_hooks_run_before_the_flush_that_precedes_a_commit() -> None:
    app = _App()
    barrier = CommitBarrier(app)
    barrier.add(lambda: app.log.append("first"))
    barrier.add(lambda: app.log.append("second"))
    barrier.add(lambda: app.log.append("forwards"), first=True)
    asyncio.run(app.producer.flush())
    assert app.log == ["forwards", "first", "second", "flush"]


def test_many_writes_of_a_key_become_one_record_with_the_latest_value() -> None:
    app = _App()
    table = _Table(app.log, partition=3)
    changelog = CoalescedChangelog(app, table, "events", CommitBarrier(app))
    for n in range(100):
        table["gongan"] = {"n": n}
    table["shuiwu"] = {"n": 1}
    del table["shuiwu"]
    changelog.set("minzheng", {"n": 7}, partition=5)
    assert table.data["gongan"] == {"n": 99}  # reads see every write at once
    assert app.log == []
    asyncio.run(app.producer.flush())
    # one record batch per partition, encoded as Faust's changelog would encode them
    assert app.log == [("batch", "t-changelog", 3, [(b'"gongan"', b'{"n":99}'),
                                                    (b'"shuiwu"', None)]),
                       ("batch", "t-changelog", 5, [(b'"minzheng"', b'{"n":7}')]), "flush"]
    asyncio.run(app.producer.flush())
    assert app.log[-1] == "flush" and len(app.log) == 4  # nothing twice


def test_records_are_encoded_as_fausts_changelog_encodes_them() -> None:
    app = _App()
    table = _Table(app.log, partition=0)
    CoalescedChangelog(app, table, "events", CommitBarrier(app))
    key, value = ("gongan", (1.7e9, 1.7e9 + 3600.0)), {"n": 3, "e": ["x"], "u": {"0": 5}}
    table[key] = value
    asyncio.run(app.producer.flush())
    registry = Registry()
    assert app.log[0][3] == [(registry.dumps_key(None, key, serializer="json"),
                              registry.dumps_value(None, value, serializer="json"))]
    assert registry.loads_key(None, app.log[0][3][0][0], serializer="json") == \
        ["gongan", [1.7e9, 1.7e9 + 3600.0]]


def test_without_an_aiokafka_producer_records_go_through_fausts_changelog() -> None:
    app = _App(threaded=True)
    table = _Table(app.log, partition=3)
    CoalescedChangelog(app, table, "events", CommitBarrier(app))
    table["gongan"] = {"n": 1}
    table["gongan"] = {"n": 2}
    asyncio.run(app.producer.flush())
    assert app.log == [("changelog", 3, "gongan", {"n": 2}), "flush"]


def test_a_delete_after_a_write_sends_the_delete() -> None:
    app = _App()
    table = _Table(app.log, partition=0)
    changelog = CoalescedChangelog(app, table, "events", CommitBarrier(app))
    table["k"] = 1
    changelog.delete("k", partition=0)
    asyncio.run(app.producer.flush())
    assert app.log == [("batch", "t-changelog", 0, [(b'"k"', None)]), "flush"]


def test_records_of_a_partition_that_moved_away_are_dropped() -> None:
    app = _App()

    assignor = SimpleNamespace(assigned_actives=lambda: {TP("events", 1), TP("other", 2)})
    app.assignor = assignor  # type: ignore[attr-defined]
    table = _Table(app.log, partition=1)
    changelog = CoalescedChangelog(app, table, "events", CommitBarrier(app))
    table["kept"] = 1
    changelog.set("moved", 2, partition=2)  # e.g. a timer that raced the rebalance
    asyncio.run(app.producer.flush())
    assert app.log == [("batch", "t-changelog", 1, [(b'"kept"', b"1")]), "flush"]


class _Refusing(_Kafka):
    """A broker that refuses the first ``refusals`` batches it is sent."""

    def __init__(self, log: list[Any], refusals: int) -> None:
        super().__init__(log)
        self.refusals = refusals

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[None]:
        delivered = await super().send_batch(batch, topic, partition)
        if self.refusals:
            self.refusals -= 1
            delivered = asyncio.get_running_loop().create_future()
            delivered.set_exception(RuntimeError("NOT_LEADER_OR_FOLLOWER"))
        return delivered


def test_a_refused_changelog_batch_is_sent_again_before_the_commit_goes_on() -> None:
    """The broker refuses a batch: it is sent again (the same records), and the hook
    returns only once every batch is delivered, so the commit after it waits."""
    from jiancha.agents.runtime.commit_barrier import send_batches

    log: list[Any] = []
    kafka = _Refusing(log, refusals=2)
    records = {0: [(b"k1", b"v1"), (b"k2", None)], 1: [(b"k3", b"v3")]}
    asyncio.run(send_batches(kafka, "cases-changelog", records, max_backoff=0.01))
    sent = [(partition, recs) for _, _, partition, recs in log]
    assert sent[:2] == [(0, records[0]), (1, records[1])]  # both refused
    assert sent[2:] == [(0, records[0]), (1, records[1])]  # and both sent again, once
