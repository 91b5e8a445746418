"""Performance indicators and scores (rules/indicators.py), on a month computed by hand
that contains the National Day holiday, plus the score's caps and the report CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from jiancha.producers.contract import Alert
from jiancha.rules.factory import build_engine
from jiancha.rules.indicators import (
    Acc,
    IndicatorBook,
    PeriodError,
    ScoringConfig,
    current_periods,
    month_of,
    month_score,
    period_months,
    report_rows,
    rows_csv,
)
from jiancha.rules.replay import replay
from tests.unit.eventkit import TEST_CATALOG, events

TZ = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[2]
UNTIL = "2026-11-01T00:00:00+08:00"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def october() -> list[dict[str, Any]]:
    """gongan, item T-SIMPLE (promise 10 working days, legal 20), October 2026.

    National Day: Oct 1-7 are holidays, Sat Oct 10 is a make-up working day.
    """
    deciders = {"actor": "h2"}
    a = events("T-SIMPLE", [("submitted", "2026-09-30 09:00"), ("accepted", "2026-09-30 10:00"),
                            ("decided", "2026-10-09 15:36", deciders),
                            ("delivered", "2026-10-10 10:00")], case_id="A")
    b = events("T-SIMPLE", [("submitted", "2026-10-08 09:00"), ("accepted", "2026-10-08 09:30"),
                            ("decided", "2026-10-22 12:00", deciders),
                            ("delivered", "2026-10-23 10:00")], case_id="B")
    c = events("T-SIMPLE", [("submitted", "2026-10-12 09:00"), ("supplement_requested", "2026-10-12 11:00"),
                            ("supplement_received", "2026-10-13 09:00"), ("accepted", "2026-10-13 10:00"),
                            ("decided", "2026-10-14 09:36", deciders),
                            ("delivered", "2026-10-15 10:00")], case_id="C")
    d = events("T-SIMPLE", [("submitted", "2026-10-26 09:00"), ("accepted", "2026-10-26 10:00")],
               case_id="D")
    e = events("T-SIMPLE", [("submitted", "2026-10-15 09:00"),
                            ("rejected_at_intake", "2026-10-15 11:00")], case_id="E")
    complaint = {"schema_version": 1, "complaint_id": "Q-B", "department": "gongan",
                 "case_id": "B", "occurred_at": t("2026-10-23 10:00").isoformat(),
                 "category": "delay"}
    handled = {**complaint, "kind": "complaint_handled",
               "occurred_at": t("2026-10-28 10:00").isoformat()}
    out = sorted(a + b + c + d + e, key=lambda x: x["occurred_at"])
    return [*out, complaint, handled]


def run_month() -> tuple[IndicatorBook, list[Alert]]:
    eng = build_engine(TEST_CATALOG)
    book = IndicatorBook(eng)
    result = replay((orjson.dumps(x) for x in october()), eng, datetime.fromisoformat(UNTIL),
                    indicators=book)
    assert not result.problems
    return book, result.alerts


def test_the_month_alerts_as_expected() -> None:
    _, alerts = run_month()
    got = sorted((a.rule, a.severity, a.case_id, a.event_time.isoformat()) for a in alerts)
    assert got == [
        ("complaint.received", "yellow", "B", "2026-10-23T10:00:00+08:00"),
        # B: the promise (10 working days from Oct 8: Oct 9, 10, 12-16, 19-21) ends at 24:00 Oct 21
        ("deadline.approaching", "yellow", "B", "2026-10-20T00:00:00+08:00"),
        ("deadline.promise_broken", "red", "B", "2026-10-22T00:00:00+08:00"),
    ]


def test_indicators_of_a_month_with_a_holiday() -> None:
    book, _ = run_month()
    (row,) = report_rows(book.store, "2026-10", "department", book.scoring, book.catalog)
    assert row["name"] == "gongan" and row["name_zh"] == "公安局"
    # received: B, C, D, E (A was submitted in September); accepted: B, C, D
    assert (row["received"], row["accepted"], row["decided"], row["timed"]) == (4, 3, 3, 3)
    # counted working days to decision (start day not counted, Oct 1-7 holidays):
    #   A: Oct 8 + 15:36/24 of Oct 9 = 1.65; B: Oct 9, 10, 12-16, 19-21 + 0.5 = 10.5 (> 10);
    #   C: accepted Oct 13, decided 09:36 on Oct 14 = 0.4
    assert (row["on_time"], row["early"], row["overdue"]) == (2, 2, 0)
    assert row["on_time_rate"] == row["early_rate"] == 0.6667 and row["overdue_rate"] == 0
    assert row["mean_days"] == 4.18  # (1.65 + 10.5 + 0.4) / 3 = 4.1833
    assert row["p90_days"] == 10.5  # nearest rank: ceil(0.9 x 3) = the 3rd
    assert (row["yellow"], row["red"], row["escalated"]) == (2, 1, 0)
    assert row["complaints"] == 1 and row["complaints_per_1000"] == 250.0  # 1 of 4 received
    assert row["supplement_cases"] == 1 and row["supplement_rate"] == 0.25
    # 100 - 5 (approaching; complaint.received scores 0) - 10 (red) + 5 (66 % early: 6 steps, cap 5)
    assert row["score"] == 90


def test_items_and_handlers() -> None:
    book, _ = run_month()
    (item,) = report_rows(book.store, "2026-10", "item", book.scoring, book.catalog)
    assert item["name"] == "T-SIMPLE" and item["department"] == "gongan" and item["decided"] == 3
    handlers = {r["name"]: r for r in report_rows(book.store, "2026-10", "handler", book.scoring,
                                                  book.catalog)}
    assert set(handlers) == {"gongan/h1", "gongan/h2"}
    assert (handlers["gongan/h1"]["accepted"], handlers["gongan/h1"]["decided"]) == (3, 0)
    assert (handlers["gongan/h2"]["accepted"], handlers["gongan/h2"]["decided"]) == (0, 3)
    # the deadline alerts name the handler who accepted the case
    assert (handlers["gongan/h1"]["yellow"], handlers["gongan/h1"]["red"]) == (1, 1)
    assert handlers["gongan/h2"]["mean_days"] == 4.18


def test_quarter_and_year_are_the_mean_of_the_monthly_scores() -> None:
    book, _ = run_month()
    assert report_rows(book.store, "2026-09", "department", book.scoring)[0]["score"] == 100
    (q4,) = report_rows(book.store, "2026-Q4", "department", book.scoring)
    assert q4["score"] == 90 and q4["months"] == 1
    (year,) = report_rows(book.store, "2026", "department", book.scoring)
    assert year["score"] == 95 and year["months"] == 2  # (100 + 90) / 2
    assert year["received"] == 5 and year["accepted"] == 4  # indicators add up over months
    (h2,) = report_rows(book.store, "2026-H2", "department", book.scoring)
    assert h2["score"] == 95


def test_the_book_is_the_same_however_it_is_partitioned() -> None:
    """The worker keeps one accumulator per partition; merged they equal replay's."""
    book, _ = run_month()
    halves: dict[tuple[str, str, str], Acc] = {}
    for key, acc in book.store.items():
        left = Acc.decode(acc.encode())
        right = Acc.decode(acc.encode())
        halves[key] = left.merge(right)
    doubled = report_rows(halves, "2026-10", "department", book.scoring)[0]
    single = report_rows(book.store, "2026-10", "department", book.scoring)[0]
    assert doubled["decided"] == 2 * single["decided"]
    assert (doubled["mean_days"], doubled["p90_days"], doubled["on_time_rate"]) == (
        single["mean_days"], single["p90_days"], single["on_time_rate"])


