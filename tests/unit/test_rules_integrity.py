"""Integrity rules: reporting.late, reporting.backdated, decision.no_reason, fee.unauthorized,
fee.over_standard, actor.conflict.

Each rule has a table of files that must raise it and files that must not, replayed
through the real engine (test catalog) in the given arrival order.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from jiancha.producers.contract import Step
from jiancha.rules.case import CaseState, Fact
from jiancha.rules.checks.integrity import actor_conflict
from jiancha.rules.findings import CaseView
from tests.unit.eventkit_integrity import (
    APPLICANT,
    at,
    drop,
    engine,
    escalated,
    ev,
    find,
    lawful,
    of,
    put_last,
    rename,
    retime,
    run,
    tick,
)

LATER = "2024-06-28 18:00"  # far after every case: every deadline and escalation is due
#: red rules no later event corrects: only a person resolving the alert does
RESOLVED_BY_A_PERSON = ("reporting.backdated", "decision.no_reason", "fee.unauthorized",
                        "fee.over_standard", "actor.conflict", "parallel.missing_opinion")

Events = list[dict[str, Any]]


# --- reporting.late ---------------------------------------------------------------------

def _reported(delay: timedelta | None, case_id: str = "R") -> Events:
    events = lawful(case_id, "T-SIMPLE", "09:00", gap=60)
    decided = find(events, "decided")
    if delay is not None:
        occurred = datetime.fromisoformat(decided["occurred_at"])
        decided["received_at"] = (occurred + delay).isoformat()
    return events


LATE_FIRES = [
    pytest.param(_reported(timedelta(hours=25)), 25.0, id="25h-late"),
    pytest.param(_reported(timedelta(hours=24, seconds=1)), 24.0, id="1s-over-24h"),
    pytest.param(_reported(timedelta(days=10)), 240.0, id="10-days-late"),
]


@pytest.mark.parametrize(("events", "hours"), LATE_FIRES)
def test_reporting_late_fires(events: Events, hours: float) -> None:
    alerts = of(run(events, LATER), "reporting.late", "R")
    assert len(alerts) == 1
    alert = alerts[0]
    decided = find(events, "decided")
    assert alert.severity == "yellow"
    assert alert.evidence == [decided["event_id"]]
    assert alert.details["delay_hours"] == hours and alert.details["limit_hours"] == 24
    assert alert.event_time == datetime.fromisoformat(decided["occurred_at"]) + timedelta(hours=24)
    assert "24" in alert.message_en and "决定" in alert.message_zh


LATE_QUIET = [
    pytest.param(_reported(None), id="no-received-at"),
    pytest.param(_reported(timedelta(hours=23)), id="23h"),
    pytest.param(_reported(timedelta(hours=24)), id="exactly-24h"),
    pytest.param(_reported(timedelta(minutes=-3)), id="received-before-occurred-clock-skew"),
]


@pytest.mark.parametrize("events", LATE_QUIET)
def test_reporting_late_quiet(events: Events) -> None:
    assert of(run(events, LATER), "reporting.late") == []


def test_reporting_late_is_distinct_per_event() -> None:
    events = lawful("R", "T-SIMPLE", "09:00", gap=60)
    for e in events[1:3]:
        e["received_at"] = (datetime.fromisoformat(e["occurred_at"]) + timedelta(days=2)).isoformat()
    alerts = of(run(events, LATER), "reporting.late")
    assert sorted(a.evidence[0] for a in alerts) == sorted(e["event_id"] for e in events[1:3])
    assert len({a.alert_id for a in alerts}) == 2


def test_reporting_late_threshold_is_a_setting() -> None:
    eng = engine()
    events = _reported(timedelta(hours=5))
    old = eng.ruleset.settings.reporting_delay_hours
    try:
        eng.ruleset.settings.reporting_delay_hours = 4
        alerts = of(run(events, LATER, eng), "reporting.late")
    finally:
        eng.ruleset.settings.reporting_delay_hours = old
    assert [a.details["limit_hours"] for a in alerts] == [4]


# --- reporting.backdated ----------------------------------------------------------------

BACKDATED_FIRES = [
    pytest.param(retime(lawful("B"), "decided", "09:49"), "decided", "reviewed", 11.0,
                 id="decided-11min-before-review"),
    pytest.param(retime(lawful("B"), "decided", "08:00"), "decided", "reviewed", 120.0,
                 id="decided-2h-before-review"),
    pytest.param(retime(lawful("B"), "accepted", "08:49"), "accepted", "submitted", 11.0,
                 id="accepted-11min-before-submission"),
    pytest.param(retime(drop(lawful("B"), "reviewed"), "decided", "09:15"), "decided", "accepted", 15.0,
                 id="previous-present-step-when-one-is-missing"),
    pytest.param(retime(lawful("B", "T-JOINT"), "reviewed", "09:00", "jianshe"), "reviewed", "accepted",
                 30.0, id="joint-handling-review-before-acceptance"),
    pytest.param(retime(lawful("B"), "delivered", "2024-03-01 17:00"), "delivered", "decided",
                 None, id="delivered-days-before-decision"),
]


@pytest.mark.parametrize(("events", "step", "depends_on", "minutes"), BACKDATED_FIRES)
def test_backdated_fires(events: Events, step: str, depends_on: str, minutes: float | None) -> None:
    alerts = of(run(events, LATER), "reporting.backdated", "B")
    assert [(a.details["step"], a.details["depends_on"]) for a in alerts] == [(step, depends_on)]
    alert = alerts[0]
    assert alert.severity == "red"
    if minutes is not None:  # lawful(): submitted 09:00, accepted 09:30, reviewed 10:00, ...
        assert alert.details["minutes_before"] == minutes
    dep = find(events, depends_on, "jianshe" if depends_on == "reviewed" and "T-JOINT" in
               events[0]["item_code"] else None)
    assert alert.evidence == [find(events, step)["event_id"], dep["event_id"]]
    assert alert.event_time == datetime.fromisoformat(dep["occurred_at"])
    assert alert.detected_at >= alert.event_time + timedelta(minutes=10)


def test_backdated_minutes() -> None:
    alerts = of(run(retime(lawful("B"), "decided", "09:49"), LATER), "reporting.backdated")
    assert [a.details["minutes_before"] for a in alerts] == [11]
    assert "11 minutes" in alerts[0].message_en and "11 分钟" in alerts[0].message_zh
    assert "倒签" in alerts[0].message_zh and "11.0" not in alerts[0].message_zh


BACKDATED_QUIET = [
    pytest.param(lawful("B"), id="lawful"),
    pytest.param(lawful("B", "T-JOINT"), id="lawful-joint"),
    pytest.param(retime(lawful("B"), "decided", "09:55"), id="5min-before-within-lateness"),
    pytest.param(retime(lawful("B"), "decided", "09:50"), id="exactly-the-lateness"),
    pytest.param(retime(lawful("B"), "decided", "10:00"), id="same-instant"),
    pytest.param(retime(lawful("B", "T-JOINT"), "reviewed", "09:00", "gongan"),
                 id="co-department-opinion-is-not-a-process-step"),
    pytest.param(list(reversed(lawful("B", gap=1))), id="reversed-arrival-in-order-times"),
    pytest.param(put_last(lawful("B"), "submitted"), id="submission-arrives-last"),
]


@pytest.mark.parametrize("events", BACKDATED_QUIET)
def test_backdated_quiet(events: Events) -> None:
    assert of(run(events, LATER), "reporting.backdated") == []


def test_backdated_waits_for_the_lateness() -> None:
    case = retime(lawful("B", through="decided"), "decided", "09:30")  # reviewed 10:00
    assert of(run([*case, tick("10:09")]), "reporting.backdated") == []
    assert len(of(run([*case, tick("10:10")]), "reporting.backdated")) == 1


# --- decision.no_reason -----------------------------------------------------------------

def _refused(step: str, **attrs: Any) -> Events:
    if step == "rejected_at_intake":
        return [ev("N", "submitted", "09:00"), ev("N", "rejected_at_intake", "09:30", attrs=attrs)]
    events = drop(lawful("N", outcome="deny"), "decided")
    events.insert(3, ev("N", "decided", "10:30", attrs={"outcome": "deny", **attrs}))
    return events


NO_REASON_FIRES = [
    pytest.param(_refused("decided"), "decided", id="deny-without-reason"),
    pytest.param(_refused("decided", reason=""), "decided", id="deny-empty-reason"),
    pytest.param(_refused("decided", reason="   "), "decided", id="deny-blank-reason"),
    pytest.param(_refused("decided", reason=None), "decided", id="deny-null-reason"),
    pytest.param(_refused("rejected_at_intake"), "rejected_at_intake", id="rejected-without-reason"),
    pytest.param(_refused("rejected_at_intake", reason=" "), "rejected_at_intake",
                 id="rejected-blank-reason"),
]


@pytest.mark.parametrize(("events", "step"), NO_REASON_FIRES)
def test_no_reason_fires(events: Events, step: str) -> None:
    alerts = of(run(events, LATER), "decision.no_reason", "N")
    assert [a.details["step"] for a in alerts] == [step]
    assert alerts[0].severity == "red"
    assert alerts[0].evidence == [find(events, step)["event_id"]]
    assert "第三十八条" in alerts[0].legal_basis


NO_REASON_QUIET = [
    pytest.param(_refused("decided", reason="不符合法定条件"), id="deny-with-reason"),
    pytest.param(_refused("rejected_at_intake", reason="不属于本机关职权范围"), id="rejected-with-reason"),
    pytest.param(lawful("N"), id="grant-without-reason"),
    pytest.param(lawful("N", outcome="deny"), id="lawful-deny"),
]


@pytest.mark.parametrize("events", NO_REASON_QUIET)
def test_no_reason_quiet(events: Events) -> None:
    assert of(run(events, LATER), "decision.no_reason") == []


# --- fees -------------------------------------------------------------------------------

def _fee(item: str, amount: str, *, outcome: str = "grant", when: str = "10:45") -> Events:
    events = lawful("F", item, outcome=outcome)
    events.append(ev("F", "fee_charged", when, item=item, amount=amount))
    return events


def _fee_after_intake_refusal() -> Events:
    return [ev("F", "submitted", "09:00", item="T-FEE"),
            ev("F", "rejected_at_intake", "09:30", item="T-FEE"),
            ev("F", "fee_charged", "09:40", item="T-FEE", amount="50.00")]


UNAUTHORIZED_FIRES = [
    pytest.param(_fee("T-SHORT", "10.00"), "no_fee_basis", id="item-without-fee-basis"),
    pytest.param(_fee("T-JOINT", "0.01"), "no_fee_basis", id="one-fen-without-basis"),
    pytest.param(_fee("T-FEE", "50.00", outcome="deny"), "refused", id="fee-after-deny"),
    pytest.param(_fee("T-FEE", "50.00", outcome="deny", when="09:45"), "refused",
                 id="fee-before-deny"),
    pytest.param(_fee_after_intake_refusal(), "refused", id="fee-after-rejection-at-intake"),
]


@pytest.mark.parametrize(("events", "why"), UNAUTHORIZED_FIRES)
def test_fee_unauthorized_fires(events: Events, why: str) -> None:
    alerts = of(run(events, LATER), "fee.unauthorized", "F")
    assert [a.details["why"] for a in alerts] == [why]
    fee = find(events, "fee_charged")
    assert alerts[0].evidence[0] == fee["event_id"]
    assert alerts[0].details["amount"] == fee["attributes"]["amount"]
    assert fee["attributes"]["amount"] in alerts[0].message_zh
    assert "第五十八条" in alerts[0].legal_basis


UNAUTHORIZED_QUIET = [
    pytest.param(_fee("T-FEE", "50.00"), id="at-standard-on-granted-case"),
    pytest.param(_fee("T-FEE", "50.01"), id="over-standard-is-the-other-rule"),
    pytest.param(_fee("T-SHORT", "0.00"), id="zero-amount-nothing-taken"),
    pytest.param(lawful("F", "T-SHORT"), id="no-fee"),
]


@pytest.mark.parametrize("events", UNAUTHORIZED_QUIET)
def test_fee_unauthorized_quiet(events: Events) -> None:
    assert of(run(events, LATER), "fee.unauthorized") == []


OVER_FIRES = [
    pytest.param(_fee("T-FEE", "50.01"), "50.01", "0.01", id="one-fen-above"),
    pytest.param(_fee("T-FEE", "120"), "120", "70.00", id="far-above"),
]


@pytest.mark.parametrize(("events", "amount", "excess"), OVER_FIRES)
def test_fee_over_standard_fires(events: Events, amount: str, excess: str) -> None:
    alerts = of(run(events, LATER), "fee.over_standard", "F")
    assert len(alerts) == 1
    d = alerts[0].details
    assert (d["amount"], d["standard"], d["excess"]) == (amount, "50.00", excess)
    assert Decimal(d["amount"]) - Decimal(d["standard"]) == Decimal(d["excess"])
    assert excess in alerts[0].message_en and "50.00" in alerts[0].message_zh
    assert "第五十九条" in alerts[0].legal_basis


OVER_QUIET = [
    pytest.param(_fee("T-FEE", "50.00"), id="exactly-the-standard"),
    pytest.param(_fee("T-FEE", "50"), id="standard-without-decimals"),
    pytest.param(_fee("T-FEE", "49.99"), id="below"),
    pytest.param(_fee("T-SHORT", "80.00"), id="no-standard-is-unauthorized-not-over"),
]


@pytest.mark.parametrize("events", OVER_QUIET)
def test_fee_over_standard_quiet(events: Events) -> None:
    assert of(run(events, LATER), "fee.over_standard") == []


def test_each_fee_event_is_judged() -> None:
    events = _fee("T-FEE", "60.00")
    events.append(ev("F", "fee_charged", "11:00", item="T-FEE", amount="70.00"))
    alerts = of(run(events, LATER), "fee.over_standard")
    assert sorted(a.details["excess"] for a in alerts) == ["10.00", "20.00"]


# --- actor.conflict ---------------------------------------------------------------------

def _actors(reviewer: str, decider: str, *, outcome: str = "grant", item: str = "T-SHORT") -> Events:
    events = lawful("A", item, outcome=outcome)
    out = []
    for e in events:
        if e["step"] == "reviewed" and e["department"] == events[0]["department"]:
            e = {**e, "actor": reviewer}
        elif e["step"] == "decided":
            e = {**e, "actor": decider}
        out.append(e)
    return out


CONFLICT_FIRES = [
    pytest.param(_actors("h7", "h7"), id="same-reviewer-and-approver"),
    pytest.param(_actors("h7", "h7", item="T-FEE"), id="same-reviewer-and-approver-T-FEE"),
    pytest.param([*_actors("h1", "h7"), ev("A", "reviewed", "10:10", actor="h7")],
                 id="approver-also-gave-a-second-review"),
]


@pytest.mark.parametrize("events", CONFLICT_FIRES)
def test_actor_conflict_fires(events: Events) -> None:
    alerts = of(run(events, LATER), "actor.conflict", "A")
    assert [(a.details["kind"], a.actor) for a in alerts] == [("review_and_decide", "h7")]
    assert "h7" in alerts[0].message_zh and "h7" in alerts[0].message_en
    assert find(events, "decided")["event_id"] in alerts[0].evidence


CONFLICT_QUIET = [
    pytest.param(_actors("h1", "h2"), id="distinct-reviewer-and-approver"),
    pytest.param(_actors("h7", "h7", outcome="deny"), id="same-person-refusing"),
    pytest.param(lawful("A", "T-JOINT"), id="joint-distinct-actors"),
    pytest.param(lawful("A", "T-SIMPLE"), id="no-review-step"),
]


@pytest.mark.parametrize("events", CONFLICT_QUIET)
def test_actor_conflict_quiet(events: Events) -> None:
    assert of(run(events, LATER), "actor.conflict") == []


def _view(facts: list[Fact]) -> CaseView:
    return engine().view(CaseState("A", "T-SHORT", facts=facts))


def _fact(step: Step, when: str, actor: str, applicant_id: str | None = None) -> Fact:
    t = at(when).timestamp()
    attrs = {"applicant_id": applicant_id} if applicant_id is not None else {}
    return Fact(f"e-{step.value}", step, t, actor, "gongan", attrs, t)


def test_actor_conflict_own_application_pure() -> None:
    """A handler whose id is the applicant's (the submitted fact keeps applicant_id)."""
    facts = [_fact(Step.submitted, "09:00", "applicant", applicant_id="staff-9"),
             _fact(Step.accepted, "09:30", "staff-9"), _fact(Step.reviewed, "10:00", "h1"),
             _fact(Step.decided, "10:30", "staff-9")]
    found = list(actor_conflict(_view(facts), {}))
    assert [(f.details["kind"], f.actor, f.evidence) for f in found] == [
        ("own_application", "staff-9", ("e-submitted", "e-accepted"))]
    assert found[0].corrected_at is None  # no later event corrects it
    quiet = [_fact(Step.submitted, "09:00", "applicant", applicant_id="someone-else"),
             _fact(Step.accepted, "09:30", "staff-9")]
    assert list(actor_conflict(_view(quiet), {})) == []
    # an applicant_id on a later staff event is not the applicant's identity
    spoof = [_fact(Step.submitted, "09:00", "applicant"),
             _fact(Step.accepted, "09:30", "staff-9", applicant_id="staff-9")]
    assert list(actor_conflict(_view(spoof), {})) == []


