"""Counted time, as 行政许可法 counts it: the one module every time rule asks.

Time is measured in *working seconds*: each working day contributes its 86,400 seconds
(00:00–24:00 local time), every other day none. Then

- a limit of N working days from an event on day D ends at 24:00 of the N-th working day
  after D (the start day is not counted, Art. 82): ``working_deadline``;
- suspensions for Art. 45 reasons stop the clock: their working seconds are added to the
  deadline (``counted_deadline``) and left out of the time used (``counted_seconds``).

Working seconds since a fixed origin are computed from a per-year prefix sum, so a
deadline costs a few dictionary lookups, not a walk over days.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from rules.calendar import WorkingCalendar

DAY = 86_400
ORIGIN = date(2004, 1, 1)  # the first year of the official calendar data

#: A suspension interval as instants; ``end`` None while still suspended.
Pause = tuple[datetime, datetime | None]


class WorkingTime:
    """Working-second arithmetic over a :class:`WorkingCalendar` in one time zone."""

    def __init__(self, calendar: WorkingCalendar, tz: tzinfo) -> None:
        self.calendar = calendar
        self.tz = tz
        # year -> (working days before Jan 1 counted from ORIGIN, day offsets of workdays)
        self._years: dict[int, tuple[int, list[int]]] = {}

    # --- day-level ------------------------------------------------------------------

    def _year(self, year: int) -> tuple[int, list[int]]:
        cached = self._years.get(year)
        if cached is not None:
            return cached
        if year < ORIGIN.year:
            raise ValueError(f"dates before {ORIGIN} are not supported by the counted-time clock")
        before = 0 if year == ORIGIN.year else self._year(year - 1)[0] + len(self._year(year - 1)[1])
        first = date(year, 1, 1)
        n_days = (date(year + 1, 1, 1) - first).days
        offsets = [n for n in range(n_days) if self.calendar.is_workday(first + timedelta(n))]
        self._years[year] = (before, offsets)
        return before, offsets

    def workdays_before(self, day: date) -> int:
        """Working days from ORIGIN up to, not including, ``day``."""
        before, offsets = self._year(day.year)
        return before + bisect.bisect_left(offsets, day.timetuple().tm_yday - 1)

    def is_workday(self, day: date) -> bool:
        _, offsets = self._year(day.year)
        n = day.timetuple().tm_yday - 1
        i = bisect.bisect_left(offsets, n)
        return i < len(offsets) and offsets[i] == n

    def nth_workday(self, index: int) -> date:
        """The working day with ``workdays_before(day) == index``."""
        year = ORIGIN.year
        # jump close by assuming ~250 working days a year, then walk
        year += max(0, index // 260 - 1)
        while True:
            before, offsets = self._year(year)
            if index < before:
                year -= 1
                continue
            if index < before + len(offsets):
                return date(year, 1, 1) + timedelta(offsets[index - before])
            year += 1

    # --- instant-level ----------------------------------------------------------------

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz)

    def working_seconds(self, instant: datetime) -> float:
        """Working seconds from ORIGIN 00:00 local to ``instant`` (monotonic)."""
        loc = instant.astimezone(self.tz)
        day = loc.date()
        base = self.workdays_before(day) * DAY
        if not self.is_workday(day):
            return float(base)
        midnight = datetime.combine(day, time(), self.tz)
        return base + (loc - midnight).total_seconds()

    def instant_at(self, ws: float) -> datetime:
        """The earliest instant at which ``working_seconds`` reaches ``ws``.

        A whole number of days lands on 24:00 of the last working day, shown as 00:00 of
        the next calendar day.
        """
        index, rest = divmod(ws, DAY)
        if rest == 0 and index > 0:
            day = self.nth_workday(int(index) - 1)
            return datetime.combine(day + timedelta(1), time(), self.tz)
        day = self.nth_workday(int(index))
        return datetime.combine(day, time(), self.tz) + timedelta(seconds=rest)

    def count_start(self, start: datetime) -> float:
        """Counting begins at 24:00 of the start day (the start day is not counted)."""
        next_day = self.local(start).date() + timedelta(1)
        return float(self.workdays_before(next_day) * DAY)

    def working_deadline(self, start: datetime, days: int) -> datetime:
        """24:00 local of the ``days``-th working day after the day of ``start``."""
        return self.instant_at(self.count_start(start) + days * DAY)

    def counted_deadline(
        self, start: datetime, days: float, pauses: Sequence[Pause] = ()
    ) -> datetime | None:
        """Deadline of ``days`` working days from ``start`` with the clock stopped during
        ``pauses`` (sorted, non-overlapping). None while a pause before it is still open."""
        target = self.count_start(start) + days * DAY
        origin = self.count_start(start)
        for p_start, p_end in pauses:
            ws_a = max(self.working_seconds(p_start), origin)
            if ws_a >= target:
                break
            if p_end is None:
                return None
            ws_b = self.working_seconds(p_end)
            if ws_b > ws_a:
                target += ws_b - ws_a
        return self.instant_at(target)

    def counted_seconds(self, start: datetime, until: datetime, pauses: Sequence[Pause] = ()) -> float:
        """Working seconds used between the count start and ``until``, pauses left out."""
        origin = self.count_start(start)
        end = self.working_seconds(until)
        used = max(0.0, end - origin)
        for p_start, p_end in pauses:
            a = max(self.working_seconds(p_start), origin)
            b = min(self.working_seconds(p_end) if p_end else end, end)
            if b > a:
                used -= b - a
        return max(0.0, used)

    def counted_days(self, start: datetime, until: datetime, pauses: Sequence[Pause] = ()) -> float:
        return self.counted_seconds(start, until, pauses) / DAY


def utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)
