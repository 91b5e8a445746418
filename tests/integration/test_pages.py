"""The alert pages as a person uses them: Debian's Chromium driven by Playwright against a real
notifier process and a real redis-server, the alerts written by the worker's own Redis sink
(a case's alerts computed by the real engine).

A department's login link lists that department's alerts only, and another department's
alert is as absent as one that does not exist; the case page draws the limit where the alert
says it ran out; a resolve from the page (with its required note) changes the status in
Redis and reaches the department's webhook as a ``resolved`` notification that links back to
the page. Each page is saved as a screenshot in the test's temporary directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jiancha.embedded import EmbeddedStack
from jiancha.producers.contract import Alert
from tests.integration.test_notifier import (
    BUREAU,
    GONGAN,
    PASSWORD,
    Hook,
    NotifierProcess,
    alert,
)
from tests.needs_browser import require_browser
from tests.unit.eventkit import of, run
from tests.wait import wait_for

pytestmark = pytest.mark.integration

#: a T-SIMPLE case across 国庆 2026: suspended for an inspection, extended by 5 days, undecided
CASE_STEPS = [("submitted", "2026-09-21 09:00"), ("accepted", "2026-09-21 10:00"),
              ("suspended", "2026-09-24 15:00", {"reason": "inspection"}),
              ("resumed", "2026-09-28 12:00"),
              ("extended", "2026-10-15 10:00", {"days": 5, "approved_by": "head-1"})]


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    s = EmbeddedStack(redis_password=PASSWORD)
    s.start_redis()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


@pytest.fixture(scope="module")
def case_alerts() -> dict[str, Alert]:
    alerts = [a for a in run("T-SIMPLE", CASE_STEPS, "2026-11-30 00:00") if a.severity == "red"]
    return {"legal": of(alerts, "deadline.legal_broken")[0],
            "promise": of(alerts, "deadline.promise_broken")[0]}


@pytest.fixture(scope="module")
def notifier(stack: EmbeddedStack, hook: Hook, case_alerts: dict[str, Alert],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifierProcess]:
    routing = {
        "defaults": {"group_wait": "0.2s", "group_interval": "0.5s", "repeat_interval": 0},
        "contacts": {d: {"hook": hook.url + f"?d={d}"} for d in ("gongan", "gongshang")},
        "receivers": {"department": {"channels": [
            {"type": "webhook", "url": "{contact.hook}", "secret_env": "JC_TEST_HOOK_KEY"}]}},
        "routes": [{"match": {"severity": ["red", "escalated"]}, "receivers": ["department"]}],
    }
    n = NotifierProcess(stack, tmp_path_factory.mktemp("pages"), routing, "2026-11-30T10:00:00+08:00")
    n.env["JIANCHA_NOTIFIER_PUBLIC_URL"] = f"http://127.0.0.1:{n.api_port}"
    n.start()
    n.publish(*case_alerts.values(), alert("pg-gs-1", "gongshang"), alert("pg-gs-2", "gongshang"),
              alert("pg-ga-1", "gongan", rule="actor.conflict"))
    wait_for(lambda: len(hook.payloads()) >= 2, what="the alerts' notifications")
    yield n
    n.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path)
        yield b
        b.close()


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def base(n: NotifierProcess) -> str:
    return f"http://127.0.0.1:{n.api_port}"


def test_a_department_sees_its_own_alerts_only(notifier: NotifierProcess, browser: Any,
                                               case_alerts: dict[str, Alert], screens: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    resp = page.goto(f"{base(notifier)}/alerts")
    assert resp.status == 401 and page.locator("input[name=token]").count() == 1
    page.goto(f"{base(notifier)}/login?token={GONGAN}")
    assert page.url == f"{base(notifier)}/alerts"  # the token is not left in the address
    rows = page.locator("tr.alert-row")
    departments = rows.evaluate_all("rs => rs.map(r => r.dataset.department)")
    shown = set(rows.evaluate_all("rs => rs.map(r => r.dataset.alertId)"))
    assert departments and set(departments) == {"gongan"}
    assert shown == {case_alerts["legal"].alert_id, case_alerts["promise"].alert_id, "pg-ga-1"}
    # asking for another department is answered with one's own
    page.goto(f"{base(notifier)}/alerts?department=gongshang&status=all")
    assert set(page.locator("tr.alert-row").evaluate_all("rs => rs.map(r => r.dataset.department)")) \
        == {"gongan"}
    page.goto(f"{base(notifier)}/alerts")
    page.screenshot(path=str(screens / "alert-list-gongan.png"), full_page=True)
    # another department's alert and an alert that does not exist: the same answer
    other = page.goto(f"{base(notifier)}/alerts/pg-gs-1")
    other_text = page.locator("h1").inner_text()
    absent = page.goto(f"{base(notifier)}/alerts/no-such-alert")
    assert other.status == absent.status == 404 and page.locator("h1").inner_text() == other_text
    # the filters: rule
    page.goto(f"{base(notifier)}/alerts?rule=actor.*")
    assert page.locator("tr.alert-row").evaluate_all("rs => rs.map(r => r.dataset.alertId)") == ["pg-ga-1"]
    # a department may acknowledge its own alert, not resolve or silence it
    page.goto(f"{base(notifier)}/alerts/{case_alerts['promise'].alert_id}")
    assert page.locator("form.ack").count() == 1
    assert page.locator("form.resolve").count() == page.locator("form.silence").count() == 0
    page.fill("form.ack textarea[name=note]", "已通知经办人 handler told")
    page.click("form.ack button[type=submit]")
    assert page.locator("article.alert").get_attribute("data-status") == "acknowledged"
    assert notifier.redis().hget(f"{notifier.prefix}alert:{case_alerts['promise'].alert_id}",
                                 "acknowledged_by") == "gongan-contact"
    context.close()


def test_the_case_page_draws_the_alerts_limit(notifier: NotifierProcess, browser: Any,
                                              case_alerts: dict[str, Alert], screens: Path) -> None:
    legal = case_alerts["legal"]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{base(notifier)}/login?token={BUREAU}")
    page.click(f"tr[data-alert-id='{legal.alert_id}'] a")
    assert page.url == f"{base(notifier)}/alerts/{legal.alert_id}"
    svg = page.locator("svg.counted-time")
    assert svg.locator("g.deadline").get_attribute("data-deadline") == legal.details["deadline"]
    assert svg.locator("g.clock-start").get_attribute("data-clock-start") == legal.details["clock_start"]
    assert svg.get_attribute("data-limit") == str(legal.details["limit"])
    assert svg.get_attribute("data-extension") == str(legal.details["extension"]) == "5"
    # the suspension drawn, 国庆 drawn as holidays, Sat 10 Oct as a make-up working day
    assert svg.locator("rect.paused").count() == len(legal.details["paused_spans"]) == 1
    assert svg.locator("rect.day.holiday[data-date='2026-10-01']").count() == 1
    assert svg.locator("rect.day.makeup[data-date='2026-10-10']").count() == 1
    # the drawn line stands where the deadline is: the last counted day is the total
    box = svg.locator("g.deadline line").bounding_box()
    last_used = svg.locator("text.used").last
    assert last_used.text_content() == str(legal.details["total"])
    assert abs(last_used.bounding_box()["x"] - box["x"]) < 40
    assert page.locator("strong.deadline").get_attribute("data-deadline") == legal.details["deadline"]
    page.screenshot(path=str(screens / "case-page.png"), full_page=True)
    context.close()


def test_resolve_from_the_page(notifier: NotifierProcess, hook: Hook, browser: Any,
                               case_alerts: dict[str, Alert], screens: Path) -> None:
    legal = case_alerts["legal"]
    url = f"{base(notifier)}/alerts/{legal.alert_id}"
    told = wait_for(lambda: [p for p in hook.payloads() if legal.alert_id in
                             [a["alert_id"] for a in p["alerts"]]], what="the department told")
    assert told[0]["transition"] == "open"
    assert [a["url"] for a in told[0]["alerts"] if a["alert_id"] == legal.alert_id] == [url]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{base(notifier)}/login?token={BUREAU}")
    # a form posted from another site is refused (the cookie is there, the origin is not ours)
    forged = context.request.post(f"{url}/resolve", form={"note": "x"},
                                  headers={"Origin": "http://elsewhere.example"})
    assert forged.status == 403
    # without a note: the browser asks for one, and the server refuses one sent empty
    page.goto(url)
    page.click("form.resolve button[type=submit]")
    assert page.url == url and page.locator("form.resolve textarea:invalid").count() == 1
    empty = context.request.post(f"{url}/resolve", form={"note": " "}, headers={"Origin": base(notifier)})
    assert empty.status == 400
    r = notifier.redis()
    assert r.hget(f"{notifier.prefix}alert:{legal.alert_id}", "status") == "open"
    page.fill("form.resolve input[name=by]", "王科长")
    page.fill("form.resolve textarea[name=note]", "已督促作出决定 decision ordered")
    page.click("form.resolve button[type=submit]")
    assert page.locator("article.alert").get_attribute("data-status") == "resolved"
    assert page.locator("form.resolve").count() == 0
    assert r.hget(f"{notifier.prefix}alert:{legal.alert_id}", "status") == "resolved"
    assert r.hget(f"{notifier.prefix}alert:{legal.alert_id}", "resolved_by") == "bureau-duty (王科长)"
    resolved = [json.loads(x) for x in r.lrange(f"{notifier.prefix}alert:{legal.alert_id}:history", 0, -1)
                if json.loads(x)["action"] == "resolved"]
    assert [h["note"] for h in resolved] == ["已督促作出决定 decision ordered"]
    assert "已督促作出决定" in page.locator("ol.timeline").inner_text()
    (note,) = wait_for(lambda: [p for p in hook.payloads() if p["transition"] == "resolved"],
                       what="the resolved notification")
    (item,) = note["alerts"]
    assert item["alert_id"] == legal.alert_id and item["status"] == "resolved"
    assert item["url"] == url and note["receiver"] == "department@gongan"
    page.screenshot(path=str(screens / "case-page-resolved.png"), full_page=True)
    context.close()
