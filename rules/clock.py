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

    def at(self, unix_time: float) -> datetime:
        """What this clock showed at real unix time ``unix_time`` (e.g. a Kafka timestamp)."""
        ...

    def at_epoch(self, unix_time: float) -> float:
        """:meth:`at` in epoch seconds (per record on a busy worker: no datetime built)."""
        ...

    def now_epoch(self) -> float:
        """:meth:`now` in epoch seconds."""
        ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def at(self, unix_time: float) -> datetime:
        return datetime.fromtimestamp(unix_time, UTC)

    def at_epoch(self, unix_time: float) -> float:
        return unix_time

    def now_epoch(self) -> float:
        return time.time()


class SimulatedClock:
    def __init__(self, start: datetime, speed: float = 1.0, anchor: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("SimulatedClock start needs a time zone offset")
        self.start = start
        self.speed = speed
        self.anchor = time.time() if anchor is None else anchor
        self._start_epoch = start.timestamp()

    def now(self) -> datetime:
        return self.at(time.time())

    def at(self, unix_time: float) -> datetime:
        return self.start + timedelta(seconds=(unix_time - self.anchor) * self.speed)

    def at_epoch(self, unix_time: float) -> float:
        return self._start_epoch + (unix_time - self.anchor) * self.speed

    def now_epoch(self) -> float:
        return self.at_epoch(time.time())

    def real_time_of(self, instant: datetime) -> float:
        """The real unix time at which this clock shows ``instant``."""
        return self.anchor + (instant - self.start).total_seconds() / self.speed

    def real_seconds_until(self, instant: datetime) -> float:
        return (instant - self.now()).total_seconds() / self.speed


class EventTimeClock:
    """Replay's clock: the latest instant seen, also kept in epoch seconds (replay asks
    for it several times per line, and a zone-aware ``timestamp()`` is not free)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(1970, 1, 1, tzinfo=UTC)
        self._now_ts = self._now.timestamp()

    def now(self) -> datetime:
        return self._now

    def at(self, unix_time: float) -> datetime:
        return self._now

    def at_epoch(self, unix_time: float) -> float:
        return self._now_ts

    def now_epoch(self) -> float:
        return self._now_ts

    def advance(self, instant: datetime, instant_ts: float | None = None) -> None:
        """Move forward to ``instant`` (``instant_ts``: the same in epoch seconds, if the
        caller has it); never backwards (events may arrive out of order)."""
        ts = instant.timestamp() if instant_ts is None else instant_ts
        if ts > self._now_ts:
            self._now, self._now_ts = instant, ts


def make_clock(start: datetime | None, speed: float = 1.0, anchor: float | None = None) -> Clock:
    """The wall clock, or a simulated one when ``start`` is given (settings clock_*)."""
    return WallClock() if start is None else SimulatedClock(start, speed, anchor)
