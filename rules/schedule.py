"""The deadline index: which case has something due next.

Faust has no per-key timers, so the worker keeps this index and rebuilds it from the
case table whenever partitions are assigned. Replay uses the same class.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, NamedTuple, TypeVar

#: ``Due.pending`` when it is not known which checks wait
UNKNOWN = -1


class Due(NamedTuple):
    """What a case waits for: the earliest instant (epoch) at which something not raised
    yet falls due (None: nothing), and a bit per rule-engine check with such a finding."""

    at: float | None
    pending: int = UNKNOWN


NOTHING = Due(None, 0)

#: a case key: a case id (replay) or the case table's key, its UTF-8 (the worker); both
#: sort the same way, so cases due at one instant come out in the same order
K = TypeVar("K", bound=Hashable)

#: seconds of due instants one bucket holds
BUCKET_SECONDS = 3600
#: a due kept as one integer: ``(pending + 1) << _AT_BITS | at`` for a whole-second ``at``
_AT_BITS = 40
_AT_MASK = (1 << _AT_BITS) - 1
_STALE = -math.inf  # :attr:`DeadlineIndex._next` not known


_new_tuple = tuple.__new__  # a Due built without NamedTuple's slower __new__


def _at(kept: int | Due) -> float:
    return float(kept & _AT_MASK) if type(kept) is int else kept.at  # type: ignore[operator,union-attr,return-value]


def _due(kept: int | Due) -> Due:
    if type(kept) is int:
        return _new_tuple(Due, (float(kept & _AT_MASK), (kept >> _AT_BITS) - 1))  # type: ignore[operator,arg-type]
    return kept  # type: ignore[return-value]


class DeadlineIndex(Generic[K]):
    """The cases that wait for something, by when it falls due; rescheduling a case
    supersedes its old entry. Beside each case it keeps which checks wait (a :class:`Due`).

    Kept small, for a million open cases: per case one dict entry whose value is one
    integer (the instant and the waiting checks), and the case's key once more in the
    bucket of its due instant (:data:`BUCKET_SECONDS` wide; a heap orders the buckets).
    A rescheduled case leaves its key in the old bucket until that bucket's time comes.
    Cases come out in the order of (due instant, key)."""

    def __init__(self) -> None:
        self._entries: dict[K, int | Due] = {}
        self._buckets: dict[float, list[K]] = {}
        self._starts: list[float] = []  # a heap of the buckets' numbers
        self._next: float | None = None  # the earliest due, or _STALE

    def __len__(self) -> int:
        return len(self._entries)

    def schedule(self, key: K, due: float | None, pending: int = UNKNOWN) -> None:
        self.put(key, Due(due, pending))

    def put(self, key: K, due: Due) -> None:
        at = due.at
        entries = self._entries
        if at is None:
            old = entries.pop(key, None)
            if old is not None and _at(old) == self._next:
                self._next = _STALE
            return
        pending = due.pending
        # one integer when the instant is a whole second (the engine's deadlines are)
        kept: int | Due = due
        if type(at) is float and 0 < at <= _AT_MASK and at.is_integer() and pending >= UNKNOWN:
            kept = (pending + 1) << _AT_BITS | int(at)
        old = entries.get(key)
        if old == kept:  # (an int, or a Due: a tuple) waits for what it waited for
            return
        entries[key] = kept
        old_at: float | None = None
        if old is not None:
            old_at = old & _AT_MASK if type(old) is int else old.at  # type: ignore[operator,union-attr,assignment]
            if old_at == at:  # (an int and a float compare exactly)
                return
        bucket = at // BUCKET_SECONDS
        keys = self._buckets.get(bucket)
        if keys is None:
            self._buckets[bucket] = [key]
            heapq.heappush(self._starts, bucket)
        else:
            keys.append(key)
        earliest = self._next
        if old_at is not None and old_at == earliest:
            self._next = _STALE
        elif earliest != _STALE and (earliest is None or at < earliest):
            self._next = at

    def get(self, key: K) -> Due:
        """What the case waits for (``NOTHING`` when it is not scheduled)."""
        kept = self._entries.get(key)
        if type(kept) is int:  # (as _due, without the call: once per event)
            return _new_tuple(Due, (float(kept & _AT_MASK), (kept >> _AT_BITS) - 1))  # type: ignore[operator,arg-type]
        return NOTHING if kept is None else kept  # type: ignore[return-value]

    def pop_due(self, now: float) -> Iterator[K]:
        """Keys of the cases due at or before ``now``, earliest first."""
        for key, _ in self.pop_due_entries(now):
            yield key

    def pop_due_entries(self, now: float) -> Iterator[tuple[K, Due]]:
        """(key, what it waits for) of every case due at or before ``now``, earliest
        first: the ``Due`` to judge it with (``Engine.judge``'s ``before``). A case is
        taken off the index as it is yielded."""
        if not self.may_be_due(now):
            return
        buckets, starts, entries = self._buckets, self._starts, self._entries
        while starts and starts[0] * BUCKET_SECONDS <= now:
            bucket = starts[0]
            keys = buckets[bucket]
            due: list[tuple[float, K]] = []
            later: list[K] = []
            seen: set[K] = set()
            for key in keys:
                kept = entries.get(key)
                if kept is None or key in seen:
                    continue
                at = _at(kept)
                if at // BUCKET_SECONDS != bucket:
                    continue  # rescheduled into another bucket
                seen.add(key)
                if at <= now:
                    due.append((at, key))
                else:
                    later.append(key)
            due.sort()
            # the due stay listed until yielded: a caller may stop early (islice)
            keys = buckets[bucket] = later + [key for _, key in due]
            for at, key in due:
                kept = entries.get(key)
                if kept is None or _at(kept) != at:
                    continue
                del entries[key]
                self._next = _STALE
                yield key, _due(kept)
            if later:
                return  # the rest of this bucket is after now, and so is every later one
            if buckets[bucket] is keys and len(keys) == len(due):  # none added meanwhile
                del buckets[bucket]
                heapq.heappop(starts)

    def due_by(self, until: float, skip: Callable[[K], bool] | None = None,
               after: float = -math.inf) -> list[tuple[K, Due]]:
        """(key, what it waits for) of every case due after ``after`` and at or before
        ``until`` that ``skip`` does not rule out, earliest first, left in the index (see
        :meth:`pop_due_entries`, which takes them off)."""
        if not self.may_be_due(until):
            return []
        entries = self._entries
        due: list[tuple[float, K]] = []
        first = after // BUCKET_SECONDS if after != -math.inf else after  # (-inf // n is nan)
        for bucket in sorted(b for b in self._starts
                             if first <= b and b * BUCKET_SECONDS <= until):
            for key in dict.fromkeys(self._buckets.get(bucket, ())):
                if skip is not None and skip(key):
                    continue
                kept = entries.get(key)
                if kept is not None and (at := _at(kept)) // BUCKET_SECONDS == bucket \
                        and after < at <= until:
                    due.append((at, key))
        due.sort()
        return [(key, _due(entries[key])) for _, key in due]

    def may_be_due(self, now: float) -> bool:
        """Whether :meth:`pop_due` would yield something by ``now``."""
        earliest = self.next_due()
        return earliest is not None and earliest <= now

    def next_due(self) -> float | None:
        earliest = self._next
        if earliest != _STALE:
            return earliest
        buckets, starts, entries = self._buckets, self._starts, self._entries
        while starts:
            bucket = starts[0]
            valid: dict[K, float] = {}
            for key in buckets[bucket]:
                kept = entries.get(key)
                if kept is not None:
                    at = _at(kept)
                    if at // BUCKET_SECONDS == bucket:
                        valid[key] = at
            if valid:
                buckets[bucket] = list(valid)
                self._next = earliest = min(valid.values())
                return earliest
            del buckets[bucket]
            heapq.heappop(starts)
        self._next = None
        return None

    def clear(self) -> None:
        self._entries.clear()
        self._buckets.clear()
        self._starts.clear()
        self._next = None

    def drop(self, keys: set[K]) -> None:
        for key in keys:
            self._entries.pop(key, None)
        self._next = _STALE
