"""The deadline index hands out what a plain heap of (due, key) would, in the same order,
and keeps which checks wait exactly (whole seconds packed, any other instant as it is)."""

from __future__ import annotations

import heapq
import math
from itertools import islice

from hypothesis import given, settings
from hypothesis import strategies as st

from jiancha.rules.schedule import BUCKET_SECONDS, NOTHING, UNKNOWN, DeadlineIndex, Due

T0 = 1_794_790_800.0


class HeapIndex:
    """The oracle: a min-heap of (due, key), a rescheduled entry superseded."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, str]] = []
        self.entries: dict[str, Due] = {}

    def put(self, key: str, due: Due) -> None:
        if due.at is None:
            self.entries.pop(key, None)
            return
        old = self.entries.get(key)
        self.entries[key] = due
        if old is None or old.at != due.at:
            heapq.heappush(self.heap, (due.at, key))

    def pop_due_entries(self, now: float) -> list[tuple[str, Due]]:
        out = []
        while self.heap and self.heap[0][0] <= now:
            at, key = heapq.heappop(self.heap)
            entry = self.entries.get(key)
            if entry is not None and entry.at == at:
                del self.entries[key]
                out.append((key, entry))
        return out

    def next_due(self) -> float | None:
        live = [d.at for d in self.entries.values() if d.at is not None]
        return min(live) if live else None


KEYS = st.sampled_from(["C1", "C2", "C10", "GZ-9", "案-1", ""])
#: whole seconds (packed), fractions, bucket edges, times far apart
ATS = st.one_of(
    st.integers(-2 * BUCKET_SECONDS, 30 * 86400).map(lambda s: T0 + s),
    st.integers(0, 10**9).map(lambda ms: T0 + ms / 1000),
    st.sampled_from([T0, T0 + BUCKET_SECONDS, T0 + BUCKET_SECONDS - 0.5, 0.5, 2.0**41,
                     1e15 + 0.25, 1_794_790_800]),  # (an int: as a caller may pass one)
    st.none())
PENDING = st.sampled_from([UNKNOWN, 0, 1, 56, 2**19, 2**40 + 3])
OPS = st.lists(st.one_of(
    st.tuples(st.just("put"), KEYS, ATS, PENDING),
    st.tuples(st.just("pop"), st.integers(-BUCKET_SECONDS, 40 * 86400).map(lambda s: T0 + s),
              st.integers(0, 3)),
    st.tuples(st.just("next")),
    st.tuples(st.just("peek"), st.integers(-BUCKET_SECONDS, 40 * 86400).map(lambda s: T0 + s),
              KEYS, st.one_of(st.none(), st.integers(0, 3 * 86400)))), max_size=40)


@settings(max_examples=400, deadline=None, database=None)
@given(OPS)
def test_the_index_agrees_with_a_heap(ops: list[tuple]) -> None:
    index: DeadlineIndex[str] = DeadlineIndex()
    oracle = HeapIndex()
    for op in ops:
        if op[0] == "put":
            _, key, at, pending = op
            index.put(key, Due(at, pending))
            oracle.put(key, Due(at, pending))
        elif op[0] == "pop":
            _, now, early = op
            expected = oracle.pop_due_entries(now)
            if early:  # a caller that stops early leaves the rest in the index
                got = list(islice(index.pop_due_entries(now), early))
                assert got == expected[:early]
                for key, due in expected[early:]:
                    oracle.put(key, due)
            else:
                assert list(index.pop_due_entries(now)) == expected
        elif op[0] == "peek":  # what is due, left in the index; one key ruled out
            _, until, skipped, back = op
            after = -math.inf if back is None else until - back
            expected = sorted((d.at, k) for k, d in oracle.entries.items()
                              if d.at is not None and after < d.at <= until and k != skipped)
            got = index.due_by(until, lambda key, skipped=skipped: key == skipped, after)
            assert [(k, (repr(d.at), d.pending)) for k, d in got] == [
                (k, (repr(oracle.entries[k].at), oracle.entries[k].pending)) for _, k in expected]
        else:
            assert index.next_due() == oracle.next_due()
        assert len(index) == len(oracle.entries)
        for key in ("C1", "C2", "C10", "GZ-9", "案-1", ""):
            got = index.get(key)
            want = oracle.entries.get(key, NOTHING)
            assert (repr(got.at), got.pending) == (repr(want.at), want.pending)
        assert index.may_be_due(T0 + 40 * 86400) == (oracle.next_due() is not None
                                                     and oracle.next_due() <= T0 + 40 * 86400)


def test_a_key_may_be_the_tables_bytes() -> None:
    index: DeadlineIndex[bytes] = DeadlineIndex()
    index.schedule(b"C2", T0, 3)
    index.schedule(b"C1", T0, 5)
    index.schedule(b"C3", T0 + 1.5)
    assert index.next_due() == T0
    assert list(index.pop_due_entries(T0 + 2)) == [
        (b"C1", Due(T0, 5)), (b"C2", Due(T0, 3)), (b"C3", Due(T0 + 1.5))]
    assert len(index) == 0 and index.next_due() is None
