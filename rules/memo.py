"""A bounded memo: a dict that computes what it lacks and starts over when full.

For the hot lookups that repeat a few thousand distinct keys (a deadline per start day,
a silence's due instant, a table key's bytes): a hit is a plain dict lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(dict[K, V], Generic[K, V]):
    """``memo[key]`` is ``compute(key)``, computed once; past ``limit`` keys it is emptied
    (the keys in use come back at once, stale ones never pile up)."""

    def __init__(self, compute: Callable[[K], V], limit: int) -> None:
        super().__init__()
        self.compute = compute
        self.limit = limit

    def __missing__(self, key: K) -> V:
        if len(self) > self.limit:
            self.clear()
        value = self[key] = self.compute(key)
        return value
