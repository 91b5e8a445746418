"""Working-day calendars (行政许可法 Art. 82: statutory holidays excluded, 调休 days count).

- :class:`OfficialCalendar`: the Chinese official calendar from ``chinese-calendar``,
  extended by an operator-supplied YAML file for years the package does not know yet;
  outside every known year it still leaves out the statutory holidays (全国年节及纪念日放假办法:
  fixed dates, lunar festivals and the 补假 of a holiday falling on a weekend, as the
  ``holidays`` package computes them) and weekends, but no 调休 can be known: it says so
  loudly (a warning in the log and the ``on_fallback`` callback, which the worker wires to
  a metric), once per year actually counted, never silently.
- :class:`WeekdayCalendar`: plain Mon–Fri, for tests.

Operator file (``JIANCHA_CALENDAR_FILE``)::

    2027:
      holidays: [2027-01-01, 2027-02-06..2027-02-14, 2027-10-01..2027-10-07]
      workdays: [2027-02-20, 2027-10-09]   # 调休: weekend days that are worked
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

import yaml

log = logging.getLogger(__name__)


class WorkingCalendar(Protocol):
    def is_workday(self, day: date) -> bool: ...


class CalendarFileError(ValueError):
    """The operator calendar file is malformed; the message names file, year and key."""


class WeekdayCalendar:
    """Monday to Friday, no holidays."""

    def is_workday(self, day: date) -> bool:
        return day.weekday() < 5


class YearOverrides:
    __slots__ = ("holidays", "workdays")

    def __init__(self, holidays: Iterable[date] = (), workdays: Iterable[date] = ()) -> None:
        self.holidays = frozenset(holidays)
        self.workdays = frozenset(workdays)


class OfficialCalendar:
    """chinese-calendar, plus operator years, plus a loud fallback of statutory holidays
    and weekends (no 调休) for the other years."""

    def __init__(
        self,
        extra_years: dict[int, YearOverrides] | None = None,
        on_fallback: Callable[[int], None] | None = None,
    ) -> None:
        import chinese_calendar

        self._holidays = frozenset(chinese_calendar.holidays)
        self._workdays = frozenset(chinese_calendar.workdays)
        self._known_years = frozenset(d.year for d in self._holidays)
        self._extra = dict(extra_years or {})
        self._on_fallback = on_fallback
        self._warned: set[int] = set()
        self._statutory: dict[int, frozenset[date]] = {}  # fallback years, built when asked
        #: False: note the fallback years without a word (a replay shard, whose parent
        #: reports them once with :meth:`note_fallback`, instead of once per process)
        self.announce = True

    @classmethod
    def from_file(
        cls, path: Path | None, on_fallback: Callable[[int], None] | None = None
    ) -> OfficialCalendar:
        return cls(load_calendar_file(path) if path else None, on_fallback)

    def knows(self, year: int) -> bool:
        return year in self._extra or year in self._known_years

    @property
    def known_years(self) -> tuple[int, ...]:
        return tuple(sorted(self._known_years | set(self._extra)))

    def is_workday(self, day: date) -> bool:
        """Whether ``day`` is a working day; a day of a fallback year notes its year."""
        if not self.knows(day.year):
            self.note_fallback(day.year)
        return self.is_workday_unnoted(day)

    def is_workday_unnoted(self, day: date) -> bool:
        """:meth:`is_workday` without noting a fallback year: for tables that cover days
        nobody asked about yet (the counted-time clock notes the years it uses)."""
        extra = self._extra.get(day.year)
        if extra is not None:
            if day in extra.workdays:
                return True
            if day in extra.holidays:
                return False
            return day.weekday() < 5
        if day.year in self._known_years:
            if day in self._workdays:
                return True
            if day in self._holidays:
                return False
            return day.weekday() < 5
        return day.weekday() < 5 and day not in self.statutory_holidays(day.year)

    def statutory_holidays(self, year: int) -> frozenset[date]:
        """The days off the holiday law gives in ``year`` (``holidays.China``: 元旦, 春节
        from 除夕, 清明, 劳动节, 端午, 中秋, 国庆, and the 补假 of one falling on a weekend;
        the package computes the lunar dates up to 2100)."""
        days = self._statutory.get(year)
        if days is None:
            import holidays  # only once a year outside every official calendar is counted

            days = self._statutory[year] = frozenset(holidays.China(years=year))
        return days

    @property
    def fallback_years(self) -> frozenset[int]:
        """The years counted without 调休 so far, for want of an official calendar."""
        return frozenset(self._warned)

    def note_fallback(self, year: int) -> None:
        """Warn (once per year) that ``year`` is counted without 调休."""
        if year not in self._warned:
            self._warned.add(year)
            if not self.announce:
                return
            log.warning(
                "no official holiday calendar for %s: counting Mon-Fri less the statutory "
                "holidays, without 调休 (make-up working days and bridged days are unknown). "
                "Add the year to the file named by JIANCHA_CALENDAR_FILE.",
                year,
            )
            if self._on_fallback is not None:
                self._on_fallback(year)


def _parse_days(raw: object, where: str) -> list[date]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CalendarFileError(f"{where}: expected a list of dates or 'YYYY-MM-DD..YYYY-MM-DD'")
    days: list[date] = []
    for entry in raw:
        try:
            if isinstance(entry, date):
                days.append(entry)
            elif isinstance(entry, str) and ".." in entry:
                first, last = (date.fromisoformat(p.strip()) for p in entry.split("..", 1))
                if last < first:
                    raise ValueError("range ends before it starts")
                days.extend(first + timedelta(n) for n in range((last - first).days + 1))
            else:
                days.append(date.fromisoformat(str(entry)))
        except ValueError as exc:
            raise CalendarFileError(f"{where}: bad date {entry!r}: {exc}") from None
    return days


def load_calendar_file(path: Path) -> dict[int, YearOverrides]:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, ValueError) as exc:  # ValueError: YAML dates like 2027-13-01
        raise CalendarFileError(f"{path}: cannot read calendar file: {exc}") from None
    if not isinstance(doc, dict):
        raise CalendarFileError(f"{path}: expected a mapping of year -> holidays/workdays")
    years: dict[int, YearOverrides] = {}
    for year, spec in doc.items():
        if not isinstance(year, int) or not 1900 < year < 2200:
            raise CalendarFileError(f"{path}: {year!r} is not a year")
        if not isinstance(spec, dict) or set(spec) - {"holidays", "workdays"}:
            raise CalendarFileError(f"{path}: {year}: expected keys 'holidays' and 'workdays'")
        holidays = _parse_days(spec.get("holidays"), f"{path}: {year}.holidays")
        workdays = _parse_days(spec.get("workdays"), f"{path}: {year}.workdays")
        for d in (*holidays, *workdays):
            if d.year != year:
                raise CalendarFileError(f"{path}: {year}: {d} is not in {year}")
        years[year] = YearOverrides(holidays, workdays)
    return years
