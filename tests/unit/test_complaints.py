"""Complaints (rules/complaints.py): received at once, overdue after 15 working days without
``complaint_handled`` (with no further event), escalated like any red alert; replay reads
complaints from the same JSON Lines file as the events."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from jiancha.producers.contract import Complaint
from jiancha.rules.complaints import OVERDUE, RECEIVED, ComplaintRules, ComplaintState
from jiancha.rules.factory import build_engine
from jiancha.rules.replay import replay
from tests.unit.eventkit import TEST_CATALOG, engine, events

TZ = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[2]


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def complaint(cid: str, when: str, *, kind: str = "complaint", case_id: str | None = "C-1",
              department: str = "gongan", **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"schema_version": 1, "kind": kind, "complaint_id": cid,
                         "department": department, "occurred_at": t(when).isoformat(), **extra}
    if case_id:
        c["case_id"] = case_id
    if kind == "complaint":
        c.update(category="delay", text="办理太慢")
    return c


def crules() -> ComplaintRules:
    e = engine()
    return ComplaintRules(e.ruleset, e.working_time, e.catalog.departments)


def run(*items: dict[str, Any]) -> tuple[ComplaintRules, ComplaintState]:
    r = crules()
    state = None
    for item in items:
        state, _ = r.ingest(state, Complaint.model_validate(item))
    assert state is not None
    return r, state


# Monday 2026-11-02 10:00: the start day is not counted; 15 working days are Nov 3-6,
# 9-13, 16-20 and 23, so the limit ends at 24:00 on Monday Nov 23.
DEADLINE = t("2026-11-24 00:00")


def test_deadline_is_fifteen_working_days() -> None:
    r, state = run(complaint("Q1", "2026-11-02 10:00"))
    assert r.deadline(state) == DEADLINE


def test_received_at_once_overdue_with_no_event_then_escalated() -> None:
    r, state = run(complaint("Q1", "2026-11-02 10:00"))
    alerts, nxt = r.evaluate(state, t("2026-11-02 10:00"))
    assert [(a.rule, a.severity) for a in alerts] == [(RECEIVED, "yellow")]
    received = alerts[0]
    assert received.case_id == "C-1" and received.department == "gongan"
    assert received.evidence == ["Q1"] and "Q1" in received.message_zh and "C-1" in received.message_zh
    assert "?" not in received.message_zh + received.message_en
    # the overdue alert is due the allowed lateness after the deadline
    assert nxt == DEADLINE + timedelta(minutes=10)
    assert r.evaluate(state, nxt - timedelta(seconds=1)) == ([], nxt)
    alerts, nxt2 = r.evaluate(state, nxt)
    assert [(a.rule, a.severity) for a in alerts] == [(OVERDUE, "red")]
    overdue = alerts[0]
    assert overdue.event_time == DEADLINE and overdue.details["limit"] == 15
    assert overdue.details["deadline_text"] == "2026-11-23 24:00"
    # escalation 5 working days after the deadline (Nov 24-27, 30): 24:00 on Nov 30
    assert nxt2 == t("2026-12-01 00:00")
    alerts, nxt3 = r.evaluate(state, nxt2)
    assert [(a.rule, a.severity) for a in alerts] == [(OVERDUE, "escalated")]
    assert alerts[0].alert_id == overdue.alert_id and alerts[0].message_zh.startswith("【督办】")
    assert nxt3 is None and r.evaluate(state, t("2027-01-01 00:00"))[0] == []


def test_handled_in_time_is_no_alert() -> None:
    r, state = run(complaint("Q1", "2026-11-02 10:00"),
                   complaint("Q1", "2026-11-23 17:00", kind="complaint_handled", case_id=None))
    alerts, nxt = r.evaluate(state, t("2026-12-31 00:00"))
    assert [a.rule for a in alerts] == [RECEIVED] and nxt is None


def test_handled_late_is_overdue_but_not_escalated() -> None:
    r, state = run(complaint("Q1", "2026-11-02 10:00"),
                   complaint("Q1", "2026-11-25 09:00", kind="complaint_handled"))
    alerts, _ = r.evaluate(state, t("2026-12-31 00:00"))
    assert [(a.rule, a.severity) for a in alerts] == [(RECEIVED, "yellow"), (OVERDUE, "red")]


def test_closing_before_the_complaint_and_repeats() -> None:
    r = crules()
    state, new = r.ingest(None, Complaint.model_validate(
        complaint("Q2", "2026-11-03 09:00", kind="complaint_handled")))
    assert not new and r.evaluate(state, t("2026-12-31 00:00")) == ([], None)
    state, new = r.ingest(state, Complaint.model_validate(complaint("Q2", "2026-11-02 10:00")))
    assert new
    state, again = r.ingest(state, Complaint.model_validate(complaint("Q2", "2026-11-02 10:00")))
    assert not again
    assert [a.rule for a in r.evaluate(state, t("2026-12-31 00:00"))[0]] == [RECEIVED]
    assert ComplaintState.decode(state.encode()) == state


def test_a_complaint_about_a_department_without_a_case() -> None:
    r, state = run(complaint("Q3", "2026-11-02 10:00", case_id=None, department="gongshang",
                             item_code="T-FEE"))
    (a,), _ = r.evaluate(state, t("2026-11-02 10:00"))
    assert a.case_id is None and a.department == "gongshang" and a.item_code == "T-FEE"
    assert "工商" in a.message_zh and "办件" not in a.message_zh


def _lines(items: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(i) for i in items]


def test_replay_reads_complaints_from_the_events_file() -> None:
    evs = events("T-SIMPLE", [("submitted", "2026-11-02 09:00"), ("accepted", "2026-11-02 09:30"),
                              ("decided", "2026-11-03 10:00"), ("delivered", "2026-11-04 10:00")],
                 case_id="C-1")
    items = [*evs[:2], complaint("Q1", "2026-11-02 10:00"), *evs[2:],
             complaint("Q4", "2026-11-03 11:00", case_id=None),
             complaint("Q4", "2026-11-04 11:00", kind="complaint_handled"),
             {"schema_version": 1, "complaint_id": "BAD"}]  # no department, no time
    result = replay(_lines(items), build_engine(TEST_CATALOG), t("2026-12-31 00:00"))
    assert result.events == 4 and result.complaints == 3
    assert result.rejected == {} and result.rejected_complaints == {"invalid_complaint": 1}
    assert "line 8: invalid_complaint" in result.problems[0]
    got = [(a.rule, a.severity, a.details.get("complaint_id")) for a in result.alerts
           if a.rule.startswith("complaint.")]
    assert got == [(RECEIVED, "yellow", "Q1"), (RECEIVED, "yellow", "Q4"),
                   (OVERDUE, "red", "Q1"), (OVERDUE, "escalated", "Q1")]
    # fired with no event: the last line is on Nov 4, the deadline is Nov 24
    overdue = next(a for a in result.alerts if a.rule == OVERDUE)
    assert overdue.event_time == DEADLINE


def test_replay_cli_with_complaints(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    items = [*events("T-SIMPLE", [("submitted", "2026-11-02 09:00")], case_id="C-9"),
             complaint("Q9", "2026-11-02 10:00", case_id="C-9")]
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    out = subprocess.run([sys.executable, "-m", "jiancha.cli", "replay", str(path), "--until",
                          "2026-11-30T00:00:00+08:00", "--catalog", str(TEST_CATALOG)],
                         capture_output=True, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr.decode()
    rules = [json.loads(line)["rule"] for line in out.stdout.splitlines()]
    assert rules.count(RECEIVED) == 1 and rules.count(OVERDUE) == 1


def test_complaint_producer_validates_and_keys_by_case_or_department() -> None:
    import pytest

    from jiancha.producers.complaints import ComplaintValidationError, encode_complaint

    key, value = encode_complaint(complaint("Q1", "2026-11-02 10:00"))
    assert key == b"C-1" and orjson.loads(value)["complaint_id"] == "Q1"
    key, _ = encode_complaint(complaint("Q2", "2026-11-02 10:00", case_id=None))
    assert key == b"gongan"
    with pytest.raises(ComplaintValidationError) as bad:
        encode_complaint({"schema_version": 1, "complaint_id": "Q3", "occurred_at": "yesterday"})
    fields = {f for f, _ in bad.value.problems}
    assert {"department", "occurred_at"} <= fields
