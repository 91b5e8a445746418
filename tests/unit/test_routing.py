"""Notification routing (notifier/routing.py) and the pure parts around it: the
loader's errors, matching with fall-through, templates, timing, working hours on the
official calendar, silences, tokens, webhook signatures and the rendered texts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jiancha.notifier.render import render
from jiancha.notifier.routing import (
    DEFAULT_ROUTING_FILE,
    RoutingError,
    WorkingHours,
    WorkingHoursClock,
    load_routing,
    parse_duration,
    parse_routing,
)
from jiancha.notifier.store import Silence, matching_silence
from jiancha.notifier.tokens import TokensError, load_tokens, parse_tokens
from jiancha.notifier.types import Notification, NotificationItem
from jiancha.notifier.webhook import sign, verify
from jiancha.rules.calendar import OfficialCalendar

ROOT = Path(__file__).resolve().parents[2]
TZ = ZoneInfo("Asia/Shanghai")

BASE: dict[str, Any] = {
    "defaults": {"group_wait": "10s", "group_interval": "1m", "repeat_interval": "1h"},
    "contacts": {"gongan": {"email": ["a@ga.example", "b@ga.example"], "hook": "https://ga.example/h"}},
    "handlers": {"h1": {"email": "h1@ga.example"}},
    "receivers": {
        "bureau": {"channels": [{"type": "stream", "stream": "notifications:bureau"}]},
        "contact": {"channels": [{"type": "email", "to": ["{contact.email}", "x@bureau.example"]},
                                 {"type": "webhook", "url": "{contact.hook}", "secret_env": "K"}]},
        "handler": {"channels": [{"type": "email", "to": ["{handler.email}"]}]},
        "ops": {"per": "department",
                "channels": [{"type": "stream", "stream": "notifications:ops:{department}"}]},
    },
    "routes": [
        {"match": {"escalated": True}, "receivers": ["bureau"], "continue": True},
        {"match": {"department": "gong*", "rule": ["fee.*", "actor.*"]}, "receivers": ["bureau", "contact"],
         "repeat_interval": "1d", "group_wait": 0},
        {"match": {"severity": ["red", "escalated"]}, "receivers": ["handler", "contact", "bureau"]},
        {"match": {"severity": "yellow", "department": ["minzheng"]}, "receivers": ["ops"],
         "continue": True},
        {"match": {"severity": "yellow"}, "receivers": ["handler"]},
    ],
    "default_receivers": ["bureau"],
}


def routing(**changes: Any) -> Any:
    return parse_routing({**BASE, **changes}, "routing.yaml")


def receivers(department: str | None, rule: str, severity: str, actor: str | None = "h1") -> list[str]:
    targets, _ = routing().targets(department, rule, severity, actor)
    return [t.receiver for t in targets]


# --- loading -----------------------------------------------------------------------------------


def test_shipped_routing_files_load() -> None:
    for path in (DEFAULT_ROUTING_FILE, ROOT / "deploy" / "notifier" / "routing.example.yaml"):
        r = load_routing(path)
        assert r.receivers and r.routes
        targets, problems = r.targets("gongan", "deadline.legal_broken", "escalated", "h1")
        assert "bureau" in [t.receiver for t in targets], path
        assert not problems, problems
    example = ROOT / "deploy" / "notifier" / "tokens.example.yaml"
    tokens = load_tokens(example)
    # the example shows the shape only: no token in clear, none that opens the API
    assert not re.search(r"^\s*(- )?token:", example.read_text(encoding="utf-8"), re.M)
    assert tokens.authenticate("change-me-bureau-token") is None


@pytest.mark.parametrize(("change", "message"), [
    ({"routes": [{"receivers": ["nobody"]}]}, "routes.0.receivers.0: unknown receiver 'nobody'"),
    ({"default_receivers": ["ghost"]}, "default_receivers.0: unknown receiver 'ghost'"),
    ({"routes": [{"match": {"severity": ["green"]}, "receivers": ["bureau"]}]},
     "routes.0.match.severity.0: Input should be 'yellow', 'red' or 'escalated'"),
    ({"routes": [{"match": {"colour": "red"}, "receivers": ["bureau"]}]},
     "routes.0.match.colour: Extra inputs are not permitted"),
    ({"defaults": {"group_wait": "soon"}}, "defaults.group_wait: expected a duration"),
    ({"receivers": {"b": {"channels": [{"type": "webhook", "url": "ftp://x"}]}}},
     "receivers.b.channels.0.url"),
    ({"receivers": {"b": {"channels": [{"type": "pager"}]}}}, "receivers.b.channels.0"),
    ({"receivers": {"b": {"channels": []}}}, "receivers.b.channels: List should have at least 1 item"),
    ({"receivers": {"b": {"channels": [{"type": "stream"}, {"type": "stream"}]}}},
     "receivers.b: channel name 'stream' used twice"),
    ({"receivers": {"b": {"channels": [{"type": "email", "to": ["{case_id}@x"]}]}}},
     "unknown placeholder {case_id}"),
    ({"working_hours": {"start": "18:00", "end": "09:00"}}, "working_hours: end must be after start"),
])
def test_errors_name_file_and_key(change: dict[str, Any], message: str) -> None:
    doc = {**BASE, **change}
    if "receivers" in change and "routes" not in change:
        doc["routes"], doc["default_receivers"] = [], []
    with pytest.raises(RoutingError) as exc:
        parse_routing(doc, "deploy/routing.yaml")
    assert str(exc.value).startswith("deploy/routing.yaml: ")
    assert message in str(exc.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match=r"missing\.yaml: cannot read"):
        load_routing(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("receivers: [unclosed\n")
    with pytest.raises(RoutingError, match=r"bad\.yaml: not valid YAML"):
        load_routing(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(RoutingError, match=r"bad\.yaml: expected a mapping"):
        load_routing(bad)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("4h", 14400), ("1d", 86400), ("250ms", 0.25), (12, 12), ("1.5", 1.5),
])
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "-1s", True, "1w"])
def test_bad_durations(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


# --- matching ----------------------------------------------------------------------------------


def test_first_match_ends_unless_continue() -> None:
    # red deadline alert: route 2 (handler, contact, bureau)
    assert receivers("gongan", "deadline.promise_broken", "red") == [
        "handler@h1", "contact@gongan", "bureau"]
    # escalated: route 0 (bureau, continue) then route 2; the bureau only once
    assert receivers("gongan", "deadline.promise_broken", "escalated") == [
        "bureau", "handler@h1", "contact@gongan"]
    # fee alert in a gong* department: route 1 ends it (no handler)
    assert receivers("gongshang", "fee.unauthorized", "red") == ["bureau"]  # no contact for gongshang
    assert receivers("gongan", "fee.over_standard", "red") == ["bureau", "contact@gongan"]
    # the department glob does not match minzheng: route 2
    assert receivers("minzheng", "fee.unauthorized", "red", None) == ["bureau"]
    # yellow minzheng: route 3 continues into route 4
    assert receivers("minzheng", "deadline.approaching", "yellow") == ["ops@minzheng", "handler@h1"]
    assert receivers("gongan", "deadline.approaching", "yellow") == ["handler@h1"]


def test_default_receivers_when_nothing_matches() -> None:
    r = routing(routes=[{"match": {"rule": "fee.*"}, "receivers": ["contact"]}])
    targets, problems = r.targets("gongan", "process.skipped_step", "red", "h1")
    assert [t.receiver for t in targets] == ["bureau"] and targets[0].route == -1
    assert not problems


def test_templates_are_filled_and_missing_contacts_reported() -> None:
    targets, problems = routing().targets("gongan", "deadline.legal_broken", "red", "h1")
    by_name = {t.receiver: dict(t.channels) for t in targets}
    assert by_name["contact@gongan"]["email"]["to"] == ["a@ga.example", "b@ga.example", "x@bureau.example"]
    assert by_name["contact@gongan"]["webhook"]["url"] == "https://ga.example/h"
    assert by_name["contact@gongan"]["webhook"]["secret_env"] == "K"
    assert by_name["handler@h1"]["email"]["to"] == ["h1@ga.example"]
    assert not problems
    targets, problems = routing().targets("jiaotong", "deadline.legal_broken", "red", "h7")
    assert [t.receiver for t in targets] == ["bureau"]
    assert problems == [
        "receiver handler: no handlers.h7.email in the routing file for {handler.email}",
        "receiver contact: no contacts.jiaotong.email in the routing file for {contact.email}",
    ]


def test_no_handler_named_means_no_handler_notified_without_a_problem() -> None:
    targets, problems = routing().targets("gongan", "deadline.legal_broken", "red", None)
    assert [t.receiver for t in targets] == ["contact@gongan", "bureau"]
    assert problems == []


def test_timing_defaults_overrides_and_working_hours_hold() -> None:
    targets, _ = routing().targets("gongan", "fee.unauthorized", "red", "h1")
    assert {(t.group_wait, t.group_interval, t.repeat_interval, t.hold) for t in targets} == {
        (0.0, 60.0, 86400.0, False)}
    targets, _ = routing().targets("gongan", "deadline.approaching", "yellow", "h1")
    assert [(t.group_wait, t.repeat_interval, t.hold) for t in targets] == [(10.0, 3600.0, True)]
    r = routing(defaults={"working_hours_only": []})
    assert not r.targets("gongan", "deadline.approaching", "yellow", "h1")[0][0].hold
    # built-in defaults when the file gives none
    r = routing(defaults={})
    (t,) = r.targets("gongan", "x.y", "yellow", "h1")[0]
    assert (t.group_wait, t.group_interval, t.repeat_interval, t.hold) == (30.0, 300.0, 14400.0, True)


# --- working hours -----------------------------------------------------------------------------


@pytest.mark.parametrize(("now", "opens"), [
    ("2026-03-04 10:00", "2026-03-04 10:00"),  # Wednesday morning: open
    ("2026-03-04 08:00", "2026-03-04 09:00"),  # before opening
    ("2026-03-04 18:00", "2026-03-05 09:00"),  # closing time
    ("2026-03-06 18:30", "2026-03-09 09:00"),  # Friday evening -> Monday
    ("2026-03-07 12:00", "2026-03-09 09:00"),  # Saturday
    ("2026-10-01 10:00", "2026-10-08 09:00"),  # 国庆 holiday week
    ("2026-10-09 19:00", "2026-10-10 09:00"),  # Friday evening -> 调休 Saturday is worked
    ("2026-02-14 10:00", "2026-02-14 10:00"),  # 调休 Saturday before the Spring Festival
])
def test_working_hours_on_the_official_calendar(now: str, opens: str) -> None:
    clock = WorkingHoursClock(WorkingHours(), OfficialCalendar(), TZ)
    at = datetime.fromisoformat(now).replace(tzinfo=TZ)
    want = datetime.fromisoformat(opens).replace(tzinfo=TZ)
    assert clock.next_open(at) == want
    assert clock.is_open(at) == (at == want)
    assert clock.next_open(at.astimezone(UTC)) == want  # whatever zone the instant is in


# --- silences ----------------------------------------------------------------------------------


def _silence(**matchers: Any) -> Silence:
    now = datetime.now(UTC)
    return Silence(starts_at=now, ends_at=now + timedelta(hours=1), created_by="duty", reason="drill",
                   **matchers)


def test_silence_matching() -> None:
    alert = {"alert_id": "dea-1", "rule": "deadline.approaching", "severity": "yellow",
             "department": "gongan", "case_id": "C1"}
    assert _silence(department="gongan").matches(alert)
    assert _silence(rule="deadline.*", severity="yellow").matches(alert)
    assert not _silence(rule="deadline.*", severity="red").matches(alert)
    assert not _silence(department="gongshang").matches(alert)
    assert _silence(case_id="C1").matches(alert) and _silence(alert_id="dea-1").matches(alert)
    s = _silence(department="gongan")
    assert s.active(s.starts_at) and not s.active(s.ends_at)
    assert matching_silence([_silence(department="x"), s], alert) is s
    with pytest.raises(ValueError, match="at least one of"):
        _silence()


# --- tokens ------------------------------------------------------------------------------------


def test_tokens() -> None:
    tokens = parse_tokens({"tokens": [
        {"name": "bureau", "role": "bureau", "token": "bureau-secret"},
        {"name": "ga", "role": "department", "department": "gongan", "token": "gongan-secret"},
    ]})
    bureau, ga = tokens.authenticate("bureau-secret"), tokens.authenticate("gongan-secret")
    assert bureau is not None and bureau.can_see("gongan") and bureau.can_see("anything")
    assert ga is not None and ga.can_see("gongan") and not ga.can_see("gongshang")
    assert not ga.can_see(None)
    assert tokens.authenticate("guess") is None


@pytest.mark.parametrize(("doc", "message"), [
    ({"tokens": [{"name": "a", "role": "department", "token": "12345678"}]},
     "tokens.0: a department token needs 'department'"),
    ({"tokens": [{"name": "a", "role": "bureau"}]}, "tokens.0: give exactly one of token or token_sha256"),
    ({"tokens": [{"name": "a", "role": "bureau", "token": "short"}]}, "at least 8 characters"),
    ({"tokens": [{"name": "a", "role": "chief", "token": "12345678"}]}, "tokens.0.role"),
    ({"tokens": [{"name": "a", "role": "bureau", "token": "12345678"},
                 {"name": "a", "role": "bureau", "token": "87654321"}]}, "tokens.1.name: 'a' used twice"),
])
def test_token_file_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(TokensError) as exc:
        parse_tokens(doc, "tokens.yaml")
    assert str(exc.value).startswith("tokens.yaml: ") and message in str(exc.value)


# --- webhook signature and texts ---------------------------------------------------------------


def test_webhook_signature() -> None:
    sig = sign(b"key", "1700000000", b'{"a":1}')
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify(b"key", "1700000000", b'{"a":1}', sig)
    assert not verify(b"key", "1700000001", b'{"a":1}', sig)
    assert not verify(b"other", "1700000000", b'{"a":1}', sig)


def test_rendered_texts_in_chinese_and_english() -> None:
    n = Notification(notification_id="ntf-1", group_key="gongan|deadline.legal_broken|bureau|escalated",
                     receiver="bureau", channel="email", channel_config={"type": "email", "to": ["x@y"]},
                     transition="escalated", department="gongan", rule="deadline.legal_broken",
                     severity="escalated",
                     items=[NotificationItem(alert_id="dea-1", transition="escalated")], created_at=0)
    alerts = [{"alert_id": "dea-1", "message_zh": "超过法定期限", "message_en": "legal limit broken",
               "legal_basis": "行政许可法 第四十二条", "case_id": "C1", "status": "open"}]
    out = render(n, alerts, datetime(2026, 3, 4, 10, tzinfo=TZ))
    assert "督办" in out.subject["zh"] and "升级督办" in out.subject["zh"]
    assert "escalated" in out.subject["en"]
    assert "超过法定期限" in out.text["zh"] and "行政许可法 第四十二条" in out.text["zh"]
    assert "legal limit broken" in out.text["en"] and "未处理" in out.text["zh"]
    assert out.payload["alerts"][0]["transition"] == "escalated"
    assert out.payload["count"] == 1 and out.body.startswith(b"{")
