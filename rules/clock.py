"""Clocks the engine judges deadlines by.

- :class:`WallClock`: production, real time.
- :class:`SimulatedClock`: a wall clock shifted to ``start`` and running ``speed`` times
  faster, anchored at a real instant so that several processes (worker, simulator) share it.
- :class:`EventTimeClock`: replay; the latest ``occurred_at`` seen, moved by hand.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    def __init__(self, start: datetime, speed: float = 1.0, anchor: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("SimulatedClock start needs a time zone offset")
        self.start = start
        self.speed = speed
        self.anchor = time.time() if anchor is None else anchor

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.speed)

    def real_seconds_until(self, instant: datetime) -> float:
        return (instant - self.now()).total_seconds() / self.speed


class EventTimeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(1970, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, instant: datetime) -> None:
        """Move forward to ``instant``; never backwards (events may arrive out of order)."""
        if instant > self._now:
            self._now = instant
