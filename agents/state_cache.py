"""Decoded case states kept between batches, so that a case's next event need not decode
its state from the table again.

The case table holds each state encoded (about 700 bytes a case: the memory target is per
open case), and decoding one took ~4-5 µs, about a twelfth of a worker's time per event.
Most events belong to a case that had an event a little earlier, so the supervisor keeps
the states it wrote last, decoded, up to a bound. A kept state is used only while the
table still holds the very bytes it was written as: a write from anywhere else, a
recovery from the changelog or a revoked partition each leave other bytes (or none)
there, and the state is decoded again.
"""

from __future__ import annotations

from rules.case import CaseState


class StateCache:
    """The decoded states last written, by table key, least recently written first."""

    __slots__ = ("_kept", "capacity", "hits", "misses")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._kept: dict[bytes, tuple[bytes, CaseState]] = {}
        self.hits = 0
        self.misses = 0

    def take(self, key: bytes, stored: bytes) -> CaseState:
        """The state stored as ``stored`` under ``key``: the kept one if it was written as
        exactly these bytes, else decoded. Taken out of the cache either way: the caller
        changes it, and it is kept again only when written (a batch that fails half-way
        leaves no changed state behind)."""
        kept = self._kept.pop(key, None)
        if kept is not None and kept[0] is stored:
            self.hits += 1
            return kept[1]
        self.misses += 1
        return CaseState.decode(stored)

    def keep(self, key: bytes, stored: bytes, state: CaseState) -> None:
        """``state`` was just written to the table as ``stored``."""
        if self.capacity <= 0:
            return
        kept = self._kept
        kept.pop(key, None)  # to the most recent end
        kept[key] = (stored, state)
        if len(kept) > self.capacity:
            del kept[next(iter(kept))]

    def clear(self) -> None:
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)
