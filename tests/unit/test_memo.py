"""The bounded memo computes each key once and starts over when full."""

from __future__ import annotations

from jiancha.rules.memo import BoundedMemo


def test_computes_once_and_starts_over_past_its_limit() -> None:
    calls: list[int] = []

    def square(n: int) -> int:
        calls.append(n)
        return n * n

    memo: BoundedMemo[int, int] = BoundedMemo(square, 2)
    assert [memo[2], memo[2], memo[3]] == [4, 4, 9]
    assert calls == [2, 3]
    assert (memo[4], memo[5]) == (16, 25)  # past the limit: emptied, then 5 kept
    assert calls == [2, 3, 4, 5]
    assert 2 not in memo and memo[5] == 25 and calls[-1] == 5