OWN_FIRES = [
    pytest.param("gongan-accepted", id="acceptor-applied"),
    pytest.param("gongan-decided", id="decider-applied"),
    pytest.param("gongan-completed", id="closer-applied"),
]


@pytest.mark.parametrize("applicant", OWN_FIRES)
def test_actor_conflict_own_application_fires(applicant: str) -> None:
    events = lawful("A")
    events[0] = {**events[0], "applicant_id": applicant}
    alerts = of(run(events, LATER), "actor.conflict", "A")
    assert [(a.details["kind"], a.actor) for a in alerts] == [("own_application", applicant)]
    assert alerts[0].evidence[0] == events[0]["event_id"]
    assert applicant in alerts[0].message_zh and "own application" in alerts[0].message_en


def test_actor_conflict_own_application_quiet() -> None:
    events = lawful("A")
    assert events[0]["applicant_id"] == APPLICANT
    assert of(run(events, LATER), "actor.conflict") == []
    # the applicant's own steps (submitted, supplement_received, withdrawn) are not handling
    events = [{**events[0], "applicant_id": "applicant"},
              ev("A", "supplement_requested", "09:10", items=["x"]),
              ev("A", "supplement_received", "09:20"), *events[1:]]
    assert of(run(events, LATER), "actor.conflict") == []


