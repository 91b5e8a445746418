"""A per-caller token bucket for the notifier's HTTP API, in memory (per notifier process).

Each caller — a token's name once it is authenticated, the peer address while it is not
(so guessing tokens is throttled too) — has a bucket of ``burst`` requests that refills at
``rate`` per second. A request finding the bucket empty is refused with 429 and a
``Retry-After`` of the seconds until one request is allowed again. With several notifier
replicas each enforces its own bucket: the limit per caller is then per replica.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_callers: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_callers = max_callers
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)

    def take(self, caller: str) -> float:
        """0 if the request may go ahead (and counts it), else the seconds to wait."""
        now = self.clock()
        tokens, at = self._buckets.get(caller, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[caller] = (tokens, now)
            return (1 - tokens) / self.rate
        if caller not in self._buckets and len(self._buckets) >= self.max_callers:
            self._forget_full(now)
        self._buckets[caller] = (tokens - 1, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        """Drop callers whose bucket has refilled (a full bucket is the same as none), so
        that many addresses cannot grow the table without bound."""
        refill = self.burst / self.rate
        self._buckets = {c: v for c, v in self._buckets.items() if now - v[1] < refill}
        if len(self._buckets) >= self.max_callers:  # all recent: keep the newer half
            recent = sorted(self._buckets.items(), key=lambda cv: cv[1][1])[self.max_callers // 2:]
            self._buckets = dict(recent)


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
