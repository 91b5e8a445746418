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
    Beside each entry it keeps which checks wait (``Due.pending``)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}
        self._pending: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, case_id: str, due: float | None, pending: int = UNKNOWN) -> None:
        if due is None:
            self._due.pop(case_id, None)
            self._pending.pop(case_id, None)
            return
        self._pending[case_id] = pending
        if self._due.get(case_id) == due:
            return
        self._due[case_id] = due
        heapq.heappush(self._heap, (due, case_id))

    def put(self, case_id: str, due: Due) -> None:
        self.schedule(case_id, due.at, due.pending)

    def get(self, case_id: str) -> Due:
        """What the case waits for (``NOTHING`` when it is not scheduled)."""
        at = self._due.get(case_id)
        return NOTHING if at is None else Due(at, self._pending.get(case_id, UNKNOWN))

    def pop_due(self, now: float) -> Iterator[str]:
        """Case ids whose entry is due at or before ``now``, earliest first."""
        for case_id, _ in self.pop_due_entries(now):
            yield case_id

    def pop_due_entries(self, now: float) -> Iterator[tuple[str, Due]]:
        """(case id, what it waits for) of every entry due at or before ``now``, earliest
        first: the ``Due`` to judge it with (``Engine.judge``'s ``before``)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, case_id = heapq.heappop(heap)
            if self._due.get(case_id) == due:
                del self._due[case_id]
                yield case_id, Due(due, self._pending.pop(case_id, UNKNOWN))

    def may_be_due(self, now: float) -> bool:
        """Whether :meth:`pop_due` could yield something by ``now`` (a cheap test: it may
        say yes for an entry that was rescheduled since)."""
        return bool(self._heap) and self._heap[0][0] <= now

    def next_due(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()
        self._due.clear()
        self._pending.clear()

    def drop(self, case_ids: set[str]) -> None:
        for c in case_ids:
            self._due.pop(c, None)
            self._pending.pop(c, None)
