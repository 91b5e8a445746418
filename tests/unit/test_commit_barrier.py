"""Changelog records coalesced between commits are sent before the producer flush that
precedes every offset commit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from agents.commit_barrier import CoalescedChangelog, before_commit


class _Producer:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def flush(self) -> None:
        self.log.append("flush")


class _App:
    def __init__(self) -> None:
        self.log: list[Any] = []
        self.producer = _Producer(self.log)


class _Table(dict):  # type: ignore[type-arg]
    """What a Faust table offers here: ``data``, the key hooks, the changelog."""

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
    before_commit(app, lambda: app.log.append("first"))
    before_commit(app, lambda: app.log.append("second"))
    before_commit(app, lambda: app.log.append("forwards"), first=True)
    asyncio.run(app.producer.flush())
    assert app.log == ["forwards", "first", "second", "flush"]


def test_many_writes_of_a_key_become_one_record_with_the_latest_value() -> None:
    app = _App()
    table = _Table(app.log, partition=3)
    changelog = CoalescedChangelog(app, table, "events")
    for n in range(100):
        table["gongan"] = {"n": n}
    table["shuiwu"] = {"n": 1}
    del table["shuiwu"]
    changelog.set("minzheng", {"n": 7}, partition=5)
    assert table.data["gongan"] == {"n": 99}  # reads see every write at once
    assert app.log == []
    asyncio.run(app.producer.flush())
    assert app.log == [("changelog", 3, "gongan", {"n": 99}), ("changelog", 3, "shuiwu", None),
                       ("changelog", 5, "minzheng", {"n": 7}), "flush"]
    asyncio.run(app.producer.flush())
    assert app.log[-1] == "flush" and len(app.log) == 5  # nothing twice


def test_a_delete_after_a_write_sends_the_delete() -> None:
    app = _App()
    table = _Table(app.log, partition=0)
    changelog = CoalescedChangelog(app, table, "events")
    table["k"] = 1
    changelog.delete("k", partition=0)
    asyncio.run(app.producer.flush())
    assert app.log == [("changelog", 0, "k", None), "flush"]


def test_records_of_a_partition_that_moved_away_are_dropped() -> None:
    app = _App()

    assignor = SimpleNamespace(assigned_actives=lambda: {TP("events", 1), TP("other", 2)})
    app.assignor = assignor  # type: ignore[attr-defined]
    table = _Table(app.log, partition=1)
    changelog = CoalescedChangelog(app, table, "events")
    table["kept"] = 1
    changelog.set("moved", 2, partition=2)  # e.g. a timer that raced the rebalance
    asyncio.run(app.producer.flush())
    assert app.log == [("changelog", 1, "kept", 1), "flush"]
