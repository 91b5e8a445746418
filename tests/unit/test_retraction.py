"""Retraction: a later event that proves an alert wrong retracts it (domain.md, "Evidence
that arrives late"; contract.md ``status: "retracted"``).

Replay prints every version of an alert, so its last line is its final state; the tests
look at the versions of one rule in the order they were made.
"""

from __future__ import annotations

from typing import Any

import orjson

from jiancha.producers.contract import Alert
from tests.unit.eventkit import events, of, replay_events, t

#: T-SHORT: promised 1 working day, legal 2. Accepted Monday 2026-03-02: the promise runs
#: out at Tuesday 24:00, the legal limit at Wednesday 24:00.
CASE = [("submitted", "2026-03-02 09:00"), ("accepted", "2026-03-02 09:30"),
        ("reviewed", "2026-03-02 10:00")]


def _nightly_upload(decided_at: str, reported_at: str) -> list[dict[str, Any]]:
    """The case, another case's event moving the clock past the promise (its red is
    raised), then the decision, uploaded in a nightly batch (``received_at``)."""
    evs = events("T-SHORT", [*CASE, ("decided", decided_at)], case_id="N1")
    decided = evs.pop()
    decided["received_at"] = t(reported_at).isoformat()
    other = events("T-SHORT", [("submitted", "2026-03-04 01:00")], case_id="OTHER")
    return [*evs, *other, decided]


def _of(alerts: list[Alert], rule: str, case_id: str) -> list[Alert]:
    return [a for a in of(alerts, rule) if a.case_id == case_id]


def _final(versions: list[Alert]) -> dict[str, Alert]:
    last: dict[str, Alert] = {}
    for alert in versions:
        last[alert.alert_id] = alert
    return last


def test_decision_in_time_reported_late_retracts_the_broken_promise() -> None:
    evs = _nightly_upload("2026-03-03 23:00", "2026-03-04 02:00")
    alerts = replay_events(evs, "2026-04-30 00:00")
    versions = _of(alerts, "deadline.promise_broken", "N1")
    assert [(a.severity, a.status) for a in versions] == [("red", "open"), ("red", "retracted")]
    raised, retracted = versions
    assert retracted.alert_id == raised.alert_id
    assert retracted.event_time == raised.event_time == t("2026-03-04 00:00")
    assert retracted.details["retracted_by"] == [evs[-1]["event_id"]]
    assert retracted.detected_at == t("2026-03-04 01:00")  # replay's clock when it came
    assert "撤销" in retracted.message_zh and "Retracted" in retracted.message_en
    # no deadline red stands, and none escalates later
    final = _final([a for a in alerts if a.case_id == "N1" and a.rule.startswith("deadline.")])
    assert not [a for a in final.values() if a.severity != "yellow" and a.status == "open"]


def test_decision_after_the_deadline_keeps_the_red() -> None:
    evs = _nightly_upload("2026-03-04 00:30", "2026-03-04 02:00")
    versions = _of(replay_events(evs, "2026-03-20 00:00"), "deadline.promise_broken", "N1")
    assert [(a.severity, a.status) for a in versions] == [("red", "open")]


def test_a_retracted_alert_is_raised_again_when_it_becomes_due_again() -> None:
    """A lawful suspension reported late moves the promise later: the red raised at the
    old deadline is retracted, and raised again (same id) when the moved deadline passes
    with no decision."""
    evs = events("T-SHORT", [*CASE, ("suspended", "2026-03-03 09:00"),
                             ("resumed", "2026-03-05 09:00")], case_id="S1")
    resumed = evs.pop()
    suspended = evs.pop()
    other = events("T-SHORT", [("submitted", "2026-03-04 01:00")], case_id="OTHER")
    alerts = replay_events([*evs, *other, suspended, resumed], "2026-03-20 00:00")
    versions = _of(alerts, "deadline.promise_broken", "S1")
    assert [a.status for a in versions[:3]] == ["open", "retracted", "open"]
    assert versions[1].details["retracted_by"] == [suspended["event_id"]]
    assert len({a.alert_id for a in versions}) == 1
    assert versions[2].event_time > versions[0].event_time


