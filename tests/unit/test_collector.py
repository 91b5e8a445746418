"""Replay runs with the worker's collector settings (rules/collector.py), and leaves the
process's own settings as they were (the worker's own: tests/unit/test_settings.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import orjson
import pytest

from jiancha.rules.collector import YOUNG_THRESHOLD, tuned_collector
from jiancha.rules.replay import replay
from jiancha.rules.replay_parallel import replay_parallel
from tests.unit.eventkit_integrity import engine, ev
from tests.unit.test_reads import BASE, UNTIL

ENGINE = engine()
LINE = orjson.dumps(ev("C1", "submitted", BASE))


def _watched(seen: list[tuple[int, int, int]]) -> Iterator[bytes]:
    """One event, noting the collector's thresholds while replay reads it."""
    seen.append(gc.get_threshold())
    yield LINE


@pytest.mark.parametrize("workers", [1, 2])
def test_replay_runs_at_the_workers_threshold_and_restores_it(workers: int) -> None:
    before = gc.get_threshold()
    gc.set_threshold(777, *before[1:])  # the process's own setting
    try:
        seen: list[tuple[int, int, int]] = []
        result = replay_parallel(_watched(seen), ENGINE, UNTIL, workers=workers)
        assert result.events == 1
        assert seen and seen[0][0] == YOUNG_THRESHOLD
        assert gc.get_threshold() == (777, *before[1:])
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)


def test_a_replay_inside_a_tuned_block_leaves_the_outer_block_tuned() -> None:
    before = gc.get_threshold()
    with tuned_collector():
        frozen = gc.get_freeze_count()
        assert frozen > 0 and gc.get_threshold()[0] == YOUNG_THRESHOLD
        replay([LINE], ENGINE, UNTIL)
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() >= frozen
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

