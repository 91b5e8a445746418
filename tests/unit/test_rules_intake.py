"""The intake rules (行政许可法 Art. 32) through the real engine and replay (test catalog):
intake.deemed_accepted, supplement.repeated, supplement.late; and where the decision
clock starts (CaseView.clock_start), which every deadline rule builds on.

Submitted Mon 2026-03-02 10:00: the 5 working days end Mar 9 24:00 (= Mar 10 00:00).
Submitted Tue 2026-09-29: Sep 30, Oct 8, 9, 10 (调休 Saturday), 12 -> Oct 12 24:00.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jiancha.producers.contract import parse_event
from tests.unit.eventkit import Step, engine, events, of, raised_at, run, t

SUB = ("submitted", "2026-03-02 10:00")
UNTIL = "2026-12-31 00:00"


@dataclass
class Case:
    name: str
    steps: list[Step]
    fires: list[str]  # event_time of each (non-escalated) alert; [] = must not fire
    item: str = "T-SIMPLE"
    until: str = UNTIL


def _check(rule: str, case: Case) -> None:
    alerts = [a for a in of(run(case.item, case.steps, case.until), rule) if a.severity != "escalated"]
    assert [a.event_time for a in alerts] == [t(x) for x in case.fires], [a.message_en for a in alerts]


def _ids(cases: list[Case]) -> list[str]:
    return [c.name for c in cases]


# --- intake.deemed_accepted ----------------------------------------------------------------

DEEMED = [
    Case("no intake decision at all", [SUB], ["2026-03-10 00:00"]),
    Case("accepted one second late", [SUB, ("accepted", "2026-03-10 00:00:01")], ["2026-03-10 00:00"]),
    Case("accepted days late", [SUB, ("accepted", "2026-03-12 10:00")], ["2026-03-10 00:00"]),
    Case("accepted exactly at the end of the 5th day", [SUB, ("accepted", "2026-03-10 00:00")], []),
    Case("accepted on the 5th day", [SUB, ("accepted", "2026-03-09 17:00")], []),
    Case("accepted on the spot", [SUB, ("accepted", "2026-03-02 10:05")], []),
    Case("refused at intake in time", [SUB, ("rejected_at_intake", "2026-03-09 17:00")], []),
    Case("refused at intake too late", [SUB, ("rejected_at_intake", "2026-03-10 09:00")],
         ["2026-03-10 00:00"]),
    Case("correction notice in time, nothing since", [SUB, ("supplement_requested", "2026-03-09 17:00")], []),
    Case("correction notice too late", [SUB, ("supplement_requested", "2026-03-11 09:00")],
         ["2026-03-10 00:00"]),
    Case("withdrawn during intake", [SUB, ("withdrawn", "2026-03-05 09:00")], []),
    Case("decided during intake without acceptance (a skipped step, not deemed)",
         [SUB, ("decided", "2026-03-04 09:00")], []),
    Case("not yet due", [SUB], [], until="2026-03-09 23:59:59"),
    Case("submitted on a Saturday", [("submitted", "2026-03-07 10:00")], ["2026-03-14 00:00"]),
    Case("holiday week and 调休 Saturday: accepted Oct 13 is late",
         [("submitted", "2026-09-29 10:00"), ("accepted", "2026-10-13 09:00")], ["2026-10-13 00:00"]),
    Case("holiday week and 调休 Saturday: accepted Oct 12 is in time",
         [("submitted", "2026-09-29 10:00"), ("accepted", "2026-10-12 16:00")], []),
    # after a correction notice in time, the corrected materials open a new 5-day window:
    # received Thu Mar 5 10:00 -> Mar 6, 9, 10, 11, 12 -> Mar 12 24:00
    Case("corrected materials, then no acceptance",
         [SUB, ("supplement_requested", "2026-03-03 10:00"), ("supplement_received", "2026-03-05 10:00")],
         ["2026-03-13 00:00"]),
    Case("corrected materials, accepted one second late",
         [SUB, ("supplement_requested", "2026-03-03 10:00"), ("supplement_received", "2026-03-05 10:00"),
          ("accepted", "2026-03-13 00:00:01")], ["2026-03-13 00:00"]),
    Case("corrected materials, accepted in time",
         [SUB, ("supplement_requested", "2026-03-03 10:00"), ("supplement_received", "2026-03-05 10:00"),
          ("accepted", "2026-03-12 10:00")], []),
    Case("corrected materials, refused in time",
         [SUB, ("supplement_requested", "2026-03-03 10:00"), ("supplement_received", "2026-03-05 10:00"),
          ("rejected_at_intake", "2026-03-11 10:00")], []),
]


@pytest.mark.parametrize("case", DEEMED, ids=_ids(DEEMED))
def test_deemed_accepted(case: Case) -> None:
    _check("intake.deemed_accepted", case)


def test_deemed_accepted_is_yellow_and_tells_where_the_clock_runs_from() -> None:
    (alert,) = of(run("T-SIMPLE", [SUB], UNTIL), "intake.deemed_accepted")
    assert alert.severity == "yellow"
    assert "视为受理" in alert.message_zh and "2026-03-02" in alert.message_zh
    assert "2026-03-09 24:00" in alert.message_zh
    assert "the application was received" in alert.message_en
    assert alert.details["clock_basis"] == "deemed_accepted"
    assert alert.legal_basis.startswith("行政许可法 第三十二条")
    # raised once the allowed lateness (10 min) after the window passed: an acceptance made
    # on the 5th day may still arrive
    assert raised_at("T-SIMPLE", [SUB], "intake.deemed_accepted") == t("2026-03-10 00:10")


def test_deemed_accepted_after_the_corrected_materials() -> None:
    steps: list[Step] = [SUB, ("supplement_requested", "2026-03-03 10:00"),
                         ("supplement_received", "2026-03-05 10:00")]
    (alert,) = of(run("T-SIMPLE", steps, UNTIL), "intake.deemed_accepted")
    assert alert.details["clock_basis"] == "deemed_accepted_after_supplement"
    assert "收到补正材料" in alert.message_zh and "2026-03-05" in alert.message_zh
    # the decision clock then runs from the materials: promise 10 days from Mar 5 -> Mar 19 24:00
    (broken,) = [a for a in of(run("T-SIMPLE", steps, UNTIL), "deadline.promise_broken")
                 if a.severity == "red"]
    assert broken.event_time == t("2026-03-20 00:00")


# --- where the decision clock starts -------------------------------------------------------


def _clock(steps: list[Step], item: str = "T-SIMPLE") -> tuple[str, str, str] | None:
    eng = engine()
    state = None
    for e in events(item, steps):
        ev = parse_event(e)
        state = eng.ingest(state, ev, ev.occurred_at)
    assert state is not None
    start = eng.view(state).clock_start
    if start is None:
        return None
    at, basis, _, known = start  # known: for a deemed start, the window end + allowed lateness
    return basis, at.strftime("%Y-%m-%d %H:%M"), known.strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("steps", "clock"),
    [
        ([SUB, ("accepted", "2026-03-04 10:00")], ("accepted", "2026-03-04 10:00", "2026-03-04 10:00")),
        ([SUB], ("deemed_accepted", "2026-03-02 10:00", "2026-03-10 00:10")),
        ([SUB, ("accepted", "2026-03-11 10:00")],
         ("deemed_accepted", "2026-03-02 10:00", "2026-03-10 00:10")),
        ([("accepted", "2026-03-04 10:00")], ("accepted", "2026-03-04 10:00", "2026-03-04 10:00")),
        ([SUB, ("supplement_requested", "2026-03-03 10:00")], None),
        ([SUB, ("supplement_requested", "2026-03-03 10:00"), ("accepted", "2026-03-20 10:00")],
         ("accepted", "2026-03-20 10:00", "2026-03-20 10:00")),
        ([SUB, ("supplement_requested", "2026-03-03 10:00"), ("supplement_received", "2026-03-16 10:00"),
          ("accepted", "2026-03-18 10:00")], ("accepted", "2026-03-18 10:00", "2026-03-18 10:00")),
        ([SUB, ("supplement_requested", "2026-03-03 10:00"), ("supplement_received", "2026-03-16 10:00")],
         ("deemed_accepted_after_supplement", "2026-03-16 10:00", "2026-03-24 00:10")),
        ([SUB, ("supplement_requested", "2026-03-11 10:00"), ("supplement_received", "2026-03-12 10:00"),
          ("accepted", "2026-03-13 10:00")], ("deemed_accepted", "2026-03-02 10:00", "2026-03-10 00:10")),
        ([SUB, ("rejected_at_intake", "2026-03-04 10:00")], None),
        ([SUB, ("withdrawn", "2026-03-04 10:00")], None),
        ([SUB, ("withdrawn", "2026-03-12 10:00")],
         ("deemed_accepted", "2026-03-02 10:00", "2026-03-10 00:10")),
        ([SUB, ("supplement_requested", "2026-03-03 10:00"), ("withdrawn", "2026-03-12 10:00")], None),
        ([SUB, ("accepted", "2026-03-03 10:00"), ("withdrawn", "2026-03-04 10:00")],
         ("accepted", "2026-03-03 10:00", "2026-03-03 10:00")),
    ],
    ids=["accepted", "deemed", "accepted-late", "no-submission", "waiting-for-materials",
         "notice-then-accepted", "materials-then-accepted", "materials-then-nothing",
         "late-notice", "refused-at-intake", "withdrawn-in-intake", "withdrawn-after-intake",
         "withdrawn-while-waiting", "accepted-then-withdrawn"],
)
def test_clock_start(steps: list[Step], clock: tuple[str, str, str] | None) -> None:
    assert _clock(steps) == clock


# --- supplement.repeated -------------------------------------------------------------------

REPEATED = [
    Case("one notice", [SUB, ("supplement_requested", "2026-03-03 10:00")], []),
    Case("a second notice", [SUB, ("supplement_requested", "2026-03-03 10:00"),
                             ("supplement_requested", "2026-03-04 10:00")], ["2026-03-04 10:00"]),
    Case("a second notice after the corrected materials",
         [SUB, ("supplement_requested", "2026-03-03 10:00"), ("supplement_received", "2026-03-05 10:00"),
          ("supplement_requested", "2026-03-06 10:00")], ["2026-03-06 10:00"]),
    Case("three notices: two alerts",
         [SUB, ("supplement_requested", "2026-03-03 10:00"), ("supplement_requested", "2026-03-04 10:00"),
          ("supplement_requested", "2026-03-05 10:00")], ["2026-03-04 10:00", "2026-03-05 10:00"]),
    Case("two notices the same minute", [SUB, ("supplement_requested", "2026-03-03 10:00"),
                                         ("supplement_requested", "2026-03-03 10:00")], ["2026-03-03 10:00"]),
]


@pytest.mark.parametrize("case", REPEATED, ids=_ids(REPEATED))
def test_supplement_repeated(case: Case) -> None:
    _check("supplement.repeated", case)


def test_supplement_repeated_counts_and_escalates_unless_resolved() -> None:
    steps: list[Step] = [SUB, ("supplement_requested", "2026-03-03 10:00"),
                         ("supplement_requested", "2026-03-04 10:00"),
                         ("supplement_requested", "2026-03-05 10:00")]
    every = of(run("T-SIMPLE", steps, UNTIL), "supplement.repeated")
    alerts = [a for a in every if a.severity == "red"]
    # cannot be undone by a later event: a person resolves it, or it escalates
    assert sorted(a.severity for a in every) == ["escalated", "escalated", "red", "red"]
    assert [a.details["count"] for a in alerts] == [2, 3]
    assert "第 2 次" in alerts[0].message_zh and "一次性告知" in alerts[0].message_zh
    assert len({a.alert_id for a in alerts}) == 2


def test_supplement_repeated_id_does_not_depend_on_arrival_order() -> None:
    steps: list[Step] = [SUB, ("supplement_requested", "2026-03-03 10:00"),
                         ("supplement_requested", "2026-03-04 10:00")]
    in_order = of(run("T-SIMPLE", steps, UNTIL), "supplement.repeated")
    reversed_ = of(run("T-SIMPLE", [steps[0], steps[2], steps[1]], UNTIL, in_order=False),
                   "supplement.repeated")
    assert [(a.event_time, a.severity) for a in in_order] == [
        (a.event_time, a.severity) for a in reversed_]
    assert [a.severity for a in in_order] == ["red", "escalated"]


# --- supplement.late -----------------------------------------------------------------------

LATE = [
    Case("no notice", [SUB, ("accepted", "2026-03-03 10:00")], []),
    Case("notice on the 5th day", [SUB, ("supplement_requested", "2026-03-09 16:00")], []),
    Case("notice exactly at the end of the 5th day", [SUB, ("supplement_requested", "2026-03-10 00:00")], []),
    Case("notice one second late", [SUB, ("supplement_requested", "2026-03-10 00:00:01")],
         ["2026-03-10 00:00:01"]),
    Case("only the first notice is judged (a late second one is repeated)",
         [SUB, ("supplement_requested", "2026-03-07 10:00"), ("supplement_requested", "2026-03-14 10:00")],
         []),
    Case("holiday week: notice on Oct 12 (the 调休 Saturday counted)",
         [("submitted", "2026-09-29 10:00"), ("supplement_requested", "2026-10-12 16:00")], []),
    Case("holiday week: notice on Oct 13",
         [("submitted", "2026-09-29 10:00"), ("supplement_requested", "2026-10-13 09:00")],
         ["2026-10-13 09:00"]),
]


@pytest.mark.parametrize("case", LATE, ids=_ids(LATE))
def test_supplement_late(case: Case) -> None:
    _check("supplement.late", case)


@pytest.mark.parametrize(
    ("notice", "used", "overdue"),
    [
        ("2026-03-10 00:00:01", 6, 1),  # Tue Mar 10 is the 6th working day
        ("2026-03-14 10:00", 10, 5),  # a Saturday counts as the next working day (Mon Mar 16)
        ("2026-03-23 10:00", 15, 10),
    ],
)
def test_supplement_late_quotes_the_days(notice: str, used: int, overdue: int) -> None:
    alerts = of(run("T-SIMPLE", [SUB, ("supplement_requested", notice)], UNTIL), "supplement.late")
    # a late notice cannot be undone: a person resolves it, or it escalates
    assert [a.severity for a in alerts] == ["red", "escalated"]
    assert (alerts[0].details["used"], alerts[0].details["overdue"]) == (used, overdue)
    assert f"第 {used} 个工作日" in alerts[0].message_zh
    assert f"逾期 {overdue} 个工作日" in alerts[0].message_zh
    assert len(alerts[0].evidence) == 2


def test_late_notice_is_also_a_deemed_acceptance() -> None:
    alerts = run("T-SIMPLE", [SUB, ("supplement_requested", "2026-03-11 10:00")], UNTIL)
    assert [a.severity for a in of(alerts, "supplement.late")] == ["red", "escalated"]
    assert len(of(alerts, "intake.deemed_accepted")) == 1
    assert len(of(alerts, "supplement.repeated")) == 0
