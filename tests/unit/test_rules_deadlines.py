"""The deadline rules through the real engine and replay (test catalog):
deadline.approaching, deadline.promise_broken, deadline.legal_broken,
extension.irregular, suspension.unlawful_reason, delivery.late.

Test items: T-SHORT (legal 2 / promised 1), T-SIMPLE (20 / 10), T-JOINT (joint, 45 / 30,
extension up to 15). Calendar facts used below (2026): Mar 2 is a Monday with no holiday
near; 国庆 is Oct 1–7 and Sat Oct 10 is a 调休 working day; 清明 Apr 6 and 劳动节 May 1–5
are off, Sat May 9 is worked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from jiancha.producers.contract import LAWFUL_SUSPENSION_REASONS
from jiancha.rules.factory import build_engine
from tests.unit.eventkit import (
    TEST_CATALOG,
    Step,
    engine,
    events,
    of,
    raised_at,
    replay_events,
    run,
    t,
)

SUB = ("submitted", "2026-03-02 09:00")
ACC = ("accepted", "2026-03-02 10:00")
UNTIL = "2026-12-31 00:00"


@dataclass
class Case:
    name: str
    item: str
    steps: list[Step]
    #: event_time of each red/yellow alert of the rule, in order; [] = must not fire
    fires: list[str]
    until: str = UNTIL
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def _check(rule: str, case: Case) -> None:
    alerts = [a for a in of(run(case.item, case.steps, case.until), rule) if a.severity != "escalated"]
    assert [a.event_time for a in alerts] == [t(x) for x in case.fires], [a.message_en for a in alerts]


def _ids(cases: list[Case]) -> list[str]:
    return [c.name for c in cases]


# --- deadline.promise_broken ------------------------------------------------------------------
# T-SIMPLE accepted Mon Mar 2 10:00: promise 10 working days -> Mar 16 24:00 (= Mar 17 00:00).
# T-SHORT accepted Mon Mar 2 10:00: promise 1 working day -> Mar 3 24:00.

PROMISE = [
    Case("open case fires at the deadline", "T-SIMPLE", [SUB, ACC], ["2026-03-17 00:00"]),
    Case("decided one second after the deadline", "T-SIMPLE",
         [SUB, ACC, ("decided", "2026-03-17 00:00:01")], ["2026-03-17 00:00"]),
    Case("decided exactly at the deadline", "T-SIMPLE", [SUB, ACC, ("decided", "2026-03-17 00:00")], []),
    Case("decided the last second before", "T-SIMPLE", [SUB, ACC, ("decided", "2026-03-16 23:59:59")], []),
    Case("a deny also ends the clock", "T-SIMPLE",
         [SUB, ACC, ("decided", "2026-03-16 12:00", {"outcome": "deny", "reason": "x"})], []),
    Case("withdrawn before the deadline", "T-SIMPLE", [SUB, ACC, ("withdrawn", "2026-03-10 12:00")], []),
    # 国庆 week: Sep 30, Oct 8, 9, 10 (调休 Sat), 12..16, 19 -> Oct 19 24:00
    Case("holiday week: one second late", "T-SIMPLE",
         [("submitted", "2026-09-29 09:00"), ("accepted", "2026-09-29 10:00"),
          ("decided", "2026-10-20 00:00:01")], ["2026-10-20 00:00"]),
    Case("holiday week: on the last day", "T-SIMPLE",
         [("submitted", "2026-09-29 09:00"), ("accepted", "2026-09-29 10:00"),
          ("decided", "2026-10-19 17:00")], []),
    Case("调休 Saturday counts: due Sat Oct 10 24:00", "T-SHORT",
         [("submitted", "2026-10-09 09:00"), ("accepted", "2026-10-09 10:00"),
          ("decided", "2026-10-11 10:00")], ["2026-10-11 00:00"]),
    Case("调休 Saturday: decided on that Saturday", "T-SHORT",
         [("submitted", "2026-10-09 09:00"), ("accepted", "2026-10-09 10:00"),
          ("decided", "2026-10-10 16:00")], []),
    # T-SHORT accepted Thu Mar 5 10:00: due Fri Mar 6 24:00; a lawful suspension Fri 15:00 to
    # Mon 12:00 stops 9 h of Friday and 12 h of Monday: due Mon Mar 9 21:00.
    Case("lawful suspension over a weekend: decided in the moved limit", "T-SHORT",
         [("submitted", "2026-03-05 09:00"), ("accepted", "2026-03-05 10:00"),
          ("suspended", "2026-03-06 15:00", {"reason": "inspection"}), ("resumed", "2026-03-09 12:00"),
          ("decided", "2026-03-09 21:00")], []),
    Case("lawful suspension over a weekend: one second after the moved limit", "T-SHORT",
         [("submitted", "2026-03-05 09:00"), ("accepted", "2026-03-05 10:00"),
          ("suspended", "2026-03-06 15:00", {"reason": "inspection"}), ("resumed", "2026-03-09 12:00"),
          ("decided", "2026-03-09 21:00:01")], ["2026-03-09 21:00"]),
    Case("unlawful suspension does not stop the clock", "T-SHORT",
         [("submitted", "2026-03-05 09:00"), ("accepted", "2026-03-05 10:00"),
          ("suspended", "2026-03-06 15:00", {"reason": "waiting for the director"}),
          ("resumed", "2026-03-09 12:00"), ("decided", "2026-03-09 20:00")], ["2026-03-07 00:00"]),
    Case("suspended (lawfully) only after the deadline passed", "T-SIMPLE",
         [SUB, ACC, ("suspended", "2026-03-18 10:00", {"reason": "testing"})], ["2026-03-17 00:00"]),
    Case("still suspended (lawfully) at the deadline: no deadline", "T-SHORT",
         [SUB, ACC, ("suspended", "2026-03-03 10:00", {"reason": "expert_review"})], []),
    Case("an extension does not move the promise", "T-SIMPLE",
         [SUB, ACC, ("extended", "2026-03-10 10:00", {"days": 10}), ("decided", "2026-03-18 10:00")],
         ["2026-03-17 00:00"]),
    # deemed acceptance: no acceptance by Mar 9 24:00, the clock runs from submission (Mar 2)
    Case("deemed accepted: clock from submission", "T-SIMPLE",
         [("submitted", "2026-03-02 10:00"), ("accepted", "2026-03-11 10:00"),
          ("decided", "2026-03-17 10:00")], ["2026-03-17 00:00"]),
    Case("accepted on the 5th working day: clock from acceptance", "T-SHORT",
         [("submitted", "2026-03-02 10:00"), ("accepted", "2026-03-09 23:00"),
          ("decided", "2026-03-10 20:00")], []),
    Case("refused at intake in time: no clock", "T-SHORT",
         [("submitted", "2026-03-02 10:00"), ("rejected_at_intake", "2026-03-06 10:00")], []),
    Case("withdrawn during intake: no clock", "T-SHORT",
         [("submitted", "2026-03-02 10:00"), ("withdrawn", "2026-03-06 10:00")], []),
    Case("correction notice in time, no materials: no clock", "T-SHORT",
         [("submitted", "2026-03-02 10:00"), ("supplement_requested", "2026-03-03 10:00")], []),
    Case("correction notice in time: clock from acceptance after the materials", "T-SHORT",
         [("submitted", "2026-03-02 10:00"), ("supplement_requested", "2026-03-03 10:00"),
          ("supplement_received", "2026-03-20 10:00"), ("accepted", "2026-03-23 10:00"),
          ("decided", "2026-03-24 15:00")], []),
    Case("correction notice in time: late after the materials' acceptance", "T-SHORT",
         [("submitted", "2026-03-02 10:00"), ("supplement_requested", "2026-03-03 10:00"),
          ("supplement_received", "2026-03-20 10:00"), ("accepted", "2026-03-23 10:00"),
          ("decided", "2026-03-25 10:00")], ["2026-03-25 00:00"]),
    Case("late correction notice: deemed accepted at submission", "T-SHORT",
         [("submitted", "2026-03-02 10:00"), ("supplement_requested", "2026-03-11 10:00"),
          ("supplement_received", "2026-03-12 10:00"), ("accepted", "2026-03-13 10:00"),
          ("decided", "2026-03-13 11:00")], ["2026-03-04 00:00"]),
]


@pytest.mark.parametrize("case", PROMISE, ids=_ids(PROMISE))
def test_promise_broken(case: Case) -> None:
    _check("deadline.promise_broken", case)


def test_promise_broken_fires_with_no_further_event_and_escalates() -> None:
    alerts = run("T-SIMPLE", [SUB, ACC], UNTIL)
    red, esc = of(alerts, "deadline.promise_broken")
    assert (red.severity, esc.severity) == ("red", "escalated")
    assert red.alert_id == esc.alert_id
    # the deadline index fires it with no further event, the allowed lateness (10 min)
    # after the deadline, so a decision at 23:59 that arrives late is no false alarm
    assert raised_at("T-SIMPLE", [SUB, ACC], "deadline.promise_broken") == t("2026-03-17 00:10")
    assert red.event_time == t("2026-03-17 00:00")
    # 督办: 5 working days after the deadline day (Mar 16): Mar 17-20, Mar 23 -> 24:00
    assert raised_at("T-SIMPLE", [SUB, ACC], "deadline.promise_broken", severity="escalated") == t(
        "2026-03-24 00:00")
    assert red.details["limit"] == 10 and red.details["used"] == 10
    assert red.details["clock_basis"] == "accepted"
    assert "10 个工作日" in red.message_zh and "2026-03-16 24:00" in red.message_zh
    assert red.legal_basis
    assert red.evidence  # the acceptance that started the clock


def test_promise_broken_corrected_in_time_does_not_escalate() -> None:
    alerts = run("T-SIMPLE", [SUB, ACC, ("decided", "2026-03-19 10:00")], UNTIL)
    assert [a.severity for a in of(alerts, "deadline.promise_broken")] == ["red"]


def test_promise_broken_due_when_the_deemed_acceptance_is_known() -> None:
    """T-SHORT: deemed accepted at submission, the promise (Mar 3 24:00) ran out before the
    intake window (Mar 9 24:00) closed: raised when the deemed acceptance is certain, dated
    at the deadline."""
    alerts = of(run("T-SHORT", [("submitted", "2026-03-02 10:00")], UNTIL), "deadline.promise_broken")
    red = alerts[0]
    assert red.event_time == t("2026-03-04 00:00")
    assert raised_at("T-SHORT", [("submitted", "2026-03-02 10:00")], "deadline.promise_broken") == t(
        "2026-03-10 00:10")  # the window's end plus the allowed lateness
    assert red.details["clock_basis"] == "deemed_accepted"


def test_deadline_not_raised_before_it_is_due() -> None:
    # due the allowed lateness (10 min) after the deadline of Mar 16 24:00
    assert of(run("T-SIMPLE", [SUB, ACC], "2026-03-17 00:09:59"), "deadline.promise_broken") == []
    assert len(of(run("T-SIMPLE", [SUB, ACC], "2026-03-17 00:10"), "deadline.promise_broken")) == 1


# --- deadline.legal_broken -----------------------------------------------------------------
# T-SHORT accepted Mon Mar 2 10:00: legal 2 working days -> Mar 4 24:00 (= Mar 5 00:00);
# with a regular extension of 3: Mar 9 24:00. T-JOINT: 45 -> May 8 24:00, 45+15 -> May 28 24:00.

JOINT_SUB = ("submitted", "2026-03-02 09:00")
JOINT_ACC = ("accepted", "2026-03-02 10:00")
OPINIONS = [("reviewed", "2026-03-20 10:00", {"department": d}) for d in ("jianshe", "gongan", "gongshang")]

LEGAL = [
    Case("open case", "T-SHORT", [SUB, ACC], ["2026-03-05 00:00"]),
    Case("decided one second after the legal limit", "T-SHORT",
         [SUB, ACC, ("decided", "2026-03-05 00:00:01")], ["2026-03-05 00:00"]),
    Case("decided exactly at the legal limit", "T-SHORT", [SUB, ACC, ("decided", "2026-03-05 00:00")], []),
    Case("regular extension moves it: decided inside", "T-SHORT",
         [SUB, ACC, ("extended", "2026-03-04 10:00"), ("decided", "2026-03-09 15:00")], []),
    Case("regular extension: decided one second after the extended limit", "T-SHORT",
         [SUB, ACC, ("extended", "2026-03-04 10:00"), ("decided", "2026-03-10 00:00:01")],
         ["2026-03-10 00:00"]),
    Case("extension asked exactly at the limit is still in time", "T-SHORT",
         [SUB, ACC, ("extended", "2026-03-05 00:00"), ("decided", "2026-03-09 15:00")], []),
    Case("extension granted late does not move it", "T-SHORT",
         [SUB, ACC, ("extended", "2026-03-05 10:00"), ("decided", "2026-03-09 15:00")],
         ["2026-03-05 00:00"]),
    Case("extension without approver does not move it", "T-SHORT",
         [SUB, ACC, ("extended", "2026-03-04 10:00", {"approved_by": None}), ("decided", "2026-03-06 10:00")],
         ["2026-03-05 00:00"]),
    Case("extension longer than allowed does not move it", "T-SHORT",
         [SUB, ACC, ("extended", "2026-03-04 10:00", {"days": 11}), ("decided", "2026-03-06 10:00")],
         ["2026-03-05 00:00"]),
    Case("a second extension does not add", "T-SHORT",
         [SUB, ACC, ("extended", "2026-03-04 10:00"), ("extended", "2026-03-09 10:00", {"days": 5}),
          ("decided", "2026-03-11 10:00")], ["2026-03-10 00:00"]),
    Case("lawful suspension over a weekend: inside the moved limit", "T-SHORT",
         [("submitted", "2026-03-05 09:00"), ("accepted", "2026-03-05 10:00"),
          ("suspended", "2026-03-06 15:00", {"reason": "hearing"}), ("resumed", "2026-03-09 12:00"),
          ("decided", "2026-03-10 21:00")], []),
    Case("lawful suspension over a weekend: one second after", "T-SHORT",
         [("submitted", "2026-03-05 09:00"), ("accepted", "2026-03-05 10:00"),
          ("suspended", "2026-03-06 15:00", {"reason": "hearing"}), ("resumed", "2026-03-09 12:00"),
          ("decided", "2026-03-10 21:00:01")], ["2026-03-10 21:00"]),
    Case("unlawful suspension does not stop the legal clock", "T-SHORT",
         [("submitted", "2026-03-05 09:00"), ("accepted", "2026-03-05 10:00"),
          ("suspended", "2026-03-06 15:00", {"reason": "short of staff"}), ("resumed", "2026-03-09 12:00"),
          ("decided", "2026-03-10 20:00")], ["2026-03-10 00:00"]),
    Case("still suspended lawfully: no deadline", "T-SHORT",
         [SUB, ACC, ("suspended", "2026-03-04 10:00", {"reason": "quarantine"})], []),
    Case("holiday week: T-SIMPLE accepted before 国庆", "T-SIMPLE",
         [("submitted", "2026-09-29 09:00"), ("accepted", "2026-09-29 10:00")], ["2026-11-03 00:00"],
         until="2026-12-31 00:00"),
    Case("joint item: 45 working days", "T-JOINT",
         [JOINT_SUB, JOINT_ACC, *OPINIONS, ("decided", "2026-05-09 00:00:01")], ["2026-05-09 00:00"]),
    Case("joint item: decided on the 调休 Saturday after 45 days", "T-JOINT",
         [JOINT_SUB, JOINT_ACC, *OPINIONS, ("decided", "2026-05-09 10:00")], ["2026-05-09 00:00"]),
    Case("joint item: extension of 15 approved, decided at the 60th day's end", "T-JOINT",
         [JOINT_SUB, JOINT_ACC, *OPINIONS, ("extended", "2026-05-06 10:00", {"days": 15}),
          ("decided", "2026-05-29 00:00")], []),
    Case("joint item: extension of 15, one second late", "T-JOINT",
         [JOINT_SUB, JOINT_ACC, *OPINIONS, ("extended", "2026-05-06 10:00", {"days": 15}),
          ("decided", "2026-05-29 00:00:01")], ["2026-05-29 00:00"]),
    Case("joint item: extension of 16 is too long", "T-JOINT",
         [JOINT_SUB, JOINT_ACC, *OPINIONS, ("extended", "2026-05-06 10:00", {"days": 16}),
          ("decided", "2026-05-20 10:00")], ["2026-05-09 00:00"]),
    Case("refused at intake: no legal clock", "T-SHORT",
         [("submitted", "2026-03-02 10:00"), ("rejected_at_intake", "2026-03-09 10:00")], []),
]


@pytest.mark.parametrize("case", LEGAL, ids=_ids(LEGAL))
def test_legal_broken(case: Case) -> None:
    _check("deadline.legal_broken", case)


def test_legal_broken_details_quote_the_extension() -> None:
    alerts = run("T-SHORT", [SUB, ACC, ("extended", "2026-03-04 10:00", {"days": 3})], UNTIL)
    red = of(alerts, "deadline.legal_broken")[0]
    assert red.details["limit"] == 2 and red.details["extension"] == 3 and red.details["total"] == 5
    assert "5 个工作日" in red.message_zh and "延长 3 个工作日" in red.message_zh
    assert "2026-03-09 24:00" in red.message_en
    assert red.legal_basis == "行政许可法 第四十二条"
    assert len(red.evidence) == 2  # the acceptance and the extension


# --- deadline.approaching ------------------------------------------------------------------
# T-SIMPLE: promise 10, threshold max(1, 20 % of 10) = 2 -> warn after 8 days: Mar 12 24:00.
# T-SHORT: promise 1, threshold 1 -> warn from 24:00 of the acceptance day.
# T-JOINT: promise 30, threshold 6 -> warn after 24 days: Apr 3 24:00.

APPROACHING = [
    Case("open case", "T-SIMPLE", [SUB, ACC], ["2026-03-13 00:00"]),
    # the warning is raised the allowed lateness (10 min) after its instant; a decision
    # taken before then makes it pointless
    Case("decided one second after the warning instant, before it is raised", "T-SIMPLE",
         [SUB, ACC, ("decided", "2026-03-13 00:00:01")], []),
    Case("decided after the warning was raised", "T-SIMPLE",
         [SUB, ACC, ("decided", "2026-03-13 00:10:01")], ["2026-03-13 00:00"]),
    Case("decided exactly at the warning instant", "T-SIMPLE",
         [SUB, ACC, ("decided", "2026-03-13 00:00")], []),
    Case("decided before the warning instant", "T-SIMPLE", [SUB, ACC, ("decided", "2026-03-12 16:00")], []),
    Case("short item: warned from the end of the acceptance day", "T-SHORT",
         [SUB, ACC, ("decided", "2026-03-03 10:00")], ["2026-03-03 00:00"]),
    Case("short item decided on the acceptance day", "T-SHORT",
         [SUB, ACC, ("decided", "2026-03-02 16:00")], []),
    Case("joint item: 6 days before a 30-day promise", "T-JOINT", [JOINT_SUB, JOINT_ACC],
         ["2026-04-04 00:00"]),
    Case("holiday week: 8th working day after Sep 29 is Oct 15", "T-SIMPLE",
         [("submitted", "2026-09-29 09:00"), ("accepted", "2026-09-29 10:00")], ["2026-10-16 00:00"],
         until="2026-12-31 00:00"),
    Case("a lawful suspension moves the warning", "T-SIMPLE",
         [SUB, ACC, ("suspended", "2026-03-10 10:00", {"reason": "testing"}),
          ("resumed", "2026-03-12 10:00")], ["2026-03-17 00:00"]),
    Case("suspended lawfully after the warning instant: still warned", "T-SIMPLE",
         [SUB, ACC, ("suspended", "2026-03-16 10:00", {"reason": "testing"})], ["2026-03-13 00:00"]),
    Case("suspended lawfully before the warning: none while it lasts", "T-SIMPLE",
         [SUB, ACC, ("suspended", "2026-03-10 10:00", {"reason": "testing"})], []),
    Case("deemed acceptance known before the warning", "T-SIMPLE",
         [("submitted", "2026-03-02 10:00")], ["2026-03-13 00:00"]),
    Case("deemed acceptance known only after the promise broke: no warning", "T-SHORT",
         [("submitted", "2026-03-02 10:00")], []),
    Case("refused at intake: no warning", "T-SIMPLE",
         [("submitted", "2026-03-02 10:00"), ("rejected_at_intake", "2026-03-03 10:00")], []),
]


@pytest.mark.parametrize("case", APPROACHING, ids=_ids(APPROACHING))
def test_approaching(case: Case) -> None:
    _check("deadline.approaching", case)


def test_approaching_is_yellow_and_quotes_the_numbers() -> None:
    (alert,) = of(run("T-SIMPLE", [SUB, ACC], UNTIL), "deadline.approaching")
    assert alert.severity == "yellow"
    assert alert.details["threshold"] == 2 and alert.details["used"] == 8
    assert "剩余不足 2 个工作日" in alert.message_zh and "2026-03-16 24:00" in alert.message_zh


def test_approaching_text_does_not_change_with_a_later_suspension() -> None:
    steps: list[Step] = [SUB, ACC, ("suspended", "2026-03-16 10:00", {"reason": "testing"}),
                         ("resumed", "2026-03-20 10:00")]
    (alert,) = of(run("T-SIMPLE", steps, UNTIL), "deadline.approaching")
    (plain,) = of(run("T-SIMPLE", [SUB, ACC], UNTIL), "deadline.approaching")
    assert alert.details == plain.details
    assert alert.details["deadline_text"] == "2026-03-16 24:00"


def _engine_with(rule: str, params: dict[str, Any]):  # type: ignore[no-untyped-def]
    eng = build_engine(TEST_CATALOG)
    eng.ruleset.rules[rule].params = {**eng.ruleset.rules[rule].params, **params}
    return eng


@pytest.mark.parametrize(
    ("params", "steps", "event_time", "detected_at"),
    [
        # raised the allowed lateness (10 min) after the warning instant
        ({"share_of_promise": 0.25}, [SUB, ACC], "2026-03-12 12:00", "2026-03-12 12:10"),  # 2.5 days
        ({"min_working_days": 3}, [SUB, ACC], "2026-03-12 00:00", "2026-03-12 00:10"),
        # warn after 4 days (Mar 6 24:00), but a deemed acceptance is only known on Mar 10
        # (the window's end plus the allowed lateness)
        ({"share_of_promise": 0.6}, [("submitted", "2026-03-02 10:00")], "2026-03-07 00:00",
         "2026-03-10 00:10"),
    ],
)
def test_approaching_thresholds_come_from_the_rule_params(params: dict[str, Any], steps: list[Step],
                                                          event_time: str, detected_at: str) -> None:
    eng = _engine_with("deadline.approaching", params)
    (alert,) = of(run("T-SIMPLE", steps, UNTIL, eng=eng), "deadline.approaching")
    assert alert.event_time == t(event_time)
    assert raised_at("T-SIMPLE", steps, "deadline.approaching", eng=eng) == t(detected_at)


def test_default_approaching_params_are_in_the_yaml() -> None:
    assert dict(engine().ruleset.rules["deadline.approaching"].params) == {
        "min_working_days": 1, "share_of_promise": 0.2}


# --- extension.irregular -------------------------------------------------------------------

EXTENSION = [
    Case("regular extension", "T-SHORT", [SUB, ACC, ("extended", "2026-03-04 10:00", {"days": 10})], []),
    Case("asked exactly at the legal limit", "T-SHORT", [SUB, ACC, ("extended", "2026-03-05 00:00")], []),
    Case("no approver", "T-SHORT", [SUB, ACC, ("extended", "2026-03-04 10:00", {"approved_by": None})],
         ["2026-03-04 10:00"], extra={"problems": [["no_approver"]]}),
    Case("blank approver", "T-SHORT", [SUB, ACC, ("extended", "2026-03-04 10:00", {"approved_by": " "})],
         ["2026-03-04 10:00"], extra={"problems": [["no_approver"]]}),
    Case("longer than allowed", "T-SHORT", [SUB, ACC, ("extended", "2026-03-04 10:00", {"days": 11})],
         ["2026-03-04 10:00"], extra={"problems": [["too_long"]]}),
    Case("granted one second after the limit", "T-SHORT", [SUB, ACC, ("extended", "2026-03-05 00:00:01")],
         ["2026-03-05 00:00:01"], extra={"problems": [["late"]]}),
    Case("a second one", "T-SHORT",
         [SUB, ACC, ("extended", "2026-03-03 10:00"), ("extended", "2026-03-04 10:00")],
         ["2026-03-04 10:00"], extra={"problems": [["repeated"]]}),
    Case("a second one, also late and unapproved", "T-SHORT",
         [SUB, ACC, ("extended", "2026-03-03 10:00"),
          ("extended", "2026-03-10 10:00", {"approved_by": None})],
         ["2026-03-10 10:00"], extra={"problems": [["repeated", "no_approver", "late"]]}),
    Case("joint: 15 days is allowed", "T-JOINT",
         [JOINT_SUB, JOINT_ACC, ("extended", "2026-05-06 10:00", {"days": 15})], []),
    Case("joint: 16 days is too long", "T-JOINT",
         [JOINT_SUB, JOINT_ACC, ("extended", "2026-05-06 10:00", {"days": 16})],
         ["2026-05-06 10:00"], extra={"problems": [["too_long"]]}),
    Case("a lawful suspension moved the limit: in time", "T-SHORT",
         [("submitted", "2026-03-05 09:00"), ("accepted", "2026-03-05 10:00"),
          ("suspended", "2026-03-06 15:00", {"reason": "appraisal"}), ("resumed", "2026-03-09 12:00"),
          ("extended", "2026-03-10 20:00")], []),
    Case("an unlawful suspension moved nothing: late", "T-SHORT",
         [("submitted", "2026-03-05 09:00"), ("accepted", "2026-03-05 10:00"),
          ("suspended", "2026-03-06 15:00", {"reason": "holiday season"}), ("resumed", "2026-03-09 12:00"),
          ("extended", "2026-03-10 20:00")], ["2026-03-10 20:00"], extra={"problems": [["late"]]}),
]


@pytest.mark.parametrize("case", EXTENSION, ids=_ids(EXTENSION))
def test_extension_irregular(case: Case) -> None:
    _check("extension.irregular", case)
    if "problems" in case.extra:
        alerts = of(run(case.item, case.steps, case.until), "extension.irregular")
        assert [a.details["problems"] for a in alerts if a.severity == "red"] == case.extra["problems"]


def test_extension_irregular_is_one_alert_per_extension_and_escalates_unless_resolved() -> None:
    alerts = run("T-SHORT", [SUB, ACC, ("extended", "2026-03-03 10:00", {"approved_by": None}),
                             ("extended", "2026-03-04 10:00", {"days": 30})], UNTIL)
    irregular = [a for a in of(alerts, "extension.irregular") if a.severity == "red"]
    assert len({a.alert_id for a in irregular}) == 2
    # no later event corrects an irregular extension: a person resolves it, or it escalates
    assert sorted((a.alert_id, a.severity) for a in of(alerts, "extension.irregular")) == sorted(
        (a.alert_id, s) for a in irregular for s in ("red", "escalated"))
    assert "未经行政机关负责人批准" in irregular[0].message_zh
    assert "a second extension" in irregular[1].message_en and "longer than" in irregular[1].message_en


# --- suspension.unlawful_reason ------------------------------------------------------------


@pytest.mark.parametrize("reason", sorted(LAWFUL_SUSPENSION_REASONS))
def test_lawful_suspension_reasons_do_not_fire(reason: str) -> None:
    steps = [SUB, ACC, ("suspended", "2026-03-03 10:00", {"reason": reason}), ("resumed", "2026-03-05 10:00")]
    assert of(run("T-SIMPLE", steps, UNTIL), "suspension.unlawful_reason") == []


SUSPENSION = [
    Case("free-text reason", "T-SIMPLE",
         [SUB, ACC, ("suspended", "2026-03-03 10:00", {"reason": "waiting for the director"}),
          ("resumed", "2026-03-05 10:00")], ["2026-03-03 10:00"]),
    Case("a lawful reason in the wrong words", "T-SIMPLE",
         [SUB, ACC, ("suspended", "2026-03-03 10:00", {"reason": "听证"}), ("resumed", "2026-03-05 10:00")],
         ["2026-03-03 10:00"]),
    Case("one unlawful among lawful ones", "T-SIMPLE",
         [SUB, ACC, ("suspended", "2026-03-03 10:00", {"reason": "hearing"}), ("resumed", "2026-03-04 10:00"),
          ("suspended", "2026-03-05 10:00", {"reason": "staff on leave"}), ("resumed", "2026-03-06 10:00"),
          ("suspended", "2026-03-09 10:00", {"reason": "auction"}), ("resumed", "2026-03-10 10:00")],
         ["2026-03-05 10:00"]),
    Case("two unlawful ones", "T-SIMPLE",
         [SUB, ACC, ("suspended", "2026-03-03 10:00", {"reason": "x"}), ("resumed", "2026-03-04 10:00"),
          ("suspended", "2026-03-05 10:00", {"reason": "y"}), ("resumed", "2026-03-06 10:00")],
         ["2026-03-03 10:00", "2026-03-05 10:00"]),
]


@pytest.mark.parametrize("case", SUSPENSION, ids=_ids(SUSPENSION))
def test_suspension_unlawful_reason(case: Case) -> None:
    _check("suspension.unlawful_reason", case)


@pytest.mark.parametrize(
    ("steps", "severities"),
    [
        ([("resumed", "2026-03-05 10:00")], ["red"]),  # corrected by the resumption
        ([("decided", "2026-03-06 10:00")], ["red"]),  # the decision ends the "suspension"
        ([], ["red", "escalated"]),  # never resumed: 督办 after 5 working days
        ([("resumed", "2026-03-11 10:00")], ["red", "escalated"]),  # resumed after Mar 10 24:00
    ],
)
def test_suspension_unlawful_reason_is_corrected_by_resuming(steps: list[Step],
                                                             severities: list[str]) -> None:
    base: list[Step] = [SUB, ACC, ("suspended", "2026-03-03 10:00", {"reason": "no reason"})]
    alerts = run("T-SIMPLE", base + steps, UNTIL)
    assert [a.severity for a in of(alerts, "suspension.unlawful_reason")] == severities
    assert "no reason" in of(alerts, "suspension.unlawful_reason")[0].message_zh


# --- delivery.late -------------------------------------------------------------------------
# Granted Mon Mar 2 10:00: delivery within 10 working days -> Mar 16 24:00 (= Mar 17 00:00).

GRANT = ("decided", "2026-03-02 10:00")

DELIVERY = [
    Case("never delivered", "T-SIMPLE", [SUB, ACC, GRANT], ["2026-03-17 00:00"]),
    Case("delivered one second late", "T-SIMPLE", [SUB, ACC, GRANT, ("delivered", "2026-03-17 00:00:01")],
         ["2026-03-17 00:00"]),
    Case("delivered exactly at the limit", "T-SIMPLE",
         [SUB, ACC, GRANT, ("delivered", "2026-03-17 00:00")], []),
    Case("delivered the next day", "T-SIMPLE", [SUB, ACC, GRANT, ("delivered", "2026-03-03 10:00")], []),
    Case("denied: nothing to deliver", "T-SIMPLE",
         [SUB, ACC, ("decided", "2026-03-02 10:00", {"outcome": "deny", "reason": "x"})], []),
    Case("not yet due", "T-SIMPLE", [SUB, ACC, GRANT], [], until="2026-03-16 23:59:59"),
    # granted Fri Oct 9 2026: Oct 10 (调休 Sat), 12..16, 19..22 -> Oct 22 24:00
    Case("调休 Saturday counts: delivered Oct 23 is late", "T-SIMPLE",
         [("submitted", "2026-10-08 09:00"), ("accepted", "2026-10-08 10:00"),
          ("decided", "2026-10-09 10:00"), ("delivered", "2026-10-23 10:00")], ["2026-10-23 00:00"]),
    Case("调休 Saturday counts: delivered Oct 22 is in time", "T-SIMPLE",
         [("submitted", "2026-10-08 09:00"), ("accepted", "2026-10-08 10:00"),
          ("decided", "2026-10-09 10:00"), ("delivered", "2026-10-22 16:00")], []),
    # granted Tue Sep 29: Sep 30, Oct 8, 9, 10, 12..16, 19 -> Oct 19 24:00
    Case("holiday week: delivered on Oct 19", "T-SIMPLE",
         [("submitted", "2026-09-28 09:00"), ("accepted", "2026-09-28 10:00"),
          ("decided", "2026-09-29 10:00"), ("delivered", "2026-10-19 17:00")], []),
    Case("holiday week: delivered on Oct 20", "T-SIMPLE",
         [("submitted", "2026-09-28 09:00"), ("accepted", "2026-09-28 10:00"),
          ("decided", "2026-09-29 10:00"), ("delivered", "2026-10-20 09:00")], ["2026-10-20 00:00"]),
]


@pytest.mark.parametrize("case", DELIVERY, ids=_ids(DELIVERY))
def test_delivery_late(case: Case) -> None:
    _check("delivery.late", case)


@pytest.mark.parametrize(
    ("delivered", "severities"),
    [
        ("2026-03-20 10:00", ["red"]),  # corrected within 5 working days of the deadline
        (None, ["red", "escalated"]),
        ("2026-04-10 10:00", ["red", "escalated"]),
    ],
)
def test_delivery_late_escalation(delivered: str | None, severities: list[str]) -> None:
    steps: list[Step] = [SUB, ACC, GRANT] + ([("delivered", delivered)] if delivered else [])
    alerts = of(run("T-SIMPLE", steps, UNTIL), "delivery.late")
    assert [a.severity for a in alerts] == severities
    assert raised_at("T-SIMPLE", steps, "delivery.late") == t("2026-03-17 00:10")
    assert alerts[0].legal_basis == "行政许可法 第四十四条"
    assert "10 个工作日" in alerts[0].message_zh


# --- the same alerts whoever evaluates, whenever -----------------------------------------


def _evaluate_directly(evs: list[dict[str, Any]], now: datetime) -> dict[str, tuple[Any, ...]]:
    from jiancha.producers.contract import parse_event

    eng = engine()
    state = None
    for e in evs:
        ev = parse_event(e)
        state = eng.ingest(state, ev, ev.occurred_at)
    assert state is not None
    alerts, _ = eng.evaluate(state, now)
    return {a.alert_id + a.severity: (a.rule, a.event_time, a.message_zh, a.message_en, a.details)
            for a in alerts}


@pytest.mark.parametrize("until", ["2026-04-30 00:00", "2026-06-30 00:00"])
def test_replay_and_direct_evaluation_raise_identical_alerts(until: str) -> None:
    steps: list[Step] = [
        SUB, ACC,
        ("suspended", "2026-03-03 10:00", {"reason": "expert_review"}), ("resumed", "2026-03-04 16:00"),
        ("suspended", "2026-03-05 10:00", {"reason": "lunch"}), ("resumed", "2026-03-05 14:00"),
        ("extended", "2026-03-20 10:00", {"days": 1}), ("extended", "2026-03-23 10:00"),
        ("decided", "2026-04-02 10:00"),
    ]
    evs = sorted(events("T-SIMPLE", steps), key=lambda e: e["occurred_at"])
    replayed = {a.alert_id + a.severity: (a.rule, a.event_time, a.message_zh, a.message_en, a.details)
                for a in replay_events(evs, until)}
    direct = _evaluate_directly(evs, t(until))
    assert replayed == direct
    rules = {v[0] for v in replayed.values()}
    assert {"deadline.approaching", "deadline.promise_broken", "deadline.legal_broken",
            "extension.irregular", "suspension.unlawful_reason", "delivery.late"} <= rules
