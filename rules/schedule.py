"""The deadline index: which case has something due next.

Faust has no per-key timers, so the worker keeps this heap and rebuilds it from the
case table whenever partitions are assigned. Replay uses the same class.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator


class DeadlineIndex:
    """A min-heap of (due epoch, case id); rescheduling a case supersedes its old entry."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, case_id: str, due: float | None) -> None:
        if due is None:
            self._due.pop(case_id, None)
            return
        if self._due.get(case_id) == due:
            return
        self._due[case_id] = due
        heapq.heappush(self._heap, (due, case_id))

    def due(self, case_id: str) -> float | None:
        """When the case is scheduled (epoch), or None."""
        return self._due.get(case_id)

    def pop_due(self, now: float) -> Iterator[str]:
        """Case ids whose entry is due at or before ``now``, earliest first."""
        for case_id, _ in self.pop_due_with_time(now):
            yield case_id

    def pop_due_with_time(self, now: float) -> Iterator[tuple[str, float]]:
        """(case id, due epoch) of every entry due at or before ``now``, earliest first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, case_id = heapq.heappop(heap)
            if self._due.get(case_id) == due:
                del self._due[case_id]
                yield case_id, due

    def next_due(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()
        self._due.clear()

    def drop(self, case_ids: set[str]) -> None:
        for c in case_ids:
            self._due.pop(c, None)