def test_an_event_counts_the_same_whether_or_not_its_state_ends_with_it() -> None:
    """The book takes an event's time from the state's last fact when that is the event
    (the worker and replay hand it so); a state that goes on past the event is counted
    by the kinds of its facts, with the same result on this month."""
    from jiancha.producers.contract import parse_event
    from jiancha.rules.case import CaseState

    usual, _ = run_month()
    eng = build_engine(TEST_CATALOG)
    book = IndicatorBook(eng)
    ended: dict[str, CaseState] = {}
    evs = [parse_event(x) for x in october() if "event_id" in x]
    for ev in evs:  # each case whole first, then each event against it
        ended[ev.case_id] = eng.ingest(ended.get(ev.case_id), ev, ev.occurred_at)
    taken: dict[str, int] = {}
    for ev in evs:
        state = ended[ev.case_id]
        n = taken[ev.case_id] = taken.get(ev.case_id, 0) + 1
        before = state.upto(n)
        # the state as it was after the event (fast path) or with later facts (by kind);
        # the decisions need it as it was (their timing reads the facts up to them)
        book.on_event(ev, before if ev.step.value == "decided" else state)

    def events_only(acc: Acc) -> bytes:  # without the alerts and complaints replay adds
        copy = Acc.decode(acc.encode())
        copy.alerts, copy.complaints = {}, 0
        return copy.encode()

    assert {k: events_only(v) for k, v in book.store.items()} == {
        k: events_only(v) for k, v in usual.store.items() if events_only(v) != Acc().encode()}


