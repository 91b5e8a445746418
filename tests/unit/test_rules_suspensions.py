"""``suspension.overlong``: a suspension for a lawful reason (Art. 45) still open after the
maximum for its reason (rule set: per reason, a default, per item) warns at that instant,
with no further event."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from jiancha.producers.contract import LAWFUL_SUSPENSION_REASONS
from jiancha.rules.checks.suspensions import REASON_NAMES
from jiancha.rules.factory import build_engine
from jiancha.rules.rulebook import DEFAULT_RULES_DIR
from tests.unit.eventkit import TEST_CATALOG, Step, of, raised_at, run, t

RULE = "suspension.overlong"
SUB = ("submitted", "2026-03-02 09:00")
ACC = ("accepted", "2026-03-02 10:00")
UNTIL = "2026-12-31 00:00"
#: suspended Tue Mar 3 2026: 20 working days end 24:00 Mar 31; 30 end 24:00 Apr 15 (Apr 6,
#: 清明, is a holiday); 60 end 24:00 May 29 (May 1-5 劳动节)
SUSPENDED = "2026-03-03 10:00"


def _suspended(reason: str, *after: Step) -> list[Step]:
    return [SUB, ACC, ("suspended", SUSPENDED, {"reason": reason}), *after]


@pytest.mark.parametrize(("reason", "deadline"), [
    ("hearing", "2026-04-01 00:00"),
    ("inspection", "2026-04-16 00:00"),
    ("expert_review", "2026-04-16 00:00"),
    ("tendering", "2026-05-30 00:00"),
])
def test_a_never_resumed_lawful_suspension_warns_at_its_maximum(reason: str, deadline: str) -> None:
    steps = _suspended(reason)
    # with no further event: the instant the maximum passed, plus the allowed lateness
    assert raised_at("T-SIMPLE", steps, RULE) == t(deadline).replace(minute=10)
    (alert,) = of(run("T-SIMPLE", steps, UNTIL), RULE)
    assert alert.severity == "yellow"
    assert alert.event_time == t(deadline)
    zh, en = REASON_NAMES[reason]
    limit = {"hearing": 20, "tendering": 60}.get(reason, 30)
    assert alert.details["limit"] == limit and alert.details["reason"] == reason
    assert f"因{zh}暂停计时" in alert.message_zh and f"最长 {limit} 个工作日" in alert.message_zh
    assert f"suspended for {en} since 2026-03-03 10:00" in alert.message_en
    assert reason not in alert.message_zh  # names, not codes


@pytest.mark.parametrize("closing", [
    ("resumed", "2026-04-15 18:00"),  # the last working day of 30
    ("resumed", "2026-04-16 00:00"),  # at the very end
    ("decided", "2026-04-10 10:00"),  # the case ended while suspended
    ("withdrawn", "2026-03-20 10:00"),
])
def test_a_suspension_closed_in_time_raises_nothing(closing: Step) -> None:
    assert of(run("T-SIMPLE", _suspended("inspection", closing), UNTIL), RULE) == []


def test_a_resumption_after_the_maximum_does_not_undo_the_warning() -> None:
    alerts = of(run("T-SIMPLE", _suspended("inspection", ("resumed", "2026-04-16 09:00")), UNTIL),
                RULE)
    assert [a.event_time for a in alerts] == [t("2026-04-16 00:00")]


def test_a_resumption_reported_within_the_allowed_lateness_is_no_false_alarm() -> None:
    steps = _suspended("inspection", ("resumed", "2026-04-15 23:55"))
    assert raised_at("T-SIMPLE", steps, RULE) is None


def test_each_lawful_suspension_is_judged_and_an_unlawful_one_is_not() -> None:
    steps = [SUB, ACC, ("suspended", "2026-03-03 10:00", {"reason": "hearing"}),
             ("resumed", "2026-03-05 10:00"),
             ("suspended", "2026-03-06 10:00", {"reason": "lunch"}),  # not Art. 45: no pause
             ("resumed", "2026-03-06 12:00"),
             ("suspended", "2026-03-09 10:00", {"reason": "appraisal"})]
    alerts = of(run("T-SIMPLE", steps, UNTIL), RULE)
    assert [(a.details["reason"], a.details["suspended_at"]) for a in alerts] == [
        ("appraisal", "2026-03-09T10:00:00+08:00")]


def test_every_art45_reason_has_a_name_and_a_maximum() -> None:
    from tests.unit.eventkit import engine

    assert set(REASON_NAMES) == LAWFUL_SUSPENSION_REASONS
    limits = engine().ruleset.params(RULE, "T-SIMPLE")["max_working_days"]
    assert set(limits) == LAWFUL_SUSPENSION_REASONS | {"default"}


def test_maxima_per_item_override_only_the_reasons_they_name(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules)
    (rules / "overrides.yaml").write_text(yaml.safe_dump({"item_overrides": {
        "T-SIMPLE": {RULE: {"params": {"max_working_days": {"inspection": 5}}}}}}))
    eng = build_engine(TEST_CATALOG, rules)
    # T-SIMPLE: inspection 5 working days (24:00 Mar 10), hearing keeps its 20
    assert raised_at("T-SIMPLE", _suspended("inspection"), RULE, eng=eng) == t("2026-03-11 00:10")
    assert raised_at("T-SIMPLE", _suspended("hearing"), RULE, eng=eng) == t("2026-04-01 00:10")
    # another item keeps the rule set's 30
    assert raised_at("T-SHORT", _suspended("inspection"), RULE, eng=eng) == t("2026-04-16 00:10")


def test_the_default_maximum_covers_a_reason_the_rule_set_does_not_name(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules)
    path = rules / "suspensions.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    del doc["rules"][RULE]["params"]["max_working_days"]["auction"]
    doc["rules"][RULE]["params"]["max_working_days"]["default"] = 20
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    eng = build_engine(TEST_CATALOG, rules)
    assert raised_at("T-SIMPLE", _suspended("auction"), RULE, eng=eng) == t("2026-04-01 00:10")
