"""Waiting for a condition, not for a number of seconds: poll until it holds, or fail after
``timeout`` saying what was awaited. A fixed sleep is left only where the passing of time is
itself the point (a clock that must advance, an interval within which nothing may come)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.05) -> T:
    """The first true value of ``predicate()``, polled every ``interval`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(interval)


async def wait_for_async(predicate: Callable[[], T], timeout: float = 10.0,
                         what: str = "condition", interval: float = 0.02) -> T:
    """:func:`wait_for` inside an event loop, which runs on while it waits."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(interval)