# --- all integrity rules ------------------------------------------------------------------

def _joint_missing() -> Events:
    return drop(lawful("P", "T-JOINT"), "reviewed", "gongshang")


def test_what_only_a_person_corrects_escalates_unless_resolved() -> None:
    """Fees, conflicts, reasons, backdating and missing opinions are corrected only by a
    person resolving the alert: the engine escalates each after its working days (the
    Redis sink then keeps an alert resolved meanwhile)."""
    events = [*_fee("T-FEE", "60.00"), *_actors("h7", "h7"), *_refused("decided"),
              *retime(lawful("B"), "decided", "08:00"), *rename(_fee_after_intake_refusal(), "F2"),
              *rename(_joint_missing(), "P")]
    alerts = run(events, LATER)
    reds = [a for a in alerts if a.rule in RESOLVED_BY_A_PERSON and a.severity == "red"]
    assert {a.rule for a in reds} == set(RESOLVED_BY_A_PERSON)
    assert sorted(a.alert_id for a in escalated(alerts) if a.rule in RESOLVED_BY_A_PERSON) == sorted(
        a.alert_id for a in reds)


def test_integrity_alerts_render_and_are_deterministic() -> None:
    events = [*_fee("T-SHORT", "10.00"), *_reported(timedelta(hours=30), "R2")]
    events += retime(lawful("B2"), "decided", "08:00")
    events += rename(_fee("T-FEE", "50.01"), "O2")
    first = [a.model_dump() for a in run(events, LATER)]
    assert first == [a.model_dump() for a in run(events, LATER)]
    rules = {a["rule"] for a in first}
    assert rules >= {"fee.unauthorized", "reporting.late", "reporting.backdated", "fee.over_standard"}
    for a in first:
        assert "?" not in a["message_zh"] and "?" not in a["message_en"], a
        assert a["legal_basis"].strip()