# --- score caps -----------------------------------------------------------------------------


def acc(yellow: int = 0, red: int = 0, escalated: int = 0, early: int = 0, timed: int = 0,
        **rules: dict[str, int]) -> Acc:
    a = Acc(timed=timed, decided=timed, early=early)
    a.alerts = {"deadline.approaching": {"yellow": yellow}, "deadline.promise_broken":
                {"red": red, "escalated": escalated}}
    for rule, by in rules.items():
        a.alerts[rule.replace("_", ".", 1)] = by
    return a


CFG = ScoringConfig.from_ruleset(build_engine(TEST_CATALOG).ruleset)  # rules/ruleset/scoring.yaml


@pytest.mark.parametrize(("a", "score"), [
    (acc(), 100),
    (acc(yellow=3), 85),
    (acc(yellow=4), 80),
    (acc(yellow=9), 80),  # yellow deductions capped at 20 a month
    (acc(red=2), 80),
    (acc(red=1, escalated=1), 75),  # escalated: -15 on top of the -10 it had as red
    (acc(red=12), 0),  # never below 0
    (acc(early=10, timed=10), 100),  # never above 100
    (acc(red=1, early=55, timed=100), 95),  # +5: 5 full 10 % steps
    (acc(red=1, early=49, timed=100), 94),  # +4
    (acc(red=1, early=100, timed=100), 95),  # bonus capped at +5
    (acc(red=1, early=9, timed=100), 90),  # less than one full step
    (acc(complaint_received={"yellow": 7}), 100),  # per-rule points in scoring.yaml: 0
])
def test_month_score(a: Acc, score: float) -> None:
    assert month_score(a, CFG) == score


def test_scoring_is_configuration() -> None:
    cfg = ScoringConfig.model_validate({"deductions": {"yellow": {"points": 2}, "red": {"points": 1}},
                                        "max_score": None, "bonus": {"points": 2, "step": 0.25, "cap": 8}})
    assert month_score(acc(yellow=30, red=1, early=100, timed=100), cfg) == 100 - 60 - 1 + 8
    assert month_score(acc(early=50, timed=100), cfg) == 104
    with pytest.raises(ValueError, match="scoring"):
        from jiancha.rules.rulebook import RuleSet

        ScoringConfig.from_ruleset(RuleSet(rules={}, scoring={"start": "lots"}))


def test_periods() -> None:
    assert period_months("2026-11") == ["2026-11"]
    assert period_months("2026-q4") == ["2026-10", "2026-11", "2026-12"]
    assert period_months("2026-H1")[-1] == "2026-06" and len(period_months("2026")) == 12
    for bad in ("2026-13", "26-11", "2026-Q5", "last month"):
        with pytest.raises(PeriodError):
            period_months(bad)
    assert current_periods(t("2027-01-15 10:00"), TZ) == [
        "2027-01", "2026-12", "2027-Q1", "2026-Q4", "2027-H1", "2027"]


