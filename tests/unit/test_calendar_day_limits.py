"""An item whose legal limit another law sets in calendar days (``legal_unit: calendar``),
through the real engine: ``deadline.legal_broken`` at the end 民法典 第二百零三条 gives it
across 国庆 2026, Art. 45 pauses and an Art. 42 extension honoured, the promise still in
working days, the unit named in the alert, the indicators' overdue count agreeing.

国庆 2026 (official calendar): Thu 10-01 to Wed 10-07 off, Sat 10-10 a 调休 working day.
Every expected instant below is worked out by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jiancha.producers.contract import Alert, parse_event
from jiancha.rules.engine import Engine
from jiancha.rules.factory import build_engine
from jiancha.rules.indicators import IndicatorBook
from tests.unit import eventkit
from tests.unit.eventkit import Step, events, of, raised_at, run, t

#: 30 calendar days by law, promised in 10 working days
CALENDAR_ITEM = """\
department: {code: huanbao, name_zh: 生态环境局, name_en: Ecology and Environment Bureau}
items:
  - code: T-CAL
    name_zh: 测试日历日时限事项
    name_en: Test item with a limit in calendar days
    legal_days: 30
    legal_unit: calendar
    legal_basis: 环境影响评价法 第二十二条
    promised_days: 10
    steps: [submitted, accepted, decided, delivered, completed]
    fee_standard: null
    verified: false
    verification_note: a test item, not a real one
