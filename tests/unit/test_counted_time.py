"""Counted time as 行政许可法 counts it: working days (Art. 82), the start day not counted,
deadlines at 24:00 Asia/Shanghai, and Art. 45 suspensions stopping the clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jiancha.rules.calendar import OfficialCalendar, WeekdayCalendar
from jiancha.rules.counted_time import DAY, WorkingTime

TZ = ZoneInfo("Asia/Shanghai")


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


@pytest.fixture(scope="module")
def wt() -> WorkingTime:
    return WorkingTime(OfficialCalendar(), TZ)


@pytest.fixture(scope="module")
def weekdays() -> WorkingTime:
    return WorkingTime(WeekdayCalendar(), TZ)


# --- working_deadline ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "deadline", "why"),
    [
        ("2026-03-02 10:00", 1, "2026-03-04 00:00", "Mon: the start day is not counted, Tue 24:00"),
        ("2026-03-02 00:00", 1, "2026-03-04 00:00", "from the first second of Mon: still Tue 24:00"),
        ("2026-03-02 23:59:59", 1, "2026-03-04 00:00", "from the last second of Mon: Tue 24:00"),
        ("2026-03-02 10:00", 5, "2026-03-10 00:00", "5 days from Mon: next Mon 24:00"),
        ("2026-03-06 10:00", 1, "2026-03-10 00:00", "from Fri across the weekend: Mon 24:00"),
        ("2026-03-07 10:00", 1, "2026-03-10 00:00", "from a Saturday: Mon 24:00"),
        ("2026-03-08 23:00", 1, "2026-03-10 00:00", "from a Sunday: Mon 24:00"),
        ("2026-09-29 10:00", 1, "2026-10-01 00:00", "Tue before 国庆: Wed 24:00"),
        ("2026-09-29 10:00", 2, "2026-10-09 00:00", "across the 国庆 week: Thu Oct 8 24:00"),
        ("2026-09-30 10:00", 1, "2026-10-09 00:00", "the last day before 国庆: Oct 8 24:00"),
        ("2026-10-03 10:00", 1, "2026-10-09 00:00", "from inside 国庆: Oct 8 24:00"),
        ("2026-10-09 10:00", 1, "2026-10-11 00:00", "调休 Saturday Oct 10 counts"),
        ("2026-10-09 10:00", 2, "2026-10-13 00:00", "Sat Oct 10, then Mon Oct 12"),
        ("2026-09-29 10:00", 5, "2026-10-13 00:00", "Sep 30, Oct 8, 9, 10 (调休), 12"),
        ("2026-09-18 10:00", 1, "2026-09-21 00:00", "调休 Sunday Sep 20 counts"),
        ("2026-09-24 10:00", 1, "2026-09-29 00:00", "中秋 Fri Sep 25 and the weekend off: Mon 24:00"),
        ("2025-12-31 10:00", 1, "2026-01-05 00:00", "across the year: 元旦 off, 调休 Sun Jan 4 counts"),
        ("2026-03-02 10:00", 20, "2026-03-31 00:00", "20 working days of March"),
    ],
)
def test_working_deadline(wt: WorkingTime, start: str, days: int, deadline: str, why: str) -> None:
    assert wt.working_deadline(t(start), days) == t(deadline), why


def test_deadline_is_24_00_local_shown_as_next_day_00_00_plus_08(wt: WorkingTime) -> None:
    deadline = wt.working_deadline(t("2026-03-02 10:00"), 1)
    assert deadline.isoformat() == "2026-03-04T00:00:00+08:00"
    assert deadline.utcoffset() == timedelta(hours=8)
    assert deadline.astimezone(UTC) == datetime(2026, 3, 3, 16, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start_utc", "deadline", "why"),
    [
        ("2026-03-01T17:00:00+00:00", "2026-03-04 00:00", "Sun 17:00Z is Mon 01:00 local: start day Mon"),
        ("2026-03-02T15:59:59+00:00", "2026-03-04 00:00", "Mon 23:59:59 local"),
        ("2026-03-02T16:00:00+00:00", "2026-03-05 00:00", "Tue 00:00 local: start day Tue"),
    ],
)
def test_start_day_is_the_local_day(wt: WorkingTime, start_utc: str, deadline: str, why: str) -> None:
    assert wt.working_deadline(datetime.fromisoformat(start_utc), 1) == t(deadline), why


def test_weekday_calendar_knows_no_holidays(weekdays: WorkingTime) -> None:
    assert weekdays.working_deadline(t("2026-09-29 10:00"), 2) == t("2026-10-02 00:00")
    assert weekdays.working_deadline(t("2026-10-09 10:00"), 1) == t("2026-10-13 00:00")


def test_before_2004_is_refused(wt: WorkingTime) -> None:
    with pytest.raises(ValueError, match="2004"):
        wt.working_deadline(t("2003-12-30 10:00"), 1)


# --- counted_deadline: suspensions --------------------------------------------------------------


def test_counted_deadline_without_pauses_is_the_working_deadline(wt: WorkingTime) -> None:
    for start in ("2026-03-02 10:00", "2026-09-29 10:00", "2026-10-04 10:00"):
        for days in (1, 2, 5, 10, 20, 45):
            assert wt.counted_deadline(t(start), days) == wt.working_deadline(t(start), days)


@pytest.mark.parametrize(
    ("start", "days", "pauses", "deadline", "why"),
    [
        ("2026-03-05 10:00", 1, [("2026-03-06 15:00", "2026-03-09 12:00")], "2026-03-09 21:00",
         "Fri 15:00 to Mon 12:00 stops 9 h of Fri and 12 h of Mon; the weekend costs nothing"),
        ("2026-03-05 10:00", 1, [("2026-03-07 09:00", "2026-03-08 18:00")], "2026-03-07 00:00",
         "a suspension inside a weekend stops no working time"),
        ("2026-03-02 09:00", 1, [("2026-03-02 10:00", "2026-03-03 10:00")], "2026-03-04 10:00",
         "suspended on the start day: only the counted part (Tue 00:00-10:00) is added"),
        ("2026-03-02 09:00", 1, [("2026-02-26 10:00", "2026-03-02 08:00")], "2026-03-04 00:00",
         "a suspension over before the clock starts changes nothing"),
        ("2026-03-02 10:00", 2, [("2026-03-03 10:00", "2026-03-03 14:00"),
                                 ("2026-03-04 09:00", "2026-03-05 09:00")], "2026-03-06 04:00",
         "two suspensions: 4 h + 24 h"),
        ("2026-03-02 10:00", 1, [("2026-03-04 00:00", None)], "2026-03-04 00:00",
         "suspended exactly at the deadline: the limit was already used up"),
        ("2026-03-02 10:00", 1, [("2026-03-05 10:00", None)], "2026-03-04 00:00",
         "an open suspension after the deadline does not move it"),
        ("2026-09-29 10:00", 2, [("2026-09-30 12:00", "2026-10-08 12:00")], "2026-10-10 00:00",
         "suspended across 国庆: 12 h of Sep 30 + 12 h of Oct 8 = one day more, Oct 9 24:00"),
    ],
)
def test_counted_deadline_with_pauses(wt: WorkingTime, start: str, days: int,
                                      pauses: list[tuple[str, str | None]], deadline: str,
                                      why: str) -> None:
    ps = [(t(a), t(b) if b else None) for a, b in pauses]
    assert wt.counted_deadline(t(start), days, ps) == t(deadline), why


def test_open_suspension_before_the_deadline_means_no_deadline(wt: WorkingTime) -> None:
    assert wt.counted_deadline(t("2026-03-02 10:00"), 5, [(t("2026-03-04 10:00"), None)]) is None
    assert wt.counted_deadline(t("2026-03-02 10:00"), 5, [(t("2026-03-02 11:00"), None)]) is None


def test_fractional_days(wt: WorkingTime) -> None:
    assert wt.counted_deadline(t("2026-03-02 10:00"), 1.5) == t("2026-03-04 12:00")
    assert wt.counted_deadline(t("2026-03-06 10:00"), 0.25) == t("2026-03-09 06:00")


# --- counted_days ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "until", "pauses", "days"),
    [
        ("2026-03-02 10:00", "2026-03-02 18:00", [], 0.0),
        ("2026-03-02 10:00", "2026-03-03 00:00", [], 0.0),
        ("2026-03-02 10:00", "2026-03-04 12:00", [], 1.5),
        ("2026-03-02 10:00", "2026-03-07 12:00", [], 4.0),
        ("2026-03-02 10:00", "2026-03-10 00:00", [], 5.0),
        ("2026-09-29 10:00", "2026-10-13 00:00", [], 5.0),
        ("2026-09-29 10:00", "2026-10-11 12:00", [], 4.0),
        ("2026-03-05 10:00", "2026-03-10 00:00", [("2026-03-06 15:00", "2026-03-09 12:00")], 2 - 21 / 24),
        ("2026-03-02 10:00", "2026-03-05 00:00", [("2026-03-03 12:00", None)], 0.5),
        ("2026-03-02 10:00", "2026-03-01 00:00", [], 0.0),
    ],
)
def test_counted_days(wt: WorkingTime, start: str, until: str,
                      pauses: list[tuple[str, str | None]], days: float) -> None:
    ps = [(t(a), t(b) if b else None) for a, b in pauses]
    assert wt.counted_days(t(start), t(until), ps) == pytest.approx(days)


def test_nth_workday_and_workdays_before_agree(wt: WorkingTime) -> None:
    for day in (date(2004, 1, 2), date(2016, 2, 29), date(2026, 10, 10), date(2026, 12, 31)):
        assert wt.is_workday(day)
        assert wt.nth_workday(wt.workdays_before(day)) == day


def test_working_seconds_stand_still_outside_working_days(wt: WorkingTime) -> None:
    fri_end = wt.working_seconds(t("2026-03-07 00:00"))
    assert wt.working_seconds(t("2026-03-07 15:00")) == fri_end
    assert wt.working_seconds(t("2026-03-09 00:00")) == fri_end
    assert wt.working_seconds(t("2026-03-09 06:00")) == fri_end + 6 * 3600
    assert wt.instant_at(fri_end) == t("2026-03-07 00:00")  # 24:00 of Friday


# --- properties ------------------------------------------------------------------------------

_instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 10, 31)
).map(lambda d: d.replace(tzinfo=TZ, microsecond=0))


@settings(max_examples=150, deadline=None)
@given(start=_instants, days=st.integers(min_value=1, max_value=60))
def test_counted_days_to_the_deadline_is_the_limit(wt: WorkingTime, start: datetime, days: int) -> None:
    deadline = wt.working_deadline(start, days)
    assert deadline.timetz().replace(tzinfo=None).isoformat() == "00:00:00"
    assert wt.counted_days(start, deadline) == days
    assert wt.counted_days(start, deadline - timedelta(seconds=1)) < days
    # the last counted day is a working day, the start day is not counted
    assert wt.is_workday(deadline.date() - timedelta(1))
    assert deadline.date() - timedelta(1) > start.date()


@settings(max_examples=150, deadline=None)
@given(start=_instants, days=st.integers(min_value=0, max_value=60),
       seconds=st.sampled_from([0.0, 0.25, 59.999999]))
def test_working_deadline_from_epoch_seconds_is_the_same(wt: WorkingTime, start: datetime,
                                                         days: int, seconds: float) -> None:
    at = start.timestamp() + seconds
    assert wt.working_deadline_at(at, days) == wt.working_deadline(
        datetime.fromtimestamp(at, TZ), days)
    utc_only = WorkingTime(wt.calendar, UTC)  # the path for zones without a fixed offset
    utc_only._offset = None
    assert utc_only.working_deadline_at(at, days) == utc_only.working_deadline(
        datetime.fromtimestamp(at, UTC), days)


@settings(max_examples=150, deadline=None)
@given(start=_instants, days=st.integers(min_value=1, max_value=30),
       pause_at=st.integers(min_value=0, max_value=40 * DAY),
       pause_len=st.integers(min_value=1, max_value=10 * DAY))
def test_a_pause_adds_exactly_its_counted_time(wt: WorkingTime, start: datetime, days: int,
                                               pause_at: int, pause_len: int) -> None:
    a = start + timedelta(seconds=pause_at)
    b = a + timedelta(seconds=pause_len)
    deadline = wt.counted_deadline(start, days, [(a, b)])
    assert deadline is not None
    assert wt.counted_days(start, deadline, [(a, b)]) == pytest.approx(days)
    assert deadline >= wt.working_deadline(start, days)


# --- years outside every official calendar -----------------------------------------------


def test_fallback_years_are_noted_when_a_deadline_uses_them(caplog: pytest.LogCaptureFixture) -> None:
    fallbacks: list[int] = []
    calendar = OfficialCalendar(on_fallback=fallbacks.append)
    clock = WorkingTime(calendar, TZ)
    # a 2026 deadline near the year's end builds the next year's table: not a use of it
    assert clock.working_deadline(t("2026-12-28 10:00"), 3) == t("2027-01-01 00:00")
    assert fallbacks == []
    # 2030 needs the tables of 2027-2029 too; only the year the deadline falls in is noted
    # (Mon 2030-09-30 + 1 working day: 国庆 Tue 1 to Thu 3 statutory, Fri 4 the next one)
    assert clock.working_deadline(t("2030-09-30 10:00"), 1) == t("2030-10-05 00:00")
    assert fallbacks == [2030]
    # a deadline that runs into 2027: Thu 2026-12-31 + 1 working day, 元旦 (Fri) statutory
    assert clock.working_deadline(t("2026-12-31 10:00"), 1) == t("2027-01-05 00:00")
    assert clock.working_deadline(t("2028-03-01 10:00"), 1) == t("2028-03-03 00:00")
    clock.working_deadline(t("2030-06-03 10:00"), 5)
    assert fallbacks == [2030, 2027, 2028]  # each year once, when first used
    assert sorted(calendar.fallback_years) == [2027, 2028, 2030]
