"""Working-day calendars: the official Chinese calendar, the operator file for years the
package does not know, and the loud fallback (statutory holidays, no 调休)."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import pytest

from jiancha.rules.calendar import (
    CalendarFileError,
    OfficialCalendar,
    WeekdayCalendar,
    YearOverrides,
    load_calendar_file,
)


@pytest.fixture(scope="module")
def official() -> OfficialCalendar:
    return OfficialCalendar()


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(n) for n in range((last - first).days + 1)]


# --- the official calendar (chinese-calendar) --------------------------------------------


@pytest.mark.parametrize(
    ("day", "workday", "why"),
    [
        (date(2026, 3, 2), True, "an ordinary Monday"),
        (date(2026, 3, 7), False, "an ordinary Saturday"),
        (date(2026, 3, 8), False, "an ordinary Sunday"),
        (date(2026, 1, 1), False, "元旦 (Thursday)"),
        (date(2026, 1, 4), True, "调休 Sunday after 元旦"),
        (date(2026, 2, 16), False, "春节 (Monday)"),
        (date(2026, 2, 14), True, "调休 Saturday before 春节"),
        (date(2026, 5, 1), False, "劳动节"),
        (date(2026, 5, 9), True, "调休 Saturday after 劳动节"),
        (date(2026, 9, 25), False, "中秋 (Friday)"),
        (date(2026, 9, 20), True, "调休 Sunday before 国庆"),
        (date(2026, 9, 30), True, "the Wednesday before 国庆"),
        (date(2026, 10, 8), True, "the Thursday after 国庆"),
        (date(2026, 10, 10), True, "调休 Saturday after 国庆"),
        (date(2026, 10, 11), False, "the Sunday after the 调休 Saturday"),
        (date(2025, 10, 8), False, "国庆 2025 runs to Oct 8"),
        (date(2025, 10, 11), True, "调休 Saturday 2025"),
    ],
)
def test_official_days(official: OfficialCalendar, day: date, workday: bool, why: str) -> None:
    assert official.is_workday(day) is workday, why


def test_national_day_2026_is_a_week_off(official: OfficialCalendar) -> None:
    week = _days(date(2026, 10, 1), date(2026, 10, 7))
    assert [official.is_workday(d) for d in week] == [False] * 7
    assert official.is_workday(date(2026, 10, 10))  # the 调休 Saturday counts


def test_known_years_cover_the_package_data(official: OfficialCalendar) -> None:
    assert {2004, 2020, 2025, 2026} <= set(official.known_years)
    assert official.knows(2026)
    assert not official.knows(2030)


def test_weekday_calendar() -> None:
    cal = WeekdayCalendar()
    assert [cal.is_workday(d) for d in _days(date(2026, 9, 28), date(2026, 10, 4))] == [
        True, True, True, True, True, False, False
    ]
    assert cal.is_workday(date(2026, 10, 1))  # no holidays at all


# --- the operator file ---------------------------------------------------------------------

CALENDAR_2027 = """\
# operator calendar for a year the package does not know yet
2027:
  holidays: [2027-01-01, 2027-02-06..2027-02-14, "2027-10-01..2027-10-07"]
  workdays: [2027-02-20, 2027-10-09]
