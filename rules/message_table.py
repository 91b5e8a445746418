"""The table of every alert text (docs/messages.md): each rule's zh and en template from
the rule set, with one example rendered by the real engine (replay) from a small
constructed case, and the escalation prefix. ``jiancha rules messages`` writes it; a unit
test fails when the file in docs/ differs from what the rule set gives now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from jiancha.producers.contract import Alert, Step

from .calendar import OfficialCalendar
from .catalog import Catalog, Department, Item
from .checks import CHECKS
from .complaints import COMPLAINT_RULES
from .counted_time import WorkingTime
from .engine import Engine
from .messages import escalation_prefix
from .replay import replay
from .rulebook import DEFAULT_RULES_DIR, RuleSet, load_ruleset
from .windows import WINDOW_RULES

TZ = ZoneInfo("Asia/Shanghai")
_STEPS = (Step.submitted, Step.accepted, Step.reviewed, Step.decided, Step.delivered,
          Step.completed)

#: the departments and items the examples are about (a small catalog of their own, so
#: that the examples do not change when the real catalog does)
DEPARTMENTS = {d.code: d for d in (
    Department(code="gongan", name_zh="公安局", name_en="Public Security Bureau"),
    Department(code="jianshe", name_zh="建设委员会", name_en="Construction Commission"),
    Department(code="guihua", name_zh="规划局", name_en="Planning Bureau"),
    Department(code="huanbao", name_zh="环境保护局", name_en="Environmental Protection Bureau"),
)}
#: what every example item says of itself (they are examples, not the catalog's items)
_EXAMPLE = {"legal_basis": "行政许可法 第四十二条", "verified": False,
            "verification_note": "an example item of the message table, not a catalog item"}
ITEMS = {i.code: i for i in (
    Item(code="EX-HOTEL", name_zh="旅馆业特种行业许可证核发",
         name_en="Special trade licence for the hotel trade", department="gongan",
         legal_days=20, promised_days=10, steps=_STEPS, **_EXAMPLE),
    Item(code="EX-DRIVE", name_zh="机动车驾驶证核发",
         name_en="Issuance of motor vehicle driving licences", department="gongan",
         legal_days=20, promised_days=10, steps=_STEPS, fee_standard="10.00",
         fee_basis="an example fee document", **_EXAMPLE),
    Item(code="EX-SEAL", name_zh="公章刻制备案", name_en="Registration of official seals",
         department="gongan", legal_days=5, promised_days=3,
         steps=(Step.submitted, Step.accepted, Step.decided, Step.completed), **_EXAMPLE),
    Item(code="EX-BUILD", name_zh="建筑工程施工许可证核发",
         name_en="Construction permit for building works", department="jianshe",
         legal_days=45, promised_days=30, steps=_STEPS, joint=True,
         co_departments=("guihua", "huanbao"), **_EXAMPLE),
)}


def example_engine(rules_dir: Path = DEFAULT_RULES_DIR) -> Engine:
    """The real engine over the rule set in ``rules_dir`` and the examples' catalog."""
    ruleset = load_ruleset(rules_dir, known_rules=set(CHECKS) | WINDOW_RULES | COMPLAINT_RULES)
    return Engine(Catalog(ITEMS, DEPARTMENTS), ruleset,
                  WorkingTime(OfficialCalendar.from_file(None), TZ))


# --- the constructed cases ------------------------------------------------------------------


class _Case:
    """Wire events of one example case."""

    def __init__(self, case_id: str, item: str) -> None:
        self.case_id, self.item = case_id, item
        self.lines: list[dict[str, Any]] = []

    def step(self, step: str, when: str, actor: str = "wang.fang", *,
             department: str | None = None, received: str | None = None,
             **attributes: Any) -> _Case:
        ev: dict[str, Any] = {
            "schema_version": 1, "event_id": f"{self.case_id}-{len(self.lines) + 1}",
            "case_id": self.case_id, "item_code": self.item,
            "department": department or ITEMS[self.item].department, "step": step,
            "occurred_at": _at(when).isoformat(),
            "actor": "applicant" if step in ("submitted", "supplement_received") else actor,
        }
        if step == "submitted":
            ev["applicant_id"] = "sha256:applicant-1"
        if step == "reviewed":
            attributes.setdefault("opinion", "agree")
        if attributes:
            ev["attributes"] = attributes
        if received is not None:
            ev["received_at"] = _at(received).isoformat()
        self.lines.append(ev)
        return self


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def _opened(case_id: str, item: str = "EX-HOTEL") -> _Case:
    return (_Case(case_id, item).step("submitted", "2026-03-02 09:00")
            .step("accepted", "2026-03-02 10:00", "li.na"))


