"""The alert pages' pure parts: the counted-time chart drawn from an alert the real engine
raised (test catalog, official calendar), the case page's HTML, the CSRF check, and the link
every notification carries."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import make_mocked_request

from jiancha.notifier.casechart import (
    COUNTED,
    EXTENSION,
    counted_by,
    counted_span,
    counted_time_svg,
    day_kind,
)
from jiancha.notifier.pages import AlertPages, alert_page_url
from jiancha.notifier.render import render
from jiancha.notifier.tokens import Principal, Tokens
from jiancha.notifier.types import Notification, NotificationItem
from jiancha.rules.calendar import OfficialCalendar
from jiancha.rules.counted_time import WorkingTime
from jiancha.rules.factory import build_engine
from tests.unit.eventkit import of, run

TZ = ZoneInfo("Asia/Shanghai")
STEPS = [("submitted", "2026-09-21 09:00"), ("accepted", "2026-09-21 10:00"),
         ("suspended", "2026-09-24 15:00", {"reason": "inspection"}), ("resumed", "2026-09-28 12:00"),
         ("extended", "2026-10-15 10:00", {"days": 5, "approved_by": "head-1"})]
BUREAU = Principal("bureau-duty", "bureau")
GONGAN = Principal("gongan-contact", "department", "gongan")


@pytest.fixture(scope="module")
def wt() -> WorkingTime:
    return WorkingTime(OfficialCalendar(), TZ)


@pytest.fixture(scope="module")
def alerts() -> dict[str, dict[str, Any]]:
    raised = [a for a in run("T-SIMPLE", STEPS, "2026-11-30 00:00") if a.severity == "red"]
    return {rule: of(raised, rule)[0].model_dump(mode="json")
            for rule in ("deadline.legal_broken", "deadline.promise_broken")}


def test_the_alert_records_its_suspensions(alerts: dict[str, dict[str, Any]]) -> None:
    d = alerts["deadline.legal_broken"]["details"]
    assert d["paused_spans"] == [["2026-09-24T15:00:00+08:00", "2026-09-28T12:00:00+08:00"]]
    assert d["extension"] == 5 and d["limit"] == 20


def test_the_drawn_count_ends_at_the_limit_where_the_alert_says(
        wt: WorkingTime, alerts: dict[str, dict[str, Any]]) -> None:
    for rule, total in (("deadline.legal_broken", 25), ("deadline.promise_broken", 10)):
        a = alerts[rule]
        span = counted_span(a)
        assert span is not None
        # the arithmetic the chart draws is the engine's: the limit is used up at the deadline
        assert counted_by(wt, span, span.deadline) == pytest.approx(total)
        assert counted_by(wt, span, datetime.fromisoformat(a["details"]["deadline"]).replace(
            hour=0, minute=0)) < total
        svg = counted_time_svg(a, wt)
        assert svg is not None
        assert f'data-deadline="{a["details"]["deadline"]}"' in svg
        used = re.findall(r'<text class="used"[^>]*>([\d.]+)</text>', svg)
        assert used[-1] == str(total)


def test_the_calendar_drawn(wt: WorkingTime, alerts: dict[str, dict[str, Any]]) -> None:
    svg = counted_time_svg(alerts["deadline.legal_broken"], wt)
    assert svg is not None
    kinds = {day: kind for kind, day in re.findall(r'class="day (\w+)" data-date="([\d-]+)"', svg)}
    assert kinds["2026-10-01"] == "holiday" and kinds["2026-10-10"] == "makeup"
    assert kinds["2026-10-17"] == "rest" and kinds["2026-10-19"] == "workday"
    assert day_kind(wt, datetime(2026, 10, 10).date()) == "makeup"
    assert svg.count('class="paused"') == 1 and 'class="extension"' in svg


def test_a_limit_in_calendar_days_drawn_to_its_moved_end(
        wt: WorkingTime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """30 日 from Tue 09-01 end on 10-01, 国庆: moved to 24:00 Thu 10-08 (民法典 第二百零三条);
    the seven days it moved are drawn orange, the count at the deadline is 37 days."""
    from tests.unit import eventkit
    from tests.unit.test_calendar_day_limits import ACCEPTED, CALENDAR_ITEM

    (tmp_path / "huanbao.yaml").write_text(CALENDAR_ITEM, encoding="utf-8")
    monkeypatch.setitem(eventkit.DEPARTMENT, "T-CAL", "huanbao")
    raised = run("T-CAL", ACCEPTED, "2026-11-30 00:00", eng=build_engine(tmp_path))
    a = of(raised, "deadline.legal_broken")[0].model_dump(mode="json")
    svg = counted_time_svg(a, wt)
    assert svg is not None and f'data-deadline="{a["details"]["deadline"]}"' in svg
    used = re.findall(r'<text class="used"[^>]*fill="(#\w+)">([\d.]+)</text>', svg)
    assert used[-1] == (EXTENSION, "37")
    assert all(color == COUNTED for color, n in used if float(n) <= 30)


def test_an_alert_without_counted_time_draws_none(wt: WorkingTime) -> None:
    assert counted_time_svg({"alert_id": "x", "details": {"count": 2}}, wt) is None
    assert counted_time_svg({"alert_id": "x", "details": {"clock_start": "bad", "deadline": "x"}}, wt) is None


def test_the_case_page_forms_follow_the_token(wt: WorkingTime, alerts: dict[str, dict[str, Any]]) -> None:
    pages = AlertPages(None, Tokens([]), wt)  # type: ignore[arg-type]
    a = {**alerts["deadline.legal_broken"], "status": "open", "history": [
        {"at": "2026-11-30T10:00:00+08:00", "by": "notifier", "action": "notified"}]}
    bureau = pages.render_alert(a, BUREAU)
    department = pages.render_alert(a, GONGAN)
    assert all(f'class="{f}"' in bureau for f in ("ack", "resolve", "silence"))
    assert 'class="ack"' in department and 'class="resolve"' not in department
    assert 'class="silence"' not in department
    assert "textarea name=\"note\" rows=\"2\" required" in bureau  # the resolve's note is required
    assert "<script" not in bureau  # no script: the pages work as plain HTML
    resolved = pages.render_alert({**a, "status": "resolved"}, BUREAU)
    assert "<form" not in resolved


def test_the_case_page_says_when_the_alert_escalates(wt: WorkingTime,
                                                    alerts: dict[str, dict[str, Any]]) -> None:
    from jiancha.rules.rulebook import Escalation, load_ruleset

    ruleset = load_ruleset()
    pages = AlertPages(None, Tokens([]), wt, ruleset=ruleset)  # type: ignore[arg-type]
    days = ruleset.escalation_days("deadline.legal_broken")
    assert days is not None
    html = pages.render_alert({**alerts["deadline.legal_broken"], "status": "open"}, BUREAU)
    assert f"within {days} working days of the violation, it escalates" in html
    escalated = {**alerts["deadline.legal_broken"], "severity": "escalated", "status": "open"}
    assert "Escalated (督办)" in pages.render_alert(escalated, BUREAU)
    config = ruleset.rules["deadline.legal_broken"]
    ruleset.rules["deadline.legal_broken"] = config.model_copy(
        update={"escalation": Escalation(never="a reason the rule set gives")})
    html = pages.render_alert({**alerts["deadline.legal_broken"], "status": "open"}, BUREAU)
    assert "Never escalates: a reason the rule set gives" in html


def test_a_form_post_from_another_site_is_refused(wt: WorkingTime) -> None:
    pages = AlertPages(None, Tokens([]), wt, public_url="https://jiancha.example.gov.cn")  # type: ignore[arg-type]

    def post(**headers: str) -> bool:
        return pages.same_site(make_mocked_request("POST", "/alerts/a/resolve",
                                                   headers={"Host": "127.0.0.1:6067", **headers}))

    assert post(Origin="http://127.0.0.1:6067")
    assert post(Origin="https://jiancha.example.gov.cn")
    assert post()  # no Origin: not a browser's cross-site form (the cookie is SameSite=Lax)
    assert not post(Origin="https://elsewhere.example")
    assert not post(Origin="http://127.0.0.1:6067", **{"Sec-Fetch-Site": "cross-site"})


def test_every_notification_links_to_its_alerts_page() -> None:
    n = Notification(notification_id="n1", group_key="g", receiver="department@gongan",
                     channel="webhook", channel_config={}, transition="resolved",
                     department="gongan", rule="deadline.legal_broken", severity="red",
                     items=[NotificationItem(alert_id="dea-1/x", transition="resolved")], created_at=0)
    alert = {"alert_id": "dea-1/x", "status": "resolved", "resolved_by": "bureau-duty (王)",
             "message_zh": "超期", "message_en": "late"}
    out = render(n, [alert], datetime(2026, 11, 30, tzinfo=TZ), "https://jc.example/")
    url = "https://jc.example/alerts/dea-1%2Fx"
    assert alert_page_url("https://jc.example/", "dea-1/x") == url
    assert out.payload["alerts"][0]["url"] == url
    assert url in out.text["zh"] and url in out.text["en"]
    assert "已解决" in out.subject["zh"] and "resolved" in out.subject["en"]
    assert "bureau-duty (王)" in out.text["en"]
    plain = render(n, [alert], datetime(2026, 11, 30, tzinfo=TZ))
    assert "url" not in plain.payload["alerts"][0]


def test_the_time_line_has_the_cases_steps_when_the_worker_wrote_them(
        wt: WorkingTime, alerts: dict[str, dict[str, Any]]) -> None:
    pages = AlertPages(None, Tokens([]), wt)  # type: ignore[arg-type]
    a = alerts["deadline.legal_broken"]
    steps = [{"event_id": "E-1", "step": "submitted", "department": "gongan", "actor": "applicant",
              "occurred_at": "2026-09-01T09:00:00+08:00"},
             {"event_id": "E-2", "step": "accepted", "department": "gongan", "actor": "clerk-3",
              "occurred_at": "2026-09-01T10:00:00+08:00"}]
    html = pages.render_alert({**a, "case_steps": steps}, BUREAU)
    assert "受理 · clerk-3" in html and "acceptance (gongan, E-2)" in html
    assert "every step of the case" in html
    assert "not in Redis" in pages.render_alert(a, BUREAU)