"""


@pytest.fixture
def file_2027(tmp_path: Path) -> Path:
    path = tmp_path / "calendar.yaml"
    path.write_text(CALENDAR_2027, encoding="utf-8")
    return path


def test_operator_file_adds_a_year(file_2027: Path) -> None:
    fallbacks: list[int] = []
    cal = OfficialCalendar.from_file(file_2027, on_fallback=fallbacks.append)
    assert cal.knows(2027)
    assert 2027 in cal.known_years
    assert not cal.is_workday(date(2027, 1, 1))  # listed holiday (a Friday)
    assert all(not cal.is_workday(d) for d in _days(date(2027, 2, 6), date(2027, 2, 14)))  # range
    assert all(not cal.is_workday(d) for d in _days(date(2027, 10, 1), date(2027, 10, 7)))
    assert cal.is_workday(date(2027, 2, 20))  # 调休 Saturday
    assert cal.is_workday(date(2027, 10, 9))  # 调休 Saturday
    assert cal.is_workday(date(2027, 3, 1))  # an ordinary Monday
    assert not cal.is_workday(date(2027, 3, 6))  # an ordinary Saturday
    # the package's own years are still there
    assert cal.is_workday(date(2026, 10, 10)) and not cal.is_workday(date(2026, 10, 1))
    assert fallbacks == []


def test_load_calendar_file_expands_ranges(file_2027: Path) -> None:
    years = load_calendar_file(file_2027)
    assert set(years) == {2027}
    assert len(years[2027].holidays) == 1 + 9 + 7
    assert years[2027].workdays == frozenset({date(2027, 2, 20), date(2027, 10, 9)})


def test_operator_year_overrides_the_package() -> None:
    cal = OfficialCalendar({2026: YearOverrides(holidays=[date(2026, 3, 2)])})
    assert not cal.is_workday(date(2026, 3, 2))
    assert not cal.is_workday(date(2026, 10, 10))  # the package's 调休 is replaced too


def test_empty_file_is_no_years(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_calendar_file(path) == {}


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("2027: [2027-01-01]\n", ["2027", "expected keys"]),
        ("2027:\n  holiday: [2027-01-01]\n", ["2027", "expected keys"]),
        ("2027:\n  holidays: 2027-01-01\n", ["2027.holidays", "expected a list"]),
        ("2027:\n  holidays: ['2027-13-01']\n", ["2027.holidays", "bad date", "2027-13-01"]),
        ("2027:\n  holidays: [next friday]\n", ["2027.holidays", "bad date", "next friday"]),
        ("2027:\n  workdays: ['2027-02-20..2027-02-10']\n", ["2027.workdays", "ends before it starts"]),
        ("2027:\n  holidays: [2028-01-01]\n", ["2027", "2028-01-01 is not in 2027"]),
        ("twenty: {holidays: []}\n", ["'twenty' is not a year"]),
        ("- 2027-01-01\n", ["expected a mapping"]),
        ("2027: {holidays: [2027-01-01\n", ["cannot read calendar file"]),
    ],
)
def test_bad_file_errors_name_file_and_year(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "bad-calendar.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalendarFileError) as err:
        load_calendar_file(path)
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_unquoted_impossible_date_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad-calendar.yaml"
    path.write_text("2027:\n  holidays: [2027-13-01]\n", encoding="utf-8")
    with pytest.raises(CalendarFileError, match=r"bad-calendar\.yaml"):
        load_calendar_file(path)


def test_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(CalendarFileError, match=r"nowhere\.yaml"):
        OfficialCalendar.from_file(path)


def test_no_file_means_package_only() -> None:
    assert OfficialCalendar.from_file(None).known_years == OfficialCalendar().known_years


# --- the fallback --------------------------------------------------------------------------


#: 2027 by hand from the holiday law (全国年节及纪念日放假办法, as revised for 2025) and the
#: almanac (春节 初一 = Sat 2027-02-06, 清明 Mon 04-05, 端午 Wed 06-09, 中秋 Wed 09-15): a
#: holiday that falls on a Saturday or Sunday is made up (补假) on the next working day.
#: No 调休 is known, so the official week-long breaks are not whole.
FALLBACK_2027 = [
    (date(2027, 1, 1), False, "元旦 (Friday)"),
    (date(2027, 1, 4), True, "the Monday after 元旦"),
    (date(2027, 2, 4), True, "the Thursday before 除夕"),
    (date(2027, 2, 5), False, "除夕 (Friday)"),
    (date(2027, 2, 6), False, "初一 (Saturday)"),
    (date(2027, 2, 7), False, "初二 (Sunday)"),
    (date(2027, 2, 8), False, "初三 (Monday)"),
    (date(2027, 2, 9), False, "补假 for 初一 on a Saturday"),
    (date(2027, 2, 10), False, "补假 for 初二 on a Sunday"),
    (date(2027, 2, 11), True, "the Thursday after: no 调休 known"),
    (date(2027, 2, 20), False, "a Saturday: no 调休 workday known"),
    (date(2027, 4, 5), False, "清明 (Monday)"),
    (date(2027, 5, 3), False, "补假 for 劳动节 on a Saturday"),
    (date(2027, 5, 4), False, "补假 for 劳动节 on a Sunday"),
    (date(2027, 5, 5), True, "the Wednesday after 劳动节"),
    (date(2027, 6, 9), False, "端午 (Wednesday)"),
    (date(2027, 9, 15), False, "中秋 (Wednesday)"),
    (date(2027, 9, 30), True, "the Thursday before 国庆"),
    (date(2027, 10, 1), False, "国庆 (Friday)"),
    (date(2027, 10, 4), False, "补假 for 国庆 on a Saturday"),
    (date(2027, 10, 5), False, "补假 for 国庆 on a Sunday"),
    (date(2027, 10, 6), True, "no 调休 known: the rest of the official week is worked"),
]


@pytest.mark.parametrize(("day", "workday", "why"), FALLBACK_2027)
def test_fallback_leaves_out_statutory_holidays(day: date, workday: bool, why: str) -> None:
    assert OfficialCalendar().is_workday(day) is workday, why


def test_fallback_agrees_with_the_holidays_package() -> None:
    import holidays

    cal = OfficialCalendar()
    for year in (2027, 2031):
        off = set(holidays.China(years=year))
        for day in _days(date(year, 1, 1), date(year, 12, 31)):
            assert cal.is_workday(day) is (day.weekday() < 5 and day not in off), day


def test_fallback_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    fallbacks: list[int] = []
    cal = OfficialCalendar(on_fallback=fallbacks.append)
    with caplog.at_level(logging.WARNING, logger="jiancha.rules.calendar"):
        week = [cal.is_workday(d) for d in _days(date(2030, 9, 30), date(2030, 10, 6))]
        cal.is_workday(date(2030, 10, 1))
    # Mon 2030-09-30 .. Sun 10-06: 国庆 Tue 1 to Thu 3, no 调休 known
    assert week == [True, False, False, False, True, False, False]
    assert fallbacks == [2030]  # once per year, not per day
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2030" in warnings[0].getMessage()
    assert "调休" in warnings[0].getMessage()
    assert "JIANCHA_CALENDAR_FILE" in warnings[0].getMessage()


def test_known_year_keeps_its_make_up_days() -> None:
    fallbacks: list[int] = []
    cal = OfficialCalendar(on_fallback=fallbacks.append)
    assert cal.is_workday(date(2026, 2, 14))  # 调休 Saturday before 春节
    assert cal.is_workday(date(2026, 2, 28))  # 调休 Saturday after it
    assert not cal.is_workday(date(2026, 2, 23))  # a Monday of the official break
    assert not cal.is_workday(date(2026, 10, 7))  # 国庆 2026 is a whole week off
    assert fallbacks == []


def test_fallback_fires_per_unknown_year(caplog: pytest.LogCaptureFixture) -> None:
    fallbacks: list[int] = []
    cal = OfficialCalendar(on_fallback=fallbacks.append)
    with caplog.at_level(logging.WARNING, logger="jiancha.rules.calendar"):
        for day in (date(2030, 1, 2), date(2031, 1, 2), date(2030, 5, 5), date(2031, 7, 1)):
            cal.is_workday(day)
        cal.is_workday(date(2026, 3, 2))  # known: no fallback
    assert fallbacks == [2030, 2031]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_fallback_without_callback_still_logs(caplog: pytest.LogCaptureFixture) -> None:
    cal = OfficialCalendar()
    with caplog.at_level(logging.WARNING, logger="jiancha.rules.calendar"):
        assert cal.is_workday(date(2032, 3, 1))
    assert any("2032" in r.getMessage() for r in caplog.records)


def test_operator_year_is_no_fallback(file_2027: Path, caplog: pytest.LogCaptureFixture) -> None:
    fallbacks: list[int] = []
    cal = OfficialCalendar.from_file(file_2027, on_fallback=fallbacks.append)
    with caplog.at_level(logging.WARNING, logger="jiancha.rules.calendar"):
        for d in _days(date(2027, 1, 1), date(2027, 12, 31)):
            cal.is_workday(d)
    assert fallbacks == []
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