def _deadlines() -> list[dict[str, Any]]:
    """Accepted, suspended for an inspection, extended, and never decided."""
    return (_opened("GA-2026-0311")
            .step("suspended", "2026-03-05 09:00", reason="inspection")
            .step("resumed", "2026-03-06 15:00")
            .step("reviewed", "2026-03-10 11:00", "chen.jie")
            .step("extended", "2026-03-20 10:00", days=5, approved_by="zhang.wei").lines)


def _extension_irregular() -> list[dict[str, Any]]:
    return _opened("GA-2026-0312").step("extended", "2026-03-20 10:00", days=5).lines


def _unlawful_suspension() -> list[dict[str, Any]]:
    return _opened("GA-2026-0313").step("suspended", "2026-03-04 10:00",
                                        reason="等待局领导签字").lines


def _overlong_suspension() -> list[dict[str, Any]]:
    return _opened("GA-2026-0314").step("suspended", "2026-03-04 10:00",
                                        reason="expert_review").lines


def _delivery_late() -> list[dict[str, Any]]:
    return (_opened("GA-2026-0315").step("reviewed", "2026-03-04 10:00", "chen.jie")
            .step("decided", "2026-03-05 16:00", "zhang.wei", outcome="grant").lines)


def _deemed_accepted() -> list[dict[str, Any]]:
    return _Case("GA-2026-0316", "EX-HOTEL").step("submitted", "2026-03-02 09:00").lines


def _supplement_repeated() -> list[dict[str, Any]]:
    return (_Case("GA-2026-0317", "EX-HOTEL").step("submitted", "2026-03-02 09:00")
            .step("supplement_requested", "2026-03-03 10:00", items=["营业执照副本"])
            .step("supplement_received", "2026-03-05 09:00")
            .step("supplement_requested", "2026-03-06 10:00", items=["消防验收意见书"]).lines)


def _supplement_late() -> list[dict[str, Any]]:
    return (_Case("GA-2026-0318", "EX-HOTEL").step("submitted", "2026-03-02 09:00")
            .step("supplement_requested", "2026-03-11 10:00", items=["营业执照副本"]).lines)


def _reporting_late() -> list[dict[str, Any]]:
    return (_Case("GA-2026-0319", "EX-HOTEL").step("submitted", "2026-03-02 09:00")
            .step("accepted", "2026-03-02 10:00", "li.na", received="2026-03-03 11:18").lines)


def _backdated() -> list[dict[str, Any]]:
    return (_opened("GA-2026-0320").step("reviewed", "2026-03-02 09:15", "chen.jie").lines)


def _no_reason() -> list[dict[str, Any]]:
    return (_opened("GA-2026-0321").step("reviewed", "2026-03-04 10:00", "chen.jie")
            .step("decided", "2026-03-05 16:00", "zhang.wei", outcome="deny").lines)


def _fee_unauthorized() -> list[dict[str, Any]]:
    return _opened("GA-2026-0322").step("fee_charged", "2026-03-02 10:30", amount="200.00",
                                        fee_code="TZ-01").lines


def _fee_over_standard() -> list[dict[str, Any]]:
    return _opened("GA-2026-0323", "EX-DRIVE").step("fee_charged", "2026-03-02 10:30",
                                                    amount="25.00", fee_code="GB-10").lines


