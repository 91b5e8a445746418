"""The deadline index: which case has something due next.

Faust has no per-key timers, so the worker keeps this heap and rebuilds it from the
case table whenever partitions are assigned. Replay uses the same class.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import NamedTuple

#: ``Due.pending`` when it is not known which checks wait
UNKNOWN = -1


class Due(NamedTuple):
    """What a case waits for: the earliest instant (epoch) at which something not raised
    yet falls due (None: nothing), and a bit per rule-engine check with such a finding."""

    at: float | None
    pending: int = UNKNOWN


NOTHING = Due(None, 0)


class DeadlineIndex:
    """A min-heap of (due epoch, case id); rescheduling a case supersedes its old entry.
    Beside each entry it keeps which checks wait: the :class:`Due` it was given, handed
    back as it is (no tuple built per lookup)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._entries: dict[str, Due] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def schedule(self, case_id: str, due: float | None, pending: int = UNKNOWN) -> None:
        self.put(case_id, Due(due, pending))

    def put(self, case_id: str, due: Due) -> None:
        at = due.at
        entries = self._entries
        if at is None:
            entries.pop(case_id, None)
            return
        old = entries.get(case_id)
        entries[case_id] = due
        if old is None or old.at != at:
            heapq.heappush(self._heap, (at, case_id))

    def get(self, case_id: str) -> Due:
        """What the case waits for (``NOTHING`` when it is not scheduled)."""
        return self._entries.get(case_id, NOTHING)

    def pop_due(self, now: float) -> Iterator[str]:
        """Case ids whose entry is due at or before ``now``, earliest first."""
        for case_id, _ in self.pop_due_entries(now):
            yield case_id

    def pop_due_entries(self, now: float) -> Iterator[tuple[str, Due]]:
        """(case id, what it waits for) of every entry due at or before ``now``, earliest
        first: the ``Due`` to judge it with (``Engine.judge``'s ``before``)."""
        heap, entries = self._heap, self._entries
        while heap and heap[0][0] <= now:
            at, case_id = heapq.heappop(heap)
            entry = entries.get(case_id)
            if entry is not None and entry.at == at:
                del entries[case_id]
                yield case_id, entry

    def may_be_due(self, now: float) -> bool:
        """Whether :meth:`pop_due` could yield something by ``now`` (a cheap test: it may
        say yes for an entry that was rescheduled since)."""
        return bool(self._heap) and self._heap[0][0] <= now

    def next_due(self) -> float | None:
        heap, entries = self._heap, self._entries
        while heap:
            entry = entries.get(heap[0][1])
            if entry is not None and entry.at == heap[0][0]:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def clear(self) -> None:
        self._heap.clear()
        self._entries.clear()

    def drop(self, case_ids: set[str]) -> None:
        for c in case_ids:
            self._entries.pop(c, None)
