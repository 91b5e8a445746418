"""tests/wait.py: a wait returns the condition's first true value, or fails naming it."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.wait import wait_for, wait_for_async


def test_a_wait_returns_the_first_true_value() -> None:
    polls = itertools.count()
    assert wait_for(lambda: next(polls) >= 3 and "ready", interval=0.001) == "ready"
    assert next(polls) == 4


def test_a_wait_that_times_out_says_what_it_awaited() -> None:
    with pytest.raises(AssertionError, match=r"the broker's answer not met within 0\.05s"):
        wait_for(lambda: None, timeout=0.05, what="the broker's answer", interval=0.01)


def test_an_async_wait_lets_the_loop_run() -> None:
    async def main() -> list[int]:
        done: list[int] = []
        asyncio.get_running_loop().call_later(0.02, done.append, 1)
        return await wait_for_async(lambda: done, timeout=5)

    assert asyncio.run(main()) == [1]
    with pytest.raises(AssertionError, match=r"nothing not met within 0\.05s"):
        asyncio.run(wait_for_async(lambda: 0, timeout=0.05, what="nothing"))
