"""Alert texts a supervisor reads: decisions named as the law names them, departments by
name, whole days and hours, every number of a deadline (limit, used, paused, extended),
and ``jiancha rules explain`` saying what the alert says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jiancha.rules.factory import build_engine
from jiancha.rules.messages import elapsed_text, less_than_text, names_en, span_text
from tests.unit.eventkit import ROOT, TEST_CATALOG, events, of, replay_events, run

SUB = ("submitted", "2026-03-02 09:00")
ACC = ("accepted", "2026-03-02 10:00")
UNTIL = "2026-12-31 00:00"
#: a decimal number in a text ("5.6", "60.0"): no alert shows one
FRACTION = re.compile(r"\d\.\d")


def _texts(alert: object) -> str:
    return f"{alert.message_zh} {alert.message_en}"  # type: ignore[attr-defined]


# --- the formatting helpers --------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "zh", "en"), [
    (5.6 * 86400, "5 个工作日又 14 小时", "5 working days and 14 hours"),
    (5 * 86400 + 5 * 3600, "5 个工作日又 5 小时", "5 working days and 5 hours"),
    (1 * 86400, "1 个工作日", "1 working day"),
    (86400 - 600, "1 个工作日", "1 working day"),  # 23 h 50 min: rounded to the hour
    (3 * 3600 + 1200, "3 小时", "3 hours"),
    (40 * 60, "40 分钟", "40 minutes"),
])
def test_span_in_whole_days_and_hours(seconds: float, zh: str, en: str) -> None:
    assert span_text(seconds) == (zh, en)


def test_span_of_calendar_days() -> None:
    assert span_text(3 * 86400, "calendar") == ("3 日", "3 calendar days")


@pytest.mark.parametrize(("days", "zh"), [(1.4, "2 个工作日"), (2, "2 个工作日"), (0.3, "1 个工作日")])
def test_less_than_rounds_up_to_whole_days(days: float, zh: str) -> None:
    assert less_than_text(days)[0] == zh


@pytest.mark.parametrize(("seconds", "zh", "en"), [
    (25 * 3600 + 18 * 60 + 20, "25 小时 18 分钟", "25 hours 18 minutes"),
    (60 * 60, "1 小时", "1 hour"),
    (3 * 86400 + 2 * 3600, "3 天 2 小时", "3 days 2 hours"),
])
def test_elapsed_in_whole_units(seconds: float, zh: str, en: str) -> None:
    assert elapsed_text(seconds) == (zh, en)


def test_names_in_a_sentence() -> None:
    assert names_en(["Tax Bureau"]) == "the Tax Bureau"
    assert names_en(["A", "B", "C"]) == "the A, the B and the C"


# --- the defects of the old texts, one test each --------------------------------------------


def test_refusal_without_reasons_names_the_decision() -> None:
    deny = run("T-SIMPLE", [SUB, ACC, ("decided", "2026-03-04 10:00",
                                      {"outcome": "deny", "reason": None})], UNTIL)
    alert = of(deny, "decision.no_reason")[0]  # (then escalated: nobody resolved it)
    assert "作出不予许可决定但未说明理由" in alert.message_zh
    assert "refusal of the licence" in alert.message_en
    assert "「决定」" not in alert.message_zh
    intake = run("T-SIMPLE", [SUB, ("rejected_at_intake", "2026-03-03 10:00", {"reason": ""})], UNTIL)
    alert = of(intake, "decision.no_reason")[0]
    assert "作出不予受理决定但未说明理由" in alert.message_zh
    assert "refusal to accept the application" in alert.message_en


def test_unlawful_suspension_says_the_time_keeps_counting() -> None:
    alerts = run("T-SIMPLE", [SUB, ACC, ("suspended", "2026-03-04 10:00", {"reason": "等待领导签字"})],
                 UNTIL)
    alert = of(alerts, "suspension.unlawful_reason")[0]
    assert "暂停不计" not in alert.message_zh  # read as "the pause is not counted"
    assert "暂停期间仍计入办理期限" in alert.message_zh
    assert "听证、招标、拍卖、检验、检测、检疫、鉴定、专家评审" in alert.message_zh
    assert "keeps counting" in alert.message_en


def test_approaching_in_whole_days_and_hours() -> None:
    eng = build_engine(TEST_CATALOG)
    # T-SIMPLE promises 10 working days; warn at 14 % of them: 1.4 days left, 8.6 used
    eng.ruleset.rules["deadline.approaching"].params["share_of_promise"] = 0.14
    [alert] = of(run("T-SIMPLE", [SUB, ACC], UNTIL, eng=eng), "deadline.approaching")
    assert alert.details["used"] == 8.6 and alert.details["remaining"] == 1.4  # kept as numbers
    assert "已用 8 个工作日又 14 小时" in alert.message_zh
    assert "剩余不足 2 个工作日" in alert.message_zh
    assert "8 working days and 14 hours used, less than 2 working days left" in alert.message_en
    assert not FRACTION.search(_texts(alert)), _texts(alert)


def test_backdated_minutes_are_whole() -> None:
    evs = events("T-SIMPLE", [SUB, ("accepted", "2026-03-02 11:00"),
                              ("decided", "2026-03-02 10:00")])
    alert = of(replay_events(evs, UNTIL), "reporting.backdated")[0]  # (then escalated)
    assert alert.details["minutes_before"] == 60
    assert "60 分钟" in alert.message_zh and "60 minutes" in alert.message_en
    assert "60.0" not in _texts(alert)


def test_late_report_delay_in_hours_and_minutes() -> None:
    evs = events("T-SIMPLE", [SUB, ACC])
    evs[1]["received_at"] = "2026-03-03T11:18:20+08:00"  # 25 h 18 min after it happened
    [alert] = of(replay_events(evs, UNTIL), "reporting.late")
    assert "25 小时 18 分钟" in alert.message_zh and "25 hours 18 minutes" in alert.message_en
    assert not FRACTION.search(_texts(alert)), _texts(alert)


def test_legal_broken_says_why_an_extension_was_disregarded() -> None:
    alerts = run("T-SHORT", [SUB, ACC, ("extended", "2026-03-03 10:00",
                                        {"days": 3, "approved_by": None})], UNTIL)
    [alert] = [a for a in of(alerts, "deadline.legal_broken") if a.severity == "red"]
    assert alert.details["extension"] == 0  # the key other code reads stays
    assert "延长 0" not in alert.message_zh and "extension of 0" not in alert.message_en
    assert "2026-03-03 的延期因未经行政机关负责人批准不予计入" in alert.message_zh
    assert "the extension of 2026-03-03 does not count: no approval" in alert.message_en


def test_legal_broken_without_extension_names_none() -> None:
    [alert] = [a for a in of(run("T-SHORT", [SUB, ACC], UNTIL), "deadline.legal_broken")
               if a.severity == "red"]
    assert "延长" not in alert.message_zh and "extension" not in alert.message_en
    assert "法定办理期限 2 个工作日（自 2026-03-02 起算）" in alert.message_zh


def test_legal_broken_names_the_unit_of_a_calendar_day_limit() -> None:
    eng = build_engine(TEST_CATALOG)
    item = eng.catalog["T-SHORT"]
    eng.catalog._items["T-SHORT"] = item.model_copy(update={"legal_unit": "calendar"})
    [alert] = [a for a in of(run("T-SHORT", [SUB, ACC], UNTIL, eng=eng), "deadline.legal_broken")
               if a.severity == "red"]
    assert "法定办理期限 2 日" in alert.message_zh and "2 calendar days" in alert.message_en


def test_deadline_messages_show_the_paused_time() -> None:
    steps = [SUB, ACC, ("suspended", "2026-03-03 09:00", {"reason": "inspection"}),
             ("resumed", "2026-03-04 12:00")]
    alerts = run("T-SHORT", steps, UNTIL)
    for rule in ("deadline.promise_broken", "deadline.legal_broken"):
        alert = of(alerts, rule)[0]
        assert "其间依法暂停计时 1 个工作日又 3 小时不计入" in alert.message_zh, rule
        assert "not counting 1 working day and 3 hours of lawful suspension" in alert.message_en
        # 1 day promised from 03-02: 24:00 of 03-03, plus the 27 hours stood: 03-05 03:00
    assert "2026-03-05 03:00" in of(alerts, "deadline.promise_broken")[0].message_zh


def test_explain_says_what_the_alert_says(tmp_path: Path) -> None:
    """A limit that ends at 21:00 because the clock stood: explain says 21:00 too."""
    steps = [SUB, ACC, ("suspended", "2026-03-03 09:00", {"reason": "inspection"}),
             ("resumed", "2026-03-03 12:00")]
    evs = events("T-SHORT", steps, case_id="EXPLAIN-1")
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in evs))
    out = subprocess.run(
        [sys.executable, "-m", "jiancha.cli", "rules", "explain", "EXPLAIN-1", "--events",
         str(path), "--until", "2026-04-30T00:00:00+08:00", "--catalog", str(TEST_CATALOG)],
        capture_output=True, text=True, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    [alert] = of(replay_events(evs, "2026-04-30 00:00"), "deadline.promise_broken")[:1]
    assert alert.details["deadline_text"] == "2026-03-04 03:00"
    assert alert.message_zh in out.stdout
    # the promise_broken part of the explanation, up to the next alert
    part = out.stdout.split(f"red deadline.promise_broken  alert_id {alert.alert_id}")[1]
    part = part.split("alert_id")[0]
    assert "1 working day and 3 hours from the clock start to the deadline, less 3 hours " \
           "the clock stood (lawful suspensions, Art. 45, not counted) = 1 working day" in part
    assert "the limit ends at 2026-03-04 03:00" in part and "24:00" not in part