def _conflict() -> list[dict[str, Any]]:
    return (_opened("GA-2026-0324").step("reviewed", "2026-03-04 10:00", "zhang.wei")
            .step("decided", "2026-03-05 16:00", "zhang.wei", outcome="grant").lines)


def _skipped() -> list[dict[str, Any]]:
    return _opened("GA-2026-0325").step("decided", "2026-03-05 16:00", "zhang.wei",
                                        outcome="grant").lines


def _unknown_step() -> list[dict[str, Any]]:
    return _opened("GA-2026-0326", "EX-SEAL").step("reviewed", "2026-03-03 10:00",
                                                   "chen.jie").lines


def _missing_opinion() -> list[dict[str, Any]]:
    return (_opened("JS-2026-0327", "EX-BUILD")
            .step("reviewed", "2026-03-04 10:00", "zhao.lei", department="guihua")
            .step("reviewed", "2026-03-05 10:00", "chen.jie")
            .step("decided", "2026-03-06 16:00", "zhang.wei", outcome="grant").lines)


def _decided(n: int, when: datetime, actor: str, outcome: str = "grant") -> list[dict[str, Any]]:
    case = _Case(f"GA-2026-{n:04d}", "EX-SEAL")
    return case.step("decided", when.strftime("%Y-%m-%d %H:%M:%S"), actor, outcome=outcome).lines


def _burst() -> list[dict[str, Any]]:
    start = _at("2026-03-16 10:00")
    return [e for n in range(21)
            for e in _decided(5000 + n, start + timedelta(seconds=25 * n), "sun.hao")]


