"""rules/lifecycle.py: status transitions and the auto-resolve decision, on real alerts
raised by the real engine (test catalog) and the case facts that follow.

T-SIMPLE (promised 10, legal 20 working days) accepted Mon 2026-03-02 10:00: the promise
ends Mar 16 24:00; deadline.approaching warns when 2 working days remain (Mar 12 24:00).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from jiancha.producers.contract import Alert, parse_event
from jiancha.rules.findings import CaseView
from jiancha.rules.lifecycle import TransitionError, auto_resolvable, next_status
from tests.unit.eventkit import Step, engine, events, of, replay_events

SUB = ("submitted", "2026-03-02 09:00")
ACC = ("accepted", "2026-03-02 10:00")


def _alert_and_view(item: str, before: Sequence[Step], after: Sequence[Step], rule: str,
                    until: str, severity: str | None = None) -> tuple[Alert, CaseView]:
    """The ``rule`` alert raised on the case as it stood (``before``, replayed to ``until``),
    and the view of the case with the later facts (``after``) added."""
    evs = events(item, [*before, *after])
    raised = [a for a in of(replay_events(evs[:len(before)], until), rule)
              if severity is None or a.severity == severity]
    assert raised, f"{rule} was not raised"
    eng = engine()
    state = None
    for e in evs:
        ev = parse_event(e)
        state = eng.ingest(state, ev, ev.occurred_at)
    assert state is not None
    return raised[-1], eng.view(state)


# --- transitions -------------------------------------------------------------------------------


def test_transitions() -> None:
    assert next_status("open", "acknowledge") == "acknowledged"
    assert next_status("open", "resolve") == "resolved"
    assert next_status("acknowledged", "resolve") == "resolved"
    for current, action in [("acknowledged", "acknowledge"), ("resolved", "acknowledge"),
                            ("resolved", "resolve")]:
        with pytest.raises(TransitionError, match=f"cannot {action} an alert that is {current}"):
            next_status(current, action)
    with pytest.raises(ValueError, match="unknown action"):
        next_status("open", "reopen")


# --- auto-resolve ------------------------------------------------------------------------------


def test_approaching_resolved_when_decided_in_time() -> None:
    alert, view = _alert_and_view("T-SIMPLE", [SUB, ACC], [("decided", "2026-03-16 15:00")],
                                  "deadline.approaching", "2026-03-14 00:00")
    assert alert.severity == "yellow"
    reason = auto_resolvable(alert, view)
    assert reason is not None and "within the promised limit" in reason and "承诺时限内" in reason


@pytest.mark.parametrize("end", [
    ("withdrawn", "2026-03-13 10:00"),
    ("decided", "2026-03-13 10:00", {"outcome": "deny", "reason": "materials false"}),
])
def test_approaching_resolved_when_withdrawn_or_refused_in_time(end: Step) -> None:
    alert, view = _alert_and_view("T-SIMPLE", [SUB, ACC], [end], "deadline.approaching",
                                  "2026-03-14 00:00")
    assert "within the promised limit" in (auto_resolvable(alert, view) or "")


def test_approaching_stays_while_the_case_is_open() -> None:
    alert, view = _alert_and_view("T-SIMPLE", [SUB, ACC], [("reviewed", "2026-03-13 10:00")],
                                  "deadline.approaching", "2026-03-14 00:00")
    assert auto_resolvable(alert, view) is None


def test_approaching_stays_while_lawfully_suspended() -> None:
    alert, view = _alert_and_view("T-SIMPLE", [SUB, ACC],
                                  [("suspended", "2026-03-13 10:00", {"reason": "expert_review"})],
                                  "deadline.approaching", "2026-03-14 00:00")
    assert auto_resolvable(alert, view) is None


def test_approaching_superseded_when_decided_late() -> None:
    """Decided after the promise: the warning is superseded by the red alert, which stays."""
    alert, view = _alert_and_view("T-SIMPLE", [SUB, ACC], [("decided", "2026-03-18 10:00")],
                                  "deadline.approaching", "2026-03-14 00:00")
    reason = auto_resolvable(alert, view)
    assert reason is not None and "superseded by deadline.promise_broken" in reason


@pytest.mark.parametrize(("rule", "severity", "until"), [
    ("deadline.promise_broken", "red", "2026-03-18 00:00"),
    ("deadline.promise_broken", "escalated", "2026-04-30 00:00"),
    ("deadline.legal_broken", "red", "2026-04-01 00:00"),
    ("deadline.legal_broken", "escalated", "2026-04-30 00:00"),
])
def test_broken_limits_stay_on_record_even_when_decided_later(rule: str, severity: str,
                                                             until: str) -> None:
    alert, view = _alert_and_view("T-SIMPLE", [SUB, ACC], [("decided", "2026-05-06 10:00")], rule,
                                  until, severity)
    assert alert.severity == severity
    assert view.ended is not None
    assert auto_resolvable(alert, view) is None


def test_deemed_acceptance_resolved_when_accepted_or_ended() -> None:
    before = [("submitted", "2026-03-02 10:00")]
    alert, view = _alert_and_view("T-SIMPLE", before, [("accepted", "2026-03-11 10:00")],
                                  "intake.deemed_accepted", "2026-03-10 12:00")
    assert "accepted" in (auto_resolvable(alert, view) or "")
    alert, view = _alert_and_view("T-SIMPLE", before, [("withdrawn", "2026-03-12 10:00")],
                                  "intake.deemed_accepted", "2026-03-10 12:00")
    assert "withdrew" in (auto_resolvable(alert, view) or "")
    alert, view = _alert_and_view("T-SIMPLE", before, [], "intake.deemed_accepted",
                                  "2026-03-10 12:00")
    assert auto_resolvable(alert, view) is None


def test_other_rules_resolved_alerts_and_other_cases_are_left_alone() -> None:
    alert, view = _alert_and_view("T-SIMPLE", [SUB, ACC], [("decided", "2026-03-16 15:00")],
                                  "deadline.approaching", "2026-03-14 00:00")
    assert auto_resolvable(alert.model_copy(update={"status": "resolved"}), view) is None
    assert auto_resolvable(alert.model_copy(update={"case_id": "OTHER"}), view) is None
    assert auto_resolvable(alert.model_copy(update={"rule": "process.unknown_step"}), view) is None
    assert auto_resolvable(alert.model_copy(update={"severity": "red"}), view) is None
