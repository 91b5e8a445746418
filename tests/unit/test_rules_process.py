"""Process rules: process.skipped_step, process.unknown_step, parallel.missing_opinion.

Each rule has a table of files that must raise it and files that must not, replayed
through the real engine (test catalog) in the given arrival order.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.unit.eventkit_integrity import (
    at,
    drop,
    engine,
    ev,
    find,
    lawful,
    of,
    put_last,
    retime,
    run,
    tick,
)

DAY_AFTER = "2024-03-05 18:00"
LATER = "2024-06-28 18:00"  # far after every case: every deadline and escalation is due

Events = list[dict[str, Any]]


# --- process.skipped_step ---------------------------------------------------------------

def _decided_before_review_arrives(tick_at: str) -> Events:
    """reviewed 10:25, decided 10:30; the review arrives after a tick at ``tick_at``."""
    case = retime(lawful("S", "T-SHORT", "09:00", gap=30, through="decided"), "decided", "10:30")
    case = retime(case, "reviewed", "10:25")
    case = put_last(case, "reviewed")
    return [*case[:-1], tick(tick_at), case[-1]]


SKIPPED_FIRES = [
    pytest.param(drop(lawful("S"), "reviewed"), "reviewed", "decided", id="decided-without-review"),
    pytest.param(drop(lawful("S", "T-SIMPLE"), "decided"), "decided", "delivered",
                 id="delivered-without-decision"),
    pytest.param(drop(lawful("S"), "delivered"), "delivered", "completed",
                 id="granted-completed-without-delivery"),
    pytest.param(drop(lawful("S"), "accepted"), "accepted", "reviewed",
                 id="reviewed-without-acceptance-within-intake"),
    pytest.param(drop(lawful("S", "T-JOINT"), "reviewed", "jianshe"), "reviewed", "decided",
                 id="joint-only-co-department-reviews"),
    pytest.param(drop(drop(lawful("S", "T-JOINT", through="reviewed"), "accepted"), "reviewed",
                      "jianshe"), "accepted", "reviewed",
                 id="joint-co-department-reviews-before-acceptance"),
    pytest.param(_decided_before_review_arrives("10:41"), "reviewed", "decided",
                 id="earlier-step-arrives-beyond-lateness"),
    pytest.param(drop(lawful("S", outcome="deny"), "reviewed"), "reviewed", "decided",
                 id="deny-without-review"),
]


@pytest.mark.parametrize(("events", "missing", "step"), SKIPPED_FIRES)
def test_skipped_step_fires(events: Events, missing: str, step: str) -> None:
    versions = of(run(events, DAY_AFTER), "process.skipped_step", "S")
    alerts = [a for a in versions if a.status == "open"]
    assert [(a.details["missing"], a.details["step"]) for a in alerts] == [(missing, step)]
    alert = alerts[0]
    assert alert.severity == "red"
    later = find(events, step)
    assert alert.event_time == datetime.fromisoformat(later["occurred_at"])
    assert alert.detected_at >= alert.event_time + timedelta(minutes=10)  # judged after lateness
    assert alert.evidence == [later["event_id"]]


SKIPPED_QUIET = [
    pytest.param(lawful("S"), id="lawful-T-SHORT"),
    pytest.param(lawful("S", "T-SIMPLE"), id="lawful-T-SIMPLE"),
    pytest.param(lawful("S", "T-JOINT"), id="lawful-T-JOINT"),
    pytest.param(lawful("S", "T-FEE"), id="lawful-T-FEE"),
    pytest.param(lawful("S", outcome="deny"), id="deny-needs-no-delivery"),
    pytest.param(lawful("S", "T-JOINT", outcome="deny"), id="joint-deny-needs-no-delivery"),
    pytest.param([ev("S", "submitted", "09:00"), ev("S", "rejected_at_intake", "09:20"),
                  ev("S", "completed", "09:30")], id="rejected-at-intake-then-completed"),
    pytest.param([ev("S", "submitted", "09:00"), ev("S", "withdrawn", "09:20"),
                  ev("S", "completed", "09:30")], id="withdrawn-then-completed"),
    pytest.param(_decided_before_review_arrives("10:39"), id="earlier-step-arrives-within-lateness"),
    pytest.param(list(reversed(lawful("S", gap=1))), id="whole-case-reversed-within-lateness"),
    pytest.param(drop(lawful("S", "T-SIMPLE", start="2024-03-04 09:00", gap=60 * 24 * 9), "accepted"),
                 id="deemed-accepted-not-skipped"),
    pytest.param(lawful("S", through="decided"), id="decided-not-yet-delivered"),
]


@pytest.mark.parametrize("events", SKIPPED_QUIET)
def test_skipped_step_quiet(events: Events) -> None:
    assert of(run(events, LATER), "process.skipped_step") == []


def test_skipped_step_waits_for_the_lateness() -> None:
    case = drop(lawful("S", through="decided"), "reviewed")  # decided at 10:30
    assert of(run([*case, tick("10:39")]), "process.skipped_step") == []
    assert len(of(run([*case, tick("10:40")]), "process.skipped_step")) == 1


def test_skipped_step_deny_still_needs_review_but_not_delivery() -> None:
    case = drop(drop(lawful("S", outcome="deny"), "reviewed"), "delivered")
    missing = [a.details["missing"] for a in of(run(case, LATER), "process.skipped_step")]
    assert missing == ["reviewed"]


def test_skipped_step_joint_review_counts_only_from_handling_department() -> None:
    only_co = drop(lawful("S", "T-JOINT"), "reviewed", "jianshe")
    only_handling = drop(drop(lawful("S", "T-JOINT"), "reviewed", "gongan"), "reviewed", "gongshang")
    assert len(of(run(only_co, LATER), "process.skipped_step")) == 1
    assert of(run(only_handling, LATER), "process.skipped_step") == []


# --- process.unknown_step ---------------------------------------------------------------

def _simple_with(*extra: tuple[str, str, dict[str, Any]]) -> Events:
    events = lawful("U", "T-SIMPLE", "09:00", gap=60)
    for step, when, attrs in extra:
        events.append(ev("U", step, when, item="T-SIMPLE", **attrs))
    return events


UNKNOWN_FIRES = [
    pytest.param(_simple_with(("reviewed", "10:30", {})), id="review-on-item-without-review"),
    pytest.param(_simple_with(("reviewed", "10:30", {}), ("reviewed", "10:40", {})),
                 id="two-reviews-one-alert"),
]


@pytest.mark.parametrize("events", UNKNOWN_FIRES)
def test_unknown_step_fires(events: Events) -> None:
    alerts = of(run(events, LATER), "process.unknown_step", "U")
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.severity == "yellow"
    assert alert.details["step"] == "reviewed"
    first = find(events, "reviewed")
    assert alert.evidence == [first["event_id"]]
    assert "review" in alert.message_en and "审查" in alert.message_zh
    assert "application → acceptance → decision" in alert.message_en


UNKNOWN_QUIET = [
    pytest.param(lawful("U", "T-SIMPLE"), id="lawful-T-SIMPLE"),
    pytest.param(lawful("U", "T-JOINT"), id="lawful-T-JOINT-with-co-reviews"),
    pytest.param(_simple_with(("supplement_requested", "09:10", {"items": ["身份证明"]}),
                              ("supplement_received", "09:20", {}),
                              ("suspended", "10:10", {}), ("resumed", "10:20", {}),
                              ("extended", "10:30", {}), ("fee_charged", "11:10", {"amount": "0.00"}),
                              ("withdrawn", "13:00", {})),
                 id="every-optional-step"),
    pytest.param([ev("U", "submitted", "09:00", item="T-SIMPLE"),
                  ev("U", "rejected_at_intake", "09:10", item="T-SIMPLE")], id="rejected-at-intake"),
]


@pytest.mark.parametrize("events", UNKNOWN_QUIET)
def test_unknown_step_quiet(events: Events) -> None:
    assert of(run(events, LATER), "process.unknown_step") == []


# --- parallel.missing_opinion -------------------------------------------------------------

def _joint(*, drop_co: tuple[str, ...] = (), retime_co: dict[str, str] | None = None,
           last: tuple[str, ...] = (), tick_at: str | None = None) -> Events:
    """T-JOINT: submitted 09:00, accepted 09:30, reviews 10:00, decided 10:30, delivered
    11:00, completed 11:30. The reviews of ``last`` arrive right after the decision (and
    after a tick of the clock to ``tick_at``); delivery and completion arrive after them."""
    events = lawful("P", "T-JOINT", "09:00", gap=30)
    for dept in drop_co:
        events = drop(events, "reviewed", dept)
    for dept, when in (retime_co or {}).items():
        events = retime(events, "reviewed", when, dept)
    head = [e for e in events if e["step"] not in ("delivered", "completed")]
    tail = [e for e in events if e["step"] in ("delivered", "completed")]
    late = [e for e in head if e["step"] == "reviewed" and e["department"] in last]
    head = [e for e in head if e not in late]
    ticks = [tick(tick_at)] if tick_at is not None else []
    return [*head, *ticks, *late, *tail]


MISSING_FIRES = [
    pytest.param(_joint(drop_co=("gongshang",)), ["gongshang"], id="one-opinion-missing"),
    pytest.param(_joint(drop_co=("gongan", "gongshang")), ["gongan", "gongshang"], id="both-missing"),
    pytest.param(_joint(retime_co={"gongan": "10:35"}), ["gongan"], id="opinion-after-the-decision"),
    pytest.param(_joint(retime_co={"gongan": "10:29"}, last=("gongan",), tick_at="10:41"),
                 ["gongan"], id="opinion-arrives-beyond-lateness"),
]


@pytest.mark.parametrize(("events", "missing"), MISSING_FIRES)
def test_missing_opinion_fires(events: Events, missing: list[str]) -> None:
    versions = of(run(events, LATER), "parallel.missing_opinion", "P")
    alerts = [a for a in versions if a.status == "open"]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.severity == "red"  # as first raised (it escalates unless a person resolves it)
    assert alert.details["missing"] == missing
    for dept in missing:  # named as the catalog names them, not by their codes
        name = engine().catalog.departments[dept]
        assert name.name_zh in alert.message_zh and name.name_en in alert.message_en
        assert dept not in alert.message_zh and dept not in alert.message_en
    decided = find(events, "decided")
    assert alert.evidence[0] == decided["event_id"]
    assert alert.event_time == at("10:30")
    assert alert.detected_at >= at("10:40")


MISSING_QUIET = [
    pytest.param(_joint(), id="every-opinion-given"),
    pytest.param(_joint(retime_co={"gongan": "10:30"}), id="opinion-at-the-decision-instant"),
    pytest.param(_joint(retime_co={"gongan": "10:29"}, last=("gongan",), tick_at="10:39"),
                 id="opinion-arrives-within-lateness"),
    pytest.param(_joint(retime_co={"gongan": "10:29", "gongshang": "10:25"},
                        last=("gongan", "gongshang")), id="both-opinions-arrive-late-no-tick"),
    pytest.param(lawful("P", "T-SHORT"), id="not-a-joint-item"),
    pytest.param(lawful("P", "T-JOINT", through="reviewed"), id="not-decided-yet"),
]


@pytest.mark.parametrize("events", MISSING_QUIET)
def test_missing_opinion_quiet(events: Events) -> None:
    assert of(run(events, LATER), "parallel.missing_opinion") == []


def test_missing_opinion_counts_only_co_departments() -> None:
    # a second review by the handling department does not stand in for gongshang's opinion
    events = _joint(drop_co=("gongshang",))
    events.append(ev("P", "reviewed", "10:05", item="T-JOINT", department="jianshe", actor="other"))
    assert [a.details["missing"] for a in of(run(events, LATER), "parallel.missing_opinion")] == [
        ["gongshang"]]


def test_process_rules_are_deterministic() -> None:
    events = [*_joint(drop_co=("gongshang",)), *_simple_with(("reviewed", "10:30", {})),
              *drop(lawful("S"), "reviewed")]
    first = [a.model_dump() for a in run(events, LATER)]
    assert first == [a.model_dump() for a in run(events, LATER)]
    assert {a["rule"] for a in first} >= {"parallel.missing_opinion", "process.unknown_step",
                                          "process.skipped_step"}
    for a in first:
        assert "?" not in a["message_zh"] and "?" not in a["message_en"], a
        assert a["legal_basis"].strip()


def test_engine_knows_the_process_rules() -> None:
    rules = engine().ruleset.rules
    assert rules["process.unknown_step"].severity == "yellow"
    assert rules["parallel.missing_opinion"].severity == "red"
    assert rules["process.skipped_step"].severity == "red"


def test_skipped_step_retracted_when_the_step_arrives_late() -> None:
    """The review did take place (10:25, before the decision): when it arrives after the
    alert was raised, the alert is retracted by it, with the same id and event time."""
    events = _decided_before_review_arrives("10:41")
    versions = of(run(events, DAY_AFTER), "process.skipped_step", "S")
    assert [a.status for a in versions] == ["open", "retracted"]
    raised, retracted = versions
    assert (retracted.alert_id, retracted.event_time, retracted.severity) == (
        raised.alert_id, raised.event_time, raised.severity)
    assert retracted.details["retracted_by"] == [find(events, "reviewed")["event_id"]]
    assert retracted.message_zh.startswith("【撤销】")


def test_missing_opinion_retracted_when_the_opinion_arrives_late() -> None:
    """gongan's opinion was given at 10:29, before the 10:30 decision; it arrives after the
    alert: the alert is retracted by it."""
    events = _joint(retime_co={"gongan": "10:29"}, last=("gongan",), tick_at="10:41")
    versions = of(run(events, LATER), "parallel.missing_opinion", "P")
    assert [a.status for a in versions] == ["open", "retracted"]
    late = [e for e in events if e["step"] == "reviewed" and e["department"] == "gongan"]
    assert versions[1].details["retracted_by"] == [late[0]["event_id"]]
