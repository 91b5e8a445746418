"""Partition offsets: the committed offset from Faust's consumer bookkeeping, the end offset
and position from its public methods."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP

from jiancha.agents.runtime import PartitionOffsets


def test_the_committed_offset_is_the_consumers_and_none_before_a_commit() -> None:
    app = faust.App("offsets-test", broker="kafka://localhost:9", store="memory://",
                    autodiscover=False)
    offsets = PartitionOffsets(app, "events")
    assert offsets.committed(3) is None
    app.consumer._committed_offset[TP("events", 3)] = 42
    app.consumer._committed_offset[TP("other", 4)] = 7
    assert offsets.committed(3) == 42
    assert offsets.committed(4) is None  # another topic's partition 4


def test_the_end_and_position_of_the_topics_partition() -> None:
    asked: list[Any] = []

    async def position(tp: TP) -> int:
        asked.append(("position", tp))
        return 11

    def highwater(tp: TP) -> int:
        asked.append(("end", tp))
        return 20

    app: Any = SimpleNamespace(consumer=SimpleNamespace(highwater=highwater, position=position))
    offsets = PartitionOffsets(app, "events")
    assert offsets.end(2) == 20
    assert asyncio.run(offsets.position(2)) == 11
    assert asked == [("end", TP("events", 2)), ("position", TP("events", 2))]


def test_no_committed_offset_is_known_without_faust_bookkeeping() -> None:
    app: Any = SimpleNamespace(consumer=SimpleNamespace())
    assert PartitionOffsets(app, "events").committed(0) is None