def test_a_retracted_alert_counts_in_no_indicator() -> None:
    """The evaluators' books take a retracted red back: the month's department, item and
    handler counts are as if it had never been raised."""
    from jiancha.rules.indicators import IndicatorBook
    from jiancha.rules.replay import replay
    from tests.unit.eventkit import engine

    def red_counts(evs: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
        book = IndicatorBook(engine())
        replay((orjson.dumps(e) for e in evs), engine(), t("2026-03-05 00:00"),
               indicators=book)
        return {(kind, name): acc.alerts.get("deadline.promise_broken", {}).get("red", 0)
                for (month, kind, name), acc in book.store.items() if month == "2026-03"}

    late = red_counts(_nightly_upload("2026-03-04 00:30", "2026-03-04 02:00"))
    assert late[("department", "gongan")] == 1  # N1 decided after its promise
    in_time = red_counts(_nightly_upload("2026-03-03 23:00", "2026-03-04 02:00"))
    assert in_time[("department", "gongan")] == late[("department", "gongan")] - 1
    assert in_time[("item", "T-SHORT")] == late[("item", "T-SHORT")] - 1
    assert min(in_time.values()) >= 0


def test_deadline_alerts_name_the_current_holder() -> None:
    """Accepted by the window clerk, reviewed by the handler, no decision: the broken
    promise names the handler who last acted before the deadline, not the clerk; a later
    step by someone else does not change who held it then."""
    steps = [("submitted", "2026-03-02 09:00"), ("accepted", "2026-03-02 09:30", {"actor": "clerk"}),
             ("reviewed", "2026-03-03 10:00", {"actor": "handler-7"}),
             ("reviewed", "2026-03-05 10:00", {"actor": "late-reviewer"})]
    alerts = replay_events(events("T-SHORT", steps, case_id="H1"), "2026-03-06 00:00")
    broken = _of(alerts, "deadline.promise_broken", "H1")
    assert [a.actor for a in broken] == ["handler-7"]
    legal = _of(alerts, "deadline.legal_broken", "H1")
    assert [a.actor for a in legal] == ["handler-7"]


def test_per_handler_indicators_count_the_holder() -> None:
    from jiancha.rules.indicators import IndicatorBook
    from jiancha.rules.replay import replay
    from tests.unit.eventkit import engine

    steps = [("submitted", "2026-03-02 09:00"), ("accepted", "2026-03-02 09:30", {"actor": "clerk"}),
             ("reviewed", "2026-03-03 10:00", {"actor": "handler-7"})]
    book = IndicatorBook(engine())
    replay((orjson.dumps(e) for e in events("T-SHORT", steps, case_id="H2")), engine(),
           t("2026-03-06 00:00"), indicators=book)
    reds = {name: acc.alerts.get("deadline.promise_broken", {}).get("red", 0)
            for (_, kind, name), acc in book.store.items() if kind == "handler"}
    assert reds.get("gongan/handler-7") == 1
    assert not reds.get("gongan/clerk")


def _late(case: list[dict[str, Any]], reported_at: str, clock_at: str) -> list[dict[str, Any]]:
    """The case's last event uploaded late (``received_at``), after another case's event
    moved the clock to ``clock_at``."""
    *head, last = case
    last["received_at"] = t(reported_at).isoformat()
    return [*head, *events("T-SHORT", [("submitted", clock_at)], case_id="OTHER"), last]


def test_acceptance_in_time_reported_late_retracts_the_deemed_acceptance() -> None:
    """Submitted Monday 03-02: the intake window ends 03-09 24:00. The acceptance at 03-09
    17:00 reaches the engine at 03-10 02:00, after the deemed acceptance was raised."""
    case = events("T-SHORT", [("submitted", "2026-03-02 09:00"), ("accepted", "2026-03-09 17:00")],
                  case_id="D1")
    alerts = replay_events(_late(case, "2026-03-10 02:00", "2026-03-10 01:00"), "2026-03-10 03:00")
    versions = _of(alerts, "intake.deemed_accepted", "D1")
    assert [a.status for a in versions] == ["open", "retracted"]
    assert versions[1].details["retracted_by"] == [case[-1]["event_id"]]


def test_notice_in_time_reported_late_retracts_the_late_notice() -> None:
    """A notice on 03-05 (in time) reported after a second, late notice of 03-11: the late
    one is not the first notice after all."""
    case = events("T-SHORT", [("submitted", "2026-03-02 09:00"),
                              ("supplement_requested", "2026-03-11 09:00"),
                              ("supplement_requested", "2026-03-05 09:00")], case_id="L1")
    alerts = replay_events(_late(case, "2026-03-11 12:00", "2026-03-11 10:00"), "2026-03-11 13:00")
    versions = _of(alerts, "supplement.late", "L1")
    assert [a.status for a in versions] == ["open", "retracted"]
    assert versions[1].details["retracted_by"] == [case[-1]["event_id"]]


def test_an_alert_its_rule_no_longer_knows_stands_and_is_watched_no_more() -> None:
    """An alert raised by an earlier version of a rule (its id not found before the new
    fact either) is not retracted by that fact: nothing was proven."""
    from jiancha.rules.case import CaseState
    from jiancha.rules.engine import Engine
    from jiancha.rules.ingest import Gate
    from tests.unit.eventkit import engine

    eng: Engine = engine()
    gate = Gate(eng.catalog)
    state: CaseState | None = None
    for e in events("T-SHORT", CASE, case_id="OLD"):
        event = gate.parse(orjson.dumps(e), None)
        state = eng.ingest(state, event, event.occurred_at)
    assert state is not None
    state.raised["pro-000000000000000000000000"] = 2
    state.sources["pro-000000000000000000000000"] = "process.skipped_step"
    decided = gate.parse(orjson.dumps(events("T-SHORT", [("decided", "2026-03-02 11:00")],
                                             case_id="OLD")[0] | {"event_id": "OLD-9"}), None)
    state = eng.ingest(state, decided, decided.occurred_at)
    alerts, _ = eng.judge(state, t("2026-03-02 11:30"), decided.step)
    assert not [a for a in alerts if a.status == "retracted"]
    assert state.raised["pro-000000000000000000000000"] == 2
    assert "pro-000000000000000000000000" not in state.sources
