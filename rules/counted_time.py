"""Counted time, as 行政许可法 counts it: the one module every time rule asks.

Time is measured in *working seconds*: each working day contributes its 86,400 seconds
(00:00–24:00 local time), every other day none. Then

- a limit of N working days from an event on day D ends at 24:00 of the N-th working day
  after D (the start day is not counted, Art. 82): ``working_deadline``;
- suspensions for Art. 45 reasons stop the clock: their working seconds are added to the
  deadline (``counted_deadline``) and left out of the time used (``counted_seconds``).

Working seconds since a fixed origin are computed from a per-year prefix sum, so a
deadline costs a few dictionary lookups, not a walk over days.

A limit another law sets in calendar days (日) is counted as 民法典 第二百零一条–第二百零三条
count it: ``calendar_deadline_at`` (every day counts, the start day does not, a last day
that is a rest day or statutory holiday moves the end to 24:00 of the next working day).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from .calendar import WorkingCalendar
from .memo import BoundedMemo

DAY = 86_400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
ORIGIN = date(2004, 1, 1)  # the first year of the official calendar data

#: A suspension interval as instants; ``end`` None while still suspended.
Pause = tuple[datetime, datetime | None]
#: The same in epoch seconds.
EpochPause = tuple[float, float | None]


class WorkingTime:
    """Working-second arithmetic over a :class:`WorkingCalendar` in one time zone.

    Days are numbered from ORIGIN; ``_cum[i]`` counts the working days before day ``i`` and
    ``_workdays`` lists the numbers of the working days, both extended a year at a time as
    dates need them. For a zone with a fixed UTC offset (Asia/Shanghai since 1991) local
    dates come from epoch arithmetic, not from datetime conversions: every deadline is a
    few integer operations.
    """

    def __init__(self, calendar: WorkingCalendar, tz: tzinfo) -> None:
        self.calendar = calendar
        # tables cover whole years, also years in between that no date was asked about:
        # they are built without a word and a fallback year is noted (warning, metric) only
        # once a lookup falls in it
        self._is_workday: Callable[[date], bool] = getattr(
            calendar, "is_workday_unnoted", calendar.is_workday)
        self._knows: Callable[[int], bool] | None = getattr(calendar, "knows", None)
        self._note_fallback: Callable[[int], None] | None = getattr(calendar, "note_fallback", None)
        self._unnoted: dict[int, tuple[int, int]] = {}  # fallback year -> its day numbers [a, b)
        self._unnoted_from = self._unnoted_to = 0  # the span of _unnoted, empty when equal
        self.tz = tz
        self._cum: list[int] = [0]  # _cum[i]: working days before day i; len = days known + 1
        self._workdays: list[int] = []  # day numbers of working days, ascending
        self._origin_ordinal = ORIGIN.toordinal()
        #: the zone's UTC offset in seconds when it has not changed since ORIGIN, else None
        self.fixed_offset = self._offset = _fixed_offset(tz)
        #: (local epoch day, days) -> deadline: a deadline with no pause depends on the day
        #: of its start only, and the same few hundred days start most cases' clocks
        self._from_day: BoundedMemo[tuple[int, float], float] = BoundedMemo(
            self._deadline_from_day, 100_000)
        #: (local day, days, extension) -> end of a calendar-day limit with no pause
        self._calendar_from_day: BoundedMemo[tuple[int, float, float], float | None] = \
            BoundedMemo(self._calendar_end_from_day, 100_000)

    # --- day-level ------------------------------------------------------------------

    def _extend_to(self, day_number: int) -> None:
        """Make the tables cover ``day_number`` (whole years at a time)."""
        if day_number < 0:
            raise ValueError(f"dates before {ORIGIN} are not supported by the counted-time clock")
        cum, workdays, is_workday = self._cum, self._workdays, self._is_workday
        while len(cum) <= day_number + 1:
            n = len(cum) - 1  # first day not yet covered
            year = date.fromordinal(self._origin_ordinal + n).year
            end = date(year + 1, 1, 1).toordinal() - self._origin_ordinal
            for i in range(n, end):
                if is_workday(date.fromordinal(self._origin_ordinal + i)):
                    workdays.append(i)
                cum.append(len(workdays))
            if self._knows is not None and not self._knows(year):
                self._unnoted[year] = (n, end)
                self._unnoted_span()

    def _unnoted_span(self) -> None:
        spans = self._unnoted.values()
        self._unnoted_from = min((a for a, _ in spans), default=0)
        self._unnoted_to = max((b for _, b in spans), default=0)

    def _used(self, day_number: int) -> None:
        """A lookup fell on ``day_number``: note its year if it is a fallback year."""
        year = date.fromordinal(self._origin_ordinal + day_number).year
        if self._unnoted.pop(year, None) is not None:
            self._unnoted_span()
            if self._note_fallback is not None:
                self._note_fallback(year)

    def _day_number(self, day: date) -> int:
        return day.toordinal() - self._origin_ordinal

    def workdays_before(self, day: date) -> int:
        """Working days from ORIGIN up to, not including, ``day``."""
        i = day.toordinal() - self._origin_ordinal
        if i + 1 >= len(self._cum) or i < 0:
            self._extend_to(i)
        if self._unnoted_from <= i < self._unnoted_to:
            self._used(i)
        return self._cum[i]

    def is_workday(self, day: date) -> bool:
        i = day.toordinal() - self._origin_ordinal
        if i + 1 >= len(self._cum) or i < 0:
            self._extend_to(i)
        if self._unnoted_from <= i < self._unnoted_to:
            self._used(i)
        return self._cum[i + 1] > self._cum[i]

    def nth_workday(self, index: int) -> date:
        """The working day with ``workdays_before(day) == index``."""
        return date.fromordinal(self._origin_ordinal + self._nth_workday_number(index))

    def _nth_workday_number(self, index: int) -> int:
        workdays = self._workdays
        while index >= len(workdays):
            self._extend_to(len(self._cum))  # the next year
        n = workdays[index]
        if self._unnoted_from <= n < self._unnoted_to:
            self._used(n)
        return n

    # --- instant-level ----------------------------------------------------------------

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz)

    def _split(self, instant: datetime) -> tuple[int, float]:
        """(local day number, seconds since local midnight) of an instant."""
        if self._offset is not None:
            return self._split_epoch(instant.timestamp(), self._offset)
        loc = instant.astimezone(self.tz)
        midnight = datetime.combine(loc.date(), time(), self.tz)
        return self._day_number(loc.date()), (loc - midnight).total_seconds()

    def _split_epoch(self, ts: float, offset: int) -> tuple[int, float]:
        """:meth:`_split` of epoch seconds in a zone of fixed ``offset``."""
        local = ts + offset
        days = int(local // DAY)
        return days - self._origin_ordinal + _EPOCH_ORDINAL, local - days * DAY

    def _midnight(self, day_number: int) -> datetime:
        if self._offset is not None:
            ts = (day_number + self._origin_ordinal - _EPOCH_ORDINAL) * DAY - self._offset
            return datetime.fromtimestamp(ts, self.tz)
        return datetime.combine(date.fromordinal(self._origin_ordinal + day_number), time(), self.tz)

    def working_seconds(self, instant: datetime) -> float:
        """Working seconds from ORIGIN 00:00 local to ``instant`` (monotonic)."""
        return self._working_seconds_split(*self._split(instant))

    def working_seconds_at(self, ts: float) -> float:
        """:meth:`working_seconds` of epoch seconds."""
        if self._offset is None:
            return self.working_seconds(datetime.fromtimestamp(ts, self.tz))
        return self._working_seconds_split(*self._split_epoch(ts, self._offset))

    def _working_seconds_split(self, i: int, seconds: float) -> float:
        cum = self._cum
        if i + 1 >= len(cum) or i < 0:
            self._extend_to(i)
        if self._unnoted_from <= i < self._unnoted_to:
            self._used(i)
        base = cum[i] * DAY
        return float(base) if cum[i + 1] == cum[i] else base + seconds

    def instant_at(self, ws: float) -> datetime:
        """The earliest instant at which ``working_seconds`` reaches ``ws``.

        A whole number of days lands on 24:00 of the last working day, shown as 00:00 of
        the next calendar day.
        """
        index, rest = divmod(ws, DAY)
        if rest == 0 and index > 0:
            return self._midnight(self._nth_workday_number(int(index) - 1) + 1)
        return self._midnight(self._nth_workday_number(int(index))) + timedelta(seconds=rest)

    def instant_epoch(self, ws: float) -> float:
        """:meth:`instant_at` in epoch seconds (no datetime built in a zone of fixed offset)."""
        offset = self._offset
        if offset is None:
            return self.instant_at(ws).timestamp()
        index, rest = divmod(ws, DAY)
        if rest == 0 and index > 0:
            day = self._nth_workday_number(int(index) - 1) + 1
        else:
            day = self._nth_workday_number(int(index))
        return (day + self._origin_ordinal - _EPOCH_ORDINAL) * DAY - offset + rest

    def count_start(self, start: datetime) -> float:
        """Counting begins at 24:00 of the start day (the start day is not counted)."""
        return self._count_after(self._split(start)[0])

    def _count_after(self, day_number: int) -> float:
        i = day_number + 1
        cum = self._cum
        if i + 1 >= len(cum) or i < 1:
            self._extend_to(i - 1)  # refuses days before ORIGIN
        if self._unnoted_from <= day_number < self._unnoted_to:
            self._used(day_number)
        return float(cum[i] * DAY)

    def working_deadline(self, start: datetime, days: int) -> datetime:
        """24:00 local of the ``days``-th working day after the day of ``start``."""
        return self.instant_at(self.count_start(start) + days * DAY)

    def working_deadline_at(self, start: float, days: int) -> datetime:
        """:meth:`working_deadline` of an instant given in epoch seconds (a fact's time),
        with no datetime built for it in a zone of fixed offset."""
        return self.instant_at(self.count_start_at(start) + days * DAY)

    def working_deadline_epoch(self, start: float, days: float) -> float:
        """:meth:`working_deadline_at` in epoch seconds (``days`` may be fractional)."""
        offset = self._offset
        if offset is None:
            return self.instant_epoch(self.count_start_at(start) + days * DAY)
        return self._from_day[(int((start + offset) // DAY), days)]

    def _deadline_from_day(self, key: tuple[int, float]) -> float:
        day, days = key  # a local epoch day
        return self.instant_epoch(
            self._count_after(day - self._origin_ordinal + _EPOCH_ORDINAL) + days * DAY)

    def count_start_at(self, start: float) -> float:
        """:meth:`count_start` of epoch seconds."""
        if self._offset is None:
            return self.count_start(datetime.fromtimestamp(start, self.tz))
        return self._count_after(self._split_epoch(start, self._offset)[0])

    def counted_deadline(
        self, start: datetime, days: float, pauses: Sequence[Pause] = ()
    ) -> datetime | None:
        """Deadline of ``days`` working days from ``start`` with the clock stopped during
        ``pauses`` (sorted, non-overlapping). None while a pause before it is still open."""
        at = self.counted_deadline_at(
            start.timestamp(), days,
            [(a.timestamp(), b.timestamp() if b is not None else None) for a, b in pauses])
        return None if at is None else datetime.fromtimestamp(at, self.tz)

    def counted_deadline_at(self, start: float, days: float,
                            pauses: Sequence[EpochPause] = ()) -> float | None:
        """:meth:`counted_deadline` in epoch seconds: the form the deadline checks use,
        which build a datetime only for a finding they report."""
        if not pauses:
            return self.working_deadline_epoch(start, days)
        origin = self.count_start_at(start)
        target = self._paused_target(origin, origin + days * DAY, pauses)
        return None if target is None else self.instant_epoch(target)

    def _paused_target(self, origin: float, target: float,
                       pauses: Sequence[EpochPause]) -> float | None:
        """Working seconds ``target`` moved by the working time of the ``pauses`` that
        start before it (counted from ``origin``); None while one of them is open."""
        for p_start, p_end in pauses:
            ws_a = max(self.working_seconds_at(p_start), origin)
            if ws_a >= target:
                break
            if p_end is None:
                return None
            ws_b = self.working_seconds_at(p_end)
            if ws_b > ws_a:
                target += ws_b - ws_a
        return target

    # --- calendar days (日: limits other laws set) ---------------------------------------

    def calendar_deadline_at(self, start: float, days: float,
                             pauses: Sequence[EpochPause] = (),
                             extension_working_days: float = 0) -> float | None:
        """The end of a limit of ``days`` calendar days from ``start`` (epoch seconds);
        None while an Art. 45 pause before it is still open.

        - Every day counts and the start day does not (民法典 第二百零一条): the count
          starts at 24:00 of the local start day and the limit runs to 24:00 of the
          ``days``-th day after it.
        - Art. 45 pauses stop this clock as they stop a working-day clock: the time a
          pause stands after the count start and before the end is added to the end,
          second for second and whatever the days it covers (each calendar day counts,
          so a paused rest day is a paused day too).
        - Then 民法典 第二百零三条: when the day on which the end so computed falls is a
          rest day or statutory holiday, the limit ends at 24:00 of the next working day.
          An end in the middle of a working day (moved there by a pause) stays where it is.
        - An extension (行政许可法 Art. 42, which Art. 82 counts in working days) adds
          ``extension_working_days`` working days after that end, with the pauses that
          start during it added in working time, as for any working-day limit.
        """
        day = self._local_day(start)
        if not pauses:  # then it depends on the day of the start only
            return self._calendar_from_day[(day, days, extension_working_days)]
        return self._calendar_end(day, days, pauses, extension_working_days)

    def _calendar_end_from_day(self, key: tuple[int, float, float]) -> float | None:
        day, days, extension_working_days = key
        return self._calendar_end(day, days, (), extension_working_days)

    def _calendar_end(self, day: int, days: float, pauses: Sequence[EpochPause],
                      extension_working_days: float) -> float | None:
        """:meth:`calendar_deadline_at` from the local day number of the start."""
        origin = self._midnight_at(day + 1)
        whole = int(days)
        target = self._midnight_at(day + 1 + whole) + (days - whole) * DAY
        for p_start, p_end in pauses:
            a = max(p_start, origin)
            if a >= target:
                break
            if p_end is None:
                return None
            if p_end > a:
                target += p_end - a
        end = self._rest_day_moved(target)
        if not extension_working_days:
            return end
        ws_end = self.working_seconds_at(end)
        moved = self._paused_target(ws_end, ws_end + extension_working_days * DAY, pauses)
        return None if moved is None else self.instant_epoch(moved)

    def calendar_paused_seconds_at(self, start: float, until: float,
                                   pauses: Sequence[EpochPause] = ()) -> float:
        """Seconds between the count start of ``start`` and ``until`` during which an
        Art. 45 pause stood (the paused time of a calendar-day limit)."""
        origin = self._midnight_at(self._local_day(start) + 1)
        paused = 0.0
        for p_start, p_end in pauses:
            a = max(p_start, origin)
            b = min(p_end if p_end is not None else until, until)
            if b > a:
                paused += b - a
        return paused

    def _rest_day_moved(self, end: float) -> float:
        """民法典 第二百零三条: an end falling on a rest day or statutory holiday moves to
        24:00 of the next working day (an end at 24:00 falls on the day it closes)."""
        day, seconds = self._split_at(end)
        last = day if seconds > 0 else day - 1
        i = last + 1
        if i + 1 >= len(self._cum) or last < 0:
            self._extend_to(i if last >= 0 else last)  # refuses days before ORIGIN
        if self._unnoted_from <= last < self._unnoted_to:
            self._used(last)
        if self._cum[i] > self._cum[last]:
            return end  # the last day is a working day
        return self._midnight_at(self._nth_workday_number(self._cum[i]) + 1)

    def _local_day(self, ts: float) -> int:
        """The local day number of epoch seconds ``ts``."""
        return self._split_at(ts)[0]

    def _split_at(self, ts: float) -> tuple[int, float]:
        if self._offset is not None:
            return self._split_epoch(ts, self._offset)
        return self._split(datetime.fromtimestamp(ts, self.tz))

    def _midnight_at(self, day_number: int) -> float:
        """00:00 local of ``day_number`` in epoch seconds."""
        if self._offset is not None:
            return (day_number + self._origin_ordinal - _EPOCH_ORDINAL) * DAY - self._offset
        return self._midnight(day_number).timestamp()

    def counted_seconds(self, start: datetime, until: datetime, pauses: Sequence[Pause] = ()) -> float:
        """Working seconds used between the count start and ``until``, pauses left out."""
        return self.counted_seconds_at(
            start.timestamp(), until.timestamp(),
            [(a.timestamp(), b.timestamp() if b is not None else None) for a, b in pauses])

    def counted_seconds_at(self, start: float, until: float,
                           pauses: Sequence[EpochPause] = ()) -> float:
        """:meth:`counted_seconds` of epoch seconds."""
        origin = self.count_start_at(start)
        end = self.working_seconds_at(until)
        used = max(0.0, end - origin)
        for p_start, p_end in pauses:
            a = max(self.working_seconds_at(p_start), origin)
            b = min(self.working_seconds_at(p_end) if p_end is not None else end, end)
            if b > a:
                used -= b - a
        return max(0.0, used)

    def counted_days(self, start: datetime, until: datetime, pauses: Sequence[Pause] = ()) -> float:
        return self.counted_seconds(start, until, pauses) / DAY


def _fixed_offset(tz: tzinfo) -> int | None:
    """The zone's UTC offset in seconds if it has been the same since ORIGIN, else None."""
    probes = [datetime(y, m, 15, 12, tzinfo=tz) for y in range(ORIGIN.year, 2051) for m in (1, 7)]
    offsets = {p.utcoffset() for p in probes}
    if len(offsets) != 1:
        return None
    (offset,) = offsets
    return int(offset.total_seconds()) if offset is not None else None


def utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)