def test_rule_severities() -> None:
    rules = engine().ruleset.rules
    assert {r: rules[r].severity for r in ("reporting.late", "reporting.backdated", "decision.no_reason",
                                          "fee.unauthorized", "fee.over_standard", "actor.conflict")} == {
        "reporting.late": "yellow", "reporting.backdated": "red", "decision.no_reason": "red",
        "fee.unauthorized": "red", "fee.over_standard": "red", "actor.conflict": "red"}


# --- a producer's clock ahead of the worker's ---------------------------------------------

AHEAD_FIRES = [
    pytest.param(_refused("decided"), "decision.no_reason", "decided", id="no-reason"),
    pytest.param(_fee("T-SHORT", "10.00"), "fee.unauthorized", "fee_charged", id="fee-no-basis"),
    pytest.param(_fee("T-FEE", "50.00", outcome="deny"), "fee.unauthorized", "fee_charged",
                 id="fee-after-deny"),
    pytest.param(_fee("T-FEE", "99.00"), "fee.over_standard", "fee_charged", id="fee-over"),
    pytest.param(_actors("h7", "h7"), "actor.conflict", "decided", id="actor-conflict"),
    pytest.param([ev("A", "submitted", "09:00"), ev("A", "accepted", "09:10", actor=APPLICANT)],
                 "actor.conflict", "accepted", id="own-application"),
    pytest.param([ev("S", "submitted", "09:00"), ev("S", "supplement_requested", "09:10"),
                  ev("S", "supplement_requested", "09:20")], "supplement.repeated",
                 "supplement_requested", id="supplement-repeated"),
]


@pytest.mark.parametrize(("events", "rule", "step"), AHEAD_FIRES)
def test_an_event_finding_is_raised_on_receipt_when_the_producer_clock_runs_ahead(
        events: Events, rule: str, step: str) -> None:
    """The worker judges an event at its Kafka timestamp, which may be a little before the
    event's ``occurred_at`` (the producer's clock ahead, or the timestamp cut to the
    millisecond). A finding about the event is due once the event is received: it must
    not wait for ``occurred_at`` and the next deadline tick."""
    from jiancha.producers.contract import parse_event

    eng = engine()
    state = None
    raised: list[Any] = []
    for e in events:
        event = parse_event(e)
        received = event.occurred_at - timedelta(seconds=1)
        state = eng.ingest(state, event, received)
        alerts, _ = eng.judge(state, received, event.step, None)
        raised += [(a, e) for a in alerts if a.rule == rule]
    assert raised, f"{rule} not raised on receipt"
    alert, by = raised[0]
    assert by["step"] == step
    assert alert.event_time == datetime.fromisoformat(by["occurred_at"])  # still when it happened
