"""Limits another law sets in calendar days (日), counted as 民法典 第二百零一条–第二百零三条
count them: every day counts, the start day does not, a last day that is a rest day or a
statutory holiday moves the end to 24:00 of the next working day; Art. 45 pauses stop the
clock. Every expected end below is worked out by hand from the official 2026 calendar
(checked against ``chinese_calendar`` directly by ``test_the_hand_tables_rest_on``) and,
for 2027, from the holiday law."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from jiancha.rules.calendar import OfficialCalendar
from jiancha.rules.counted_time import DAY, EpochPause, WorkingTime

TZ = ZoneInfo("Asia/Shanghai")


def ts(text: str) -> float:
    """Epoch seconds of a local Asia/Shanghai time ("2026-02-25 00:00": 24:00 of 02-24)."""
    return datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()


@pytest.fixture(scope="module")
def wt() -> WorkingTime:
    return WorkingTime(OfficialCalendar(), TZ)


def test_the_hand_tables_rest_on() -> None:
    """The 2026 days the tables below treat as rest days or working days, as the official
    calendar package itself says."""
    rest = [date(2026, 2, 15), date(2026, 2, 19), date(2026, 2, 23), date(2026, 3, 7),
            date(2026, 2, 7), date(2026, 10, 1), date(2026, 10, 7), date(2026, 10, 11)]
    work = [date(2026, 2, 4), date(2026, 2, 5), date(2026, 2, 14), date(2026, 2, 24),
            date(2026, 2, 28), date(2026, 3, 9), date(2026, 9, 20), date(2026, 10, 8),
            date(2026, 10, 9), date(2026, 10, 10), date(2026, 10, 12)]
    assert not any(chinese_calendar.is_workday(d) for d in rest)
    assert all(chinese_calendar.is_workday(d) for d in work)


@pytest.mark.parametrize(
    ("start", "days", "end", "why"),
    [
        ("2026-01-05 10:00", 30, "2026-02-05 00:00",
         "Mon 01-05 + 30 days = Wed 02-04, a working day: 24:00 of 02-04"),
        ("2026-03-02 23:59", 1, "2026-03-04 00:00", "the start day is not counted, however late"),
        ("2026-01-20 10:00", 30, "2026-02-25 00:00",
         "01-20 + 30 = Thu 02-19, 春节 holiday: to the next working day, Tue 02-24"),
        ("2026-01-16 10:00", 30, "2026-02-25 00:00",
         "01-16 + 30 = Sun 02-15, the first day of the 春节 break: Tue 02-24"),
        ("2026-01-15 10:00", 30, "2026-02-15 00:00",
         "01-15 + 30 = Sat 02-14, a 调休 working Saturday: no move"),
        ("2026-01-29 10:00", 30, "2026-03-01 00:00",
         "01-29 + 30 = Sat 02-28, a 调休 working Saturday after 春节: no move"),
        ("2026-01-30 10:00", 30, "2026-03-03 00:00",
         "01-30 + 30 = Sun 03-01, an ordinary rest day: Mon 03-02"),
        ("2026-03-05 10:00", 2, "2026-03-10 00:00", "Thu + 2 = Sat 03-07: Mon 03-09"),
        ("2026-09-01 10:00", 30, "2026-10-09 00:00",
         "09-01 + 30 = Thu 10-01, 国庆: the break runs to 10-07, Thu 10-08"),
        ("2026-08-03 10:00", 60, "2026-10-09 00:00",
         "环评 报告书 60 days: 08-03 + 60 = Fri 10-02, 国庆: Thu 10-08"),
        ("2026-08-10 10:00", 60, "2026-10-10 00:00",
         "08-10 + 60 = Fri 10-09, the first working day after 国庆: no move"),
        ("2026-08-21 10:00", 30, "2026-09-21 00:00",
         "08-21 + 30 = Sun 09-20, a 调休 working Sunday: no move"),
        ("2026-09-11 10:00", 30, "2026-10-13 00:00",
         "09-11 + 30 = Sun 10-11, the rest day after the 调休 Saturday 10-10: Mon 10-12"),
        ("2026-12-02 10:00", 30, "2027-01-05 00:00",
         "12-02 + 30 = Fri 2027-01-01, 元旦 (holidays package, no 调休 known): Mon 01-04"),
        ("2027-01-06 10:00", 30, "2027-02-12 00:00",
         "01-06 + 30 = Fri 02-05, 除夕; 春节 02-06..08 and its 补假 02-09, 02-10: Thu 02-11"),
    ],
)
def test_calendar_deadline(wt: WorkingTime, start: str, days: int, end: str, why: str) -> None:
    assert wt.calendar_deadline_at(ts(start), days) == ts(end), why


def test_the_start_day_is_the_local_day(wt: WorkingTime) -> None:
    # 2026-03-02 17:00 UTC is 03-03 01:00 in Shanghai: 03-03 + 1 = Wed 03-04
    start = datetime(2026, 3, 2, 17, tzinfo=ZoneInfo("UTC")).timestamp()
    assert wt.calendar_deadline_at(start, 1) == ts("2026-03-05 00:00")


@pytest.mark.parametrize(
    ("pauses", "end", "why"),
    [
        ([("2026-01-10 09:00", "2026-01-10 15:00")], "2026-02-05 06:00",
         "6 hours paused: 24:00 of Wed 02-04 + 6 h = Thu 02-05 06:00, a working day: stays"),
        ([("2026-01-10 09:00", "2026-01-12 15:00")], "2026-02-10 00:00",
         "2 d 6 h paused: Sat 02-07 06:00, a rest day: 24:00 of Mon 02-09"),
        ([("2026-02-01 00:00", "2026-02-25 00:00")], "2026-03-01 00:00",
         "24 days paused over 春节, every one counts: 24:00 of Sat 02-28, a 调休 working day"),
        ([("2026-01-05 11:00", "2026-01-05 18:00")], "2026-02-05 00:00",
         "a pause on the start day, before counting begins, moves nothing"),
        ([("2026-01-05 20:00", "2026-01-06 06:00")], "2026-02-05 06:00",
         "only the 6 h after the count start (24:00 of 01-05) count"),
        ([("2026-02-06 00:00", "2026-02-07 00:00")], "2026-02-05 00:00",
         "a pause after the end moves nothing"),
        ([("2026-01-10 09:00", "2026-01-10 15:00"), ("2026-01-20 00:00", "2026-01-21 00:00")],
         "2026-02-06 06:00", "two pauses add up: 1 d 6 h, Fri 02-06 06:00"),
    ],
)
def test_pauses_stop_a_calendar_clock(wt: WorkingTime, pauses: list[tuple[str, str]], end: str,
                                      why: str) -> None:
    epoch_pauses: list[EpochPause] = [(ts(a), ts(b)) for a, b in pauses]
    assert wt.calendar_deadline_at(ts("2026-01-05 10:00"), 30, epoch_pauses) == ts(end), why


def test_an_open_pause_before_the_end_means_no_end_yet(wt: WorkingTime) -> None:
    assert wt.calendar_deadline_at(ts("2026-01-05 10:00"), 30, [(ts("2026-01-10 09:00"), None)]) is None
    # open, but only after the end: the end stands
    assert (wt.calendar_deadline_at(ts("2026-01-05 10:00"), 30, [(ts("2026-02-06 09:00"), None)])
            == ts("2026-02-05 00:00"))


@pytest.mark.parametrize(
    ("start", "days", "extension", "pauses", "end", "why"),
    [
        ("2026-09-01 10:00", 30, 3, [], "2026-10-13 00:00",
         "limit ends 24:00 Thu 10-08; + 3 working days: Fri 10-09, 调休 Sat 10-10, Mon 10-12"),
        ("2026-01-05 10:00", 30, 2, [], "2026-02-07 00:00",
         "limit ends 24:00 Wed 02-04; + 2 working days: Thu 02-05, Fri 02-06"),
        ("2026-01-05 10:00", 30, 10, [], "2026-02-26 00:00",
         "24:00 Wed 02-04; 8 working days 02-05..02-14 (the last a 调休 Sat), 春节 to 02-23, "
         "then Tue 02-24 and Wed 02-25"),
        ("2026-01-05 10:00", 30, 2, [("2026-02-05 12:00", "2026-02-09 12:00")], "2026-02-11 00:00",
         "a pause during the extension adds its working time: Thu 12:00 to Mon 12:00 is 2 "
         "working days (Thu 12 h, Fri, Mon 12 h), so 24:00 Fri 02-06 moves to 24:00 Tue 02-10"),
    ],
)
def test_an_extension_adds_working_days(wt: WorkingTime, start: str, days: int, extension: int,
                                        pauses: list[tuple[str, str]], end: str, why: str) -> None:
    epoch_pauses: list[EpochPause] = [(ts(a), ts(b)) for a, b in pauses]
    assert wt.calendar_deadline_at(ts(start), days, epoch_pauses, extension) == ts(end), why


def test_calendar_paused_seconds(wt: WorkingTime) -> None:
    pauses: list[EpochPause] = [(ts("2026-01-05 20:00"), ts("2026-01-06 06:00")),
                                (ts("2026-02-01 00:00"), None)]
    # 6 h after the count start, then the open pause up to 02-03 12:00 (2.5 days)
    paused = wt.calendar_paused_seconds_at(ts("2026-01-05 10:00"), ts("2026-02-03 12:00"), pauses)
    assert paused == 6 * 3600 + 2.5 * DAY