def test_rows_csv_quotes_and_blanks() -> None:
    text = rows_csv([{"period": "2026-10", "scope": "department", "rank": 1, "name": "a,b",
                      "score": 90.0, "mean_days": None}])
    assert text.splitlines()[1].startswith('2026-10,department,1,"a,b",,90,')


# --- the report CLI -----------------------------------------------------------------------


def _report(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jiancha.cli", "report", "--events", str(path),
                           "--catalog", str(TEST_CATALOG), "--until", UNTIL, *extra],
                          capture_output=True, text=True, check=False, cwd=ROOT)


def test_report_cli_formats(tmp_path: Path) -> None:
    path = tmp_path / "october.jsonl"
    other = events("T-FEE", [("submitted", "2026-10-12 09:00"), ("accepted", "2026-10-12 10:00"),
                             ("reviewed", "2026-10-12 11:00"),
                             ("decided", "2026-10-13 10:00", {"actor": "h2"}),
                             ("delivered", "2026-10-14 10:00")], case_id="F")
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n"
                            for x in sorted(october() + other, key=lambda x: x["occurred_at"])))
    md = _report(path, "--period", "2026-10")
    assert md.returncode == 0, md.stderr
    lines = md.stdout.splitlines()
    assert lines[0].startswith("绩效评估") and lines[2].startswith("| rank | name | name_zh | score")
    # ranked: gongshang (one early decision, no alert) before gongan (score 90)
    assert lines[4].startswith("| 1 | gongshang | 工商行政管理局 | 100 |")
    assert lines[5].startswith("| 2 | gongan | 公安局 | 90 | 4 | 3 | 3 | 0.6667 | 0.6667 | 0 | 4.18 | 10.5 |")
    csv_out = _report(path, "--period", "2026-10", "--format", "csv")
    rows = [line.split(",") for line in csv_out.stdout.splitlines()]
    assert rows[0][:5] == ["period", "scope", "rank", "name", "name_zh"]
    assert [r[3] for r in rows[1:]] == ["gongshang", "gongan"]
    js = json.loads(_report(path, "--period", "2026-Q4", "--format", "json").stdout)
    assert js["period"] == "2026-Q4" and [r["name"] for r in js["rows"]] == ["gongshang", "gongan"]
    items = _report(path, "--period", "2026-10", "--scope", "item", "--department", "gongan",
                    "--format", "csv")
    assert [line.split(",")[3] for line in items.stdout.splitlines()[1:]] == ["T-SIMPLE"]


def test_report_cli_errors(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("")
    bad = _report(path, "--period", "November")
    assert bad.returncode == 2 and "period" in bad.stderr
    both = _report(path, "--period", "2026-11", "--url", "http://127.0.0.1:9")
    assert both.returncode == 2 and "exactly one" in both.stderr


def test_replay_writes_indicators(tmp_path: Path) -> None:
    path = tmp_path / "october.jsonl"
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in october()))
    out_file = tmp_path / "ind.json"
    out = subprocess.run([sys.executable, "-m", "jiancha.cli", "replay", str(path), "--until", UNTIL,
                          "--catalog", str(TEST_CATALOG), "--indicators", str(out_file)],
                         capture_output=True, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    report = json.loads(out_file.read_text())
    assert list(report["periods"]) == ["2026-09", "2026-10", "2026-Q3", "2026-Q4", "2026-H2", "2026"]
    assert report["periods"]["2026-10"]["department"][0]["score"] == 90


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Asia/Kathmandu", "America/St_Johns", "UTC"])
def test_month_of_is_the_local_month_around_month_ends(zone: str) -> None:
    """``month_of`` keeps months per quarter hour: around every month end of two years,
    minute by minute, it says what a datetime in the zone says."""
    tz = ZoneInfo(zone)
    for year in (2025, 2026):
        for month in range(1, 13):
            end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz).timestamp()
            for minute in range(-90, 90, 7):
                ts = end + minute * 60 + 0.5
                expected = datetime.fromtimestamp(ts, tz).strftime("%Y-%m")
                assert month_of(ts, tz) == expected
                assert month_of(datetime.fromtimestamp(ts, tz), tz) == expected
