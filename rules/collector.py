"""The cyclic garbage collector set for a long-lived heap, the same in the worker
(``agents/worker.py``) and in replay (``rules/replay.py``, ``rules/replay_parallel.py``).

The threshold of the youngest generation counts objects made less objects freed. Taking
in events makes a wave of objects that live until the batch (or, in replay, the case)
is done with them; with Python's default of 700 the collector runs many times over that
wave and traverses it each time. Set above the wave, collections follow only the
state's lasting growth; reference counting frees the rest. What exists when the
collector is set (modules, the engine, the catalog) is frozen: left out of every
collection.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: net new objects between two collections of the youngest generation
YOUNG_THRESHOLD = 1_000_000

_depth = 0


def tune_collector(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Set the collector for the rest of the process (the worker)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
    gc.freeze()


@contextmanager
def tuned_collector(young_threshold: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """The collector set as :func:`tune_collector` sets it while the block runs, then as it
    was (a replay inside a replay, as the sharded replay's fallback is, leaves it to the
    outer one)."""
    global _depth
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    saved = gc.get_threshold()
    _depth = 1
    tune_collector(young_threshold)
    try:
        yield
    finally:
        _depth = 0
        gc.set_threshold(*saved)
        gc.unfreeze()