def _denial_spike() -> list[dict[str, Any]]:
    """Two grants a day for four weeks, then a day with 10 refusals in 20 decisions."""
    out: list[dict[str, Any]] = []
    day = _at("2026-02-16 10:00")
    for n in range(56):
        out += _decided(6000 + n, day + timedelta(days=n // 2, hours=n % 2), f"h{n % 3}")
    spike = _at("2026-03-16 09:00")
    for n in range(20):
        out += _decided(7000 + n, spike + timedelta(minutes=20 * n), f"h{n % 3}",
                        "deny" if n % 2 else "grant")
    return out


def _silent() -> list[dict[str, Any]]:
    """Two weeks of 16 submissions a working day, then one at 09:30 and nothing after."""
    out: list[dict[str, Any]] = []
    n = 8000
    for day in ("02", "03", "04", "05", "06", "09", "10", "11", "12", "13", "16"):
        for k in range(16 if day != "16" else 1):
            when = _at(f"2026-03-{day} 09:30") + timedelta(minutes=25 * k + (90 if k >= 6 else 0))
            out += _Case(f"GA-2026-{n:04d}", "EX-HOTEL").step(
                "submitted", when.strftime("%Y-%m-%d %H:%M")).lines
            n += 1
    return out


def _complaint() -> list[dict[str, Any]]:
    return [{"schema_version": 1, "complaint_id": "TS-2026-0042", "department": "gongan",
             "case_id": "GA-2026-0311", "occurred_at": _at("2026-03-09 15:20").isoformat(),
             "category": "办理超时", "text": "受理后两周没有任何消息"}]


@dataclass(frozen=True)
class Example:
    """A constructed case (its wire lines) and the instant the replay clock ends at."""

    lines: Callable[[], list[dict[str, Any]]]
    until: str = "2026-06-30 00:00"


#: rule -> the case that shows its text (a rule not in the rule set is skipped)
EXAMPLES: dict[str, Example] = {
    "deadline.approaching": Example(_deadlines),
    "deadline.promise_broken": Example(_deadlines),
    "deadline.legal_broken": Example(_deadlines),
    "extension.irregular": Example(_extension_irregular),
    "suspension.unlawful_reason": Example(_unlawful_suspension),
    "suspension.overlong": Example(_overlong_suspension, "2026-12-31 00:00"),
    "delivery.late": Example(_delivery_late),
    "intake.deemed_accepted": Example(_deemed_accepted),
    "supplement.repeated": Example(_supplement_repeated),
    "supplement.late": Example(_supplement_late),
    "reporting.late": Example(_reporting_late),
    "reporting.backdated": Example(_backdated),
    "decision.no_reason": Example(_no_reason),
    "fee.unauthorized": Example(_fee_unauthorized),
    "fee.over_standard": Example(_fee_over_standard),
    "actor.conflict": Example(_conflict),
    "process.skipped_step": Example(_skipped),
    "process.unknown_step": Example(_unknown_step),
    "parallel.missing_opinion": Example(_missing_opinion),
    "actor.burst": Example(_burst, "2026-03-17 00:00"),
    "department.denial_spike": Example(_denial_spike, "2026-03-18 00:00"),
    "department.silent": Example(_silent, "2026-03-17 00:00"),
    "complaint.received": Example(_complaint),
    "complaint.overdue": Example(_complaint),
}
#: the rule whose escalated alert shows the escalation prefix
ESCALATION_EXAMPLE = "deadline.promise_broken"


def example_alerts(engine: Engine, rule: str) -> list[Alert]:
    """The alerts of ``rule`` that its example case raises (every version, in order)."""
    example = EXAMPLES.get(rule)
    if example is None:
        raise ValueError(f"rule {rule!r} has no example case in rules/message_table.py")
    lines = (orjson.dumps(e) for e in example.lines())
    result = replay(lines, engine, _at(example.until))
    if result.problems:
        raise ValueError(f"example of {rule!r}: {result.problems}")
    alerts = [a for a in result.alerts if a.rule == rule]
    if not alerts:
        raise ValueError(f"the example case of {rule!r} raises no {rule!r} alert")
    return alerts


# --- the document ------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(engine: Engine) -> Iterator[tuple[str, str, str, str, str, str]]:
    """(rule, severity, template zh, example zh, template en, example en) per rule, in the
    rule set's order, and last the escalation prefix."""
    rs: RuleSet = engine.ruleset
    for rule, config in rs.rules.items():
        first = example_alerts(engine, rule)[0]
        yield (rule, config.severity, config.message_zh, first.message_zh,
               config.message_en, first.message_en)
    days = rs.settings.escalation_working_days
    zh, en = escalation_prefix(days)
    escalated = [a for a in example_alerts(engine, ESCALATION_EXAMPLE) if a.severity == "escalated"]
    if not escalated:
        raise ValueError(f"the example case of {ESCALATION_EXAMPLE!r} never escalates")
    yield ("(escalation prefix)", "escalated", zh + "…", escalated[0].message_zh,
           en + "…", escalated[0].message_en)


def render_table(rules_dir: Path = DEFAULT_RULES_DIR) -> str:
    """docs/messages.md as the rule set in ``rules_dir`` gives it."""
    engine = example_engine(rules_dir)
    rows = list(_rows(engine))
    out = [
        "# Alert texts",
        "",
        "Every alert text jiancha writes, in Chinese and in English: the template of each",
        "rule in `rules/ruleset/*.yaml` (a `str.format` template over the finding's details",
        "plus `case_id`, `item_code`, `item_zh`, `item_en`, `department`; window and",
        "complaint rules also get `department_zh`, `department_en`, `actor`) and one example",
        "rendered by the engine from a small constructed case (`rules/message_table.py`).",
        "An escalated alert (督办) is its red text with the escalation prefix in front.",
        "",
        "Numbers read as a supervisor writes them: whole working days and hours",
        "(`rules/messages.py`), whole minutes, departments and decisions by name.",
        "",
        "Generated by `jiancha rules messages --out docs/messages.md`; do not edit by hand",
        "(tests/unit/test_message_table.py fails when this file is stale).",
        "",
    ]
    for title, zh in (("## 中文", True), ("## English", False)):
        out += [title, "", "| rule | severity | template | example |", "| --- | --- | --- | --- |"]
        for rule, severity, tzh, ezh, ten, een in rows:
            template, example = (tzh, ezh) if zh else (ten, een)
            out.append(f"| `{rule}` | {severity} | {_cell(template)} | {_cell(example)} |")
        out.append("")
    return "\n".join(out)
