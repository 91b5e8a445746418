"""One escalation policy (督办): every red alert neither corrected nor resolved escalates
after its rule's working days (rule set: ``escalation``), with no further event; a rule
that never escalates says so in the rule set. Driven through the engine over a table of
every red rule of the rule set. (That the Redis sink does not escalate a resolved alert:
tests/integration/test_redis_sink.py.)"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from jiancha.producers.contract import Alert, Complaint, parse_event
from jiancha.rules.case import CaseState
from jiancha.rules.complaints import OVERDUE, ComplaintRules, ComplaintState
from jiancha.rules.engine import Engine
from jiancha.rules.rulebook import DEFAULT_RULES_DIR, Escalation, RuleSet, RuleSetError, load_ruleset
from tests.unit.eventkit_integrity import at, drop, engine, ev, lawful, retime

Events = list[dict[str, Any]]
_TICK = 1e-6
_DAWN = datetime(1970, 1, 1, tzinfo=UTC)


def _no_reason() -> Events:
    events = lawful("NR", outcome="deny")
    return [{**e, "attributes": {"outcome": "deny"}} if e["step"] == "decided" else e
            for e in events]


def _conflict() -> Events:
    return [{**e, "actor": "h7"} if e["step"] in ("reviewed", "decided") else e
            for e in lawful("AC")]


@dataclass
class Row:
    """A case raising ``rule`` (red), and the event that corrects it, if one can (placed
    within the escalation period by :func:`_correct`)."""

    events: Callable[[], Events]
    correction: tuple[str, dict[str, Any]] | None = None


#: every red rule of the engine: a case that raises it, and its correcting step if any
ROWS: dict[str, Row] = {
    "deadline.promise_broken": Row(lambda: lawful("PB", through="accepted"),
                                   ("decided", {"outcome": "grant"})),
    "deadline.legal_broken": Row(lambda: lawful("LB", through="accepted"),
                                 ("decided", {"outcome": "grant"})),
    "delivery.late": Row(lambda: lawful("DL", through="decided"), ("delivered", {})),
    "suspension.unlawful_reason": Row(
        lambda: [*lawful("SU", through="accepted"), ev("SU", "suspended", "09:45", reason="lunch")],
        ("resumed", {})),
    "extension.irregular": Row(lambda: [*lawful("EX"), ev("EX", "extended", "09:40", attrs={"days": 1})]),
    "process.skipped_step": Row(lambda: drop(lawful("SK"), "reviewed")),
    "parallel.missing_opinion": Row(lambda: drop(lawful("PM", "T-JOINT"), "reviewed", "gongshang")),
    "decision.no_reason": Row(_no_reason),
    "fee.unauthorized": Row(lambda: [*lawful("FU"), ev("FU", "fee_charged", "12:00")]),
    "fee.over_standard": Row(lambda: [*lawful("FO", "T-FEE"),
                                      ev("FO", "fee_charged", "12:00", item="T-FEE", amount="60.00")]),
    "actor.conflict": Row(_conflict),
    "reporting.backdated": Row(lambda: retime(lawful("BD"), "decided", "08:00")),
    "supplement.repeated": Row(lambda: [ev("SR", "submitted", "09:00"),
                                        ev("SR", "supplement_requested", "10:00", items=["a"]),
                                        ev("SR", "supplement_requested", "11:00", items=["b"])]),
    "supplement.late": Row(lambda: [ev("SL", "submitted", "09:00"),
                                    ev("SL", "supplement_requested", "2024-03-13 10:00", items=["a"])]),
}


def _timeline(eng: Engine, events: Events) -> list[tuple[float, Alert]]:
    """(instant, alert) of every alert the engine raises for these facts, judged at each
    instant the deadline index would wake the case (no further event)."""
    state: CaseState | None = None
    for e in events:
        event = parse_event(e)
        state = eng.ingest(state, event, event.occurred_at)
    assert state is not None
    out: list[tuple[float, Alert]] = []
    _, now = eng.evaluate(state, _DAWN)
    while now is not None:
        alerts, following = eng.evaluate(state, now)
        out.extend((now.timestamp(), a) for a in alerts)
        assert following is None or following > now
        now = following
    return out


def _red_then_escalated(timeline: list[tuple[float, Alert]], rule: str
                        ) -> list[tuple[Alert, tuple[float, Alert] | None]]:
    reds = [(t, a) for t, a in timeline if a.rule == rule and a.severity == "red"]
    assert reds, f"{rule}: the case raises nothing"
    return [(red, next(((t, a) for t, a in timeline
                        if a.alert_id == red.alert_id and a.severity == "escalated"), None))
            for _, red in reds]


def _with_policy(rule: str, policy: dict[str, Any], tmp: Path) -> Engine:
    """The engine over a copy of the rule set in which ``rule`` has this escalation policy."""
    shutil.copytree(DEFAULT_RULES_DIR, tmp / "rules")
    base = engine()
    ruleset = load_ruleset(tmp / "rules")
    ruleset.rules[rule].escalation = Escalation.model_validate(policy)
    return Engine(base.catalog, ruleset, base.working_time)


def _red_rules(ruleset: RuleSet) -> set[str]:
    return {name for name, cfg in ruleset.rules.items() if cfg.severity == "red"}


def test_the_table_holds_every_red_rule_of_the_rule_set() -> None:
    assert set(ROWS) | {OVERDUE} == _red_rules(engine().ruleset)


@pytest.mark.parametrize("rule", sorted(ROWS))
def test_every_red_rule_escalates_after_its_working_days_with_no_further_event(rule: str) -> None:
    eng = engine()
    days = eng.ruleset.escalation_days(rule)
    assert days == 5
    for red, escalation in _red_then_escalated(_timeline(eng, ROWS[rule].events()), rule):
        assert escalation is not None, f"{rule}: {red.alert_id} never escalated"
        when, alert = escalation
        expected = eng.working_time.working_deadline_epoch(red.event_time.timestamp() - _TICK, days)
        assert when == max(expected, red.detected_at.timestamp())
        assert alert.details["escalated_after_working_days"] == days
        assert alert.message_zh.startswith(f"【督办】逾 {days} 个工作日")


@pytest.mark.parametrize("rule", sorted(r for r, row in ROWS.items() if row.correction))
def test_a_red_corrected_within_its_days_does_not_escalate(rule: str) -> None:
    eng = engine()
    row = ROWS[rule]
    events = row.events()
    reds = _red_then_escalated(_timeline(eng, events), rule)
    red = reds[0][0]
    # the missing action, one working day before the escalation
    days = eng.ruleset.escalation_days(rule)
    assert days is not None
    in_time = eng.working_time.working_deadline_epoch(red.event_time.timestamp() - _TICK, days - 1)
    step, attrs = row.correction  # type: ignore[misc]
    case, item = events[0]["case_id"], events[0]["item_code"]
    fixed = [*events, ev(case, step, datetime.fromtimestamp(in_time - 3600, at("09:00").tzinfo),
                         item=item, attrs=attrs)]
    again = _red_then_escalated(_timeline(eng, fixed), rule)
    assert [r.alert_id for r, _ in again] == [red.alert_id]  # still broken, but corrected
    assert again[0][1] is None


@pytest.mark.parametrize("rule", ["fee.unauthorized", "deadline.legal_broken"])
def test_the_escalation_period_is_the_rules_own(rule: str, tmp_path: Path) -> None:
    eng = _with_policy(rule, {"working_days": 2}, tmp_path)
    ((red, escalation),) = _red_then_escalated(_timeline(eng, ROWS[rule].events()), rule)
    assert escalation is not None
    expected = eng.working_time.working_deadline_epoch(red.event_time.timestamp() - _TICK, 2)
    assert escalation[0] == max(expected, red.detected_at.timestamp())
    assert escalation[1].details["escalated_after_working_days"] == 2
    # the other rules keep the default
    assert eng.ruleset.escalation_days("fee.over_standard") == eng.ruleset.settings.escalation_working_days


def test_a_rule_that_never_escalates_says_why(tmp_path: Path) -> None:
    eng = _with_policy("fee.unauthorized", {"never": "refunds are audited yearly"}, tmp_path)
    assert eng.ruleset.escalation_days("fee.unauthorized") is None
    ((_, escalation),) = _red_then_escalated(_timeline(eng, ROWS["fee.unauthorized"].events()),
                                             "fee.unauthorized")
    assert escalation is None


def test_an_unhandled_complaint_escalates_after_its_working_days() -> None:
    eng = engine()
    rules = ComplaintRules(eng.ruleset, eng.working_time, eng.catalog.departments)
    state: ComplaintState | None = None
    state, _ = rules.ingest(state, Complaint.model_validate({
        "schema_version": 1, "kind": "complaint", "complaint_id": "Q1", "department": "gongan",
        "occurred_at": at("10:00").isoformat(), "category": "delay", "text": "办理太慢"}))
    days = eng.ruleset.escalation_days(OVERDUE)
    assert days == 5
    timeline: list[tuple[float, Alert]] = []
    _, now = rules.evaluate(state, _DAWN)
    while now is not None:
        alerts, now_next = rules.evaluate(state, now)
        timeline.extend((now.timestamp(), a) for a in alerts)
        now = now_next
    ((red, escalation),) = _red_then_escalated(timeline, OVERDUE)
    assert escalation is not None
    expected = eng.working_time.working_deadline_epoch(red.event_time.timestamp() - _TICK, days)
    assert escalation[0] == max(expected, red.detected_at.timestamp())


# --- the rule set states each red rule's policy -------------------------------------------


def _rules_dir(tmp: Path, change: Callable[[dict[str, Any]], None], name: str = "integrity.yaml") -> Path:
    target = tmp / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, target)
    doc = yaml.safe_load((target / name).read_text(encoding="utf-8"))
    change(doc["rules"])
    (target / name).write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return target


def test_a_red_rule_without_a_policy_is_refused_naming_file_and_rule(tmp_path: Path) -> None:
    rules = _rules_dir(tmp_path, lambda r: r["fee.unauthorized"].pop("escalation"))
    with pytest.raises(RuleSetError, match=r"integrity\.yaml: rules\.fee\.unauthorized: .*escalation policy"):
        load_ruleset(rules)


@pytest.mark.parametrize(("policy", "problem"), [
    ({}, "either working_days"),
    ({"working_days": 3, "never": "x"}, "either working_days"),
    ({"working_days": 0}, "greater than or equal to 1"),
    ({"never": ""}, "at least 1 character"),
    ({"after": 3}, "Extra inputs"),
])
def test_a_bad_policy_is_refused(tmp_path: Path, policy: dict[str, Any], problem: str) -> None:
    rules = _rules_dir(tmp_path, lambda r: r["actor.conflict"].update(escalation=policy))
    with pytest.raises(RuleSetError, match=f"integrity.yaml: rules.actor.conflict.*{problem}"):
        load_ruleset(rules)


def test_a_yellow_rule_never_escalates(tmp_path: Path) -> None:
    rules = _rules_dir(tmp_path, lambda r: r["reporting.late"].update(
        escalation={"working_days": 5}))
    with pytest.raises(RuleSetError, match=r"reporting\.late.*yellow rule never escalates"):
        load_ruleset(rules)
    assert engine().ruleset.escalation_days("reporting.late") is None


def test_every_red_rule_of_the_shipped_rule_set_states_its_policy() -> None:
    ruleset = engine().ruleset
    assert all(ruleset.rules[r].escalation is not None for r in _red_rules(ruleset))