"""

#: accepted Tue 09-01: 09-01 + 30 days = Thu 10-01, 国庆, so the limit runs to the first
#: working day after the break, Thu 10-08, and ends at its 24:00
ACCEPTED = [("submitted", "2026-09-01 09:00"), ("accepted", "2026-09-01 10:00")]
LEGAL_END = "2026-10-09 00:00"


def legal_broken(alerts: list[Alert]) -> Alert:
    """The legal_broken alert of one case (its escalation is a second record of it)."""
    found = of(alerts, "deadline.legal_broken")
    assert found and len({a.alert_id for a in found}) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def cal_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    catalog: Path = tmp_path_factory.mktemp("catalog")
    (catalog / "huanbao.yaml").write_text(CALENDAR_ITEM, encoding="utf-8")
    return build_engine(catalog)


@pytest.fixture(autouse=True)
def _department(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(eventkit.DEPARTMENT, "T-CAL", "huanbao")
    yield


def test_legal_limit_ends_after_the_national_day_break(cal_engine: Engine) -> None:
    alerts = run("T-CAL", ACCEPTED, "2026-11-30 00:00", eng=cal_engine)
    legal = legal_broken(alerts)
    assert legal.event_time == t(LEGAL_END)
    # 30 working days from 09-01 would end at 24:00 of 10-19: the unit is what moved it
    assert legal.details["legal_unit"] == "calendar"
    assert legal.details["legal_unit_zh"] == "日"
    assert legal.details["legal_limit_zh"] == "30 日"
    assert legal.details["legal_limit_en"] == "30 calendar days"
    assert legal.details["deadline_text"] == "2026-10-08 24:00"
    assert (legal.details["limit"], legal.details["extension"], legal.details["paused_days"]) == (30, 0, 0)
    # the promise stays in working days: 09-02..04, 07..11, 14, 15 -> 24:00 Tue 09-15
    assert {a.event_time for a in of(alerts, "deadline.promise_broken")} == {t("2026-09-16 00:00")}


def test_raised_at_the_end_plus_the_allowed_lateness(cal_engine: Engine) -> None:
    lateness = cal_engine.ruleset.settings.allowed_lateness
    assert raised_at("T-CAL", ACCEPTED, "deadline.legal_broken", eng=cal_engine) == t(LEGAL_END) + lateness


def test_decided_on_the_last_day_after_the_break_is_in_time(cal_engine: Engine) -> None:
    steps: list[Step] = [*ACCEPTED, ("decided", "2026-10-08 23:00")]
    alerts = run("T-CAL", steps, "2026-11-30 00:00", eng=cal_engine)
    assert of(alerts, "deadline.legal_broken") == []


def test_a_lawful_suspension_stops_the_calendar_clock(cal_engine: Engine) -> None:
    # 8 days paused: 24:00 Thu 10-01 + 8 days = 24:00 Fri 10-09, a working day
    steps: list[Step] = [*ACCEPTED, ("suspended", "2026-09-10 09:00"), ("resumed", "2026-09-18 09:00")]
    legal = legal_broken(run("T-CAL", steps, "2026-11-30 00:00", eng=cal_engine))
    assert legal.event_time == t("2026-10-10 00:00")
    assert legal.details["paused_days"] == 8


def test_an_extension_adds_working_days_after_the_calendar_end(cal_engine: Engine) -> None:
    # 24:00 Thu 10-08, then 3 working days: Fri 10-09, 调休 Sat 10-10, Mon 10-12
    steps: list[Step] = [*ACCEPTED, ("extended", "2026-09-20 10:00")]
    alerts = run("T-CAL", steps, "2026-11-30 00:00", eng=cal_engine)
    assert of(alerts, "extension.irregular") == []
    legal = legal_broken(alerts)
    assert legal.event_time == t("2026-10-13 00:00")
    assert legal.details["extension"] == 3


def test_an_extension_asked_after_the_calendar_end_is_late(cal_engine: Engine) -> None:
    steps: list[Step] = [*ACCEPTED, ("extended", "2026-10-09 09:00")]
    versions = of(run("T-CAL", steps, "2026-11-30 00:00", eng=cal_engine), "extension.irregular")
    assert [a.severity for a in versions] == ["red", "escalated"]  # nobody resolved it
    assert versions[0].details["problems"] == ["late"]


def test_a_working_day_limit_says_so() -> None:
    # T-SIMPLE: 20 working days
    legal = legal_broken(run("T-SIMPLE", ACCEPTED, "2026-11-30 00:00"))
    assert legal.details["legal_unit"] == "working"
    assert (legal.details["legal_unit_zh"], legal.details["legal_limit_zh"]) == ("个工作日", "20 个工作日")


@pytest.mark.parametrize(("decided", "overdue"), [("2026-10-08 23:00", False), ("2026-10-09 10:00", True)])
def test_indicators_count_overdue_by_the_calendar_end(cal_engine: Engine, decided: str,
                                                      overdue: bool) -> None:
    state = None
    for e in events("T-CAL", [*ACCEPTED, ("decided", decided)]):
        ev = parse_event(e)
        state = cal_engine.ingest(state, ev, ev.occurred_at)
    assert state is not None
    timing = IndicatorBook(cal_engine).timing(state, t(decided).timestamp())
    assert timing is not None
    # ~22 working days counted: short of 30, yet beyond the calendar-day limit when late
    assert timing[3] is overdue



def test_the_engine_reports_a_year_without_a_calendar_once() -> None:
    """The worker's metric hook (``on_calendar_fallback``) hears of 2027 once, from the
    case that counts in it, and of no year in between or after."""
    years: list[int] = []
    engine = build_engine(eventkit.TEST_CATALOG, on_calendar_fallback=years.append)
    run("T-SIMPLE", [("submitted", "2026-06-01 09:00"), ("accepted", "2026-06-01 10:00")],
        "2026-12-31 00:00", eng=engine)
    assert years == []
    # accepted Mon 2027-09-27; 20 working days with 中秋 (Wed 09-15) behind and 国庆 Fri 10-01
    # to Tue 10-05 (补假) left out: 09-28..30, 10-06..08, 10-11..15, 18..22, 25..28
    steps: list[Step] = [("submitted", "2027-09-27 09:00"), ("accepted", "2027-09-27 10:00")]
    legal = legal_broken(run("T-SIMPLE", steps, "2027-12-31 00:00", eng=engine))
    assert legal.event_time == t("2027-10-29 00:00")
    run("T-SIMPLE", steps, "2027-12-31 00:00", eng=engine)
    assert years == [2027]


def test_rules_explain_counts_calendar_days(tmp_path: Path) -> None:
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "huanbao.yaml").write_text(CALENDAR_ITEM, encoding="utf-8")
    (tmp_path / "e.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in events("T-CAL", ACCEPTED, case_id="CAL-1")))
    out = subprocess.run(
        [sys.executable, "-m", "jiancha.cli", "rules", "explain", "CAL-1", "--events",
         str(tmp_path / "e.jsonl"), "--until", "2026-11-30T00:00:00+08:00",
         "--catalog", str(tmp_path / "catalog")],
        capture_output=True, text=True, check=False, cwd=eventkit.ROOT)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # as printed, whatever the terminal's width
    assert "promised 10 working days / legal 30 calendar days" in text
    # 09-01 to 24:00 of 10-08: 37 days, 30 by law and the 国庆 break the last day fell in
    assert "clock starts 2026-09-01 (not counted); days counted to the deadline (37):" in text
    assert "the limit ends at 2026-10-08 24:00" in text
