"""docs/rules.md, the rules reference, generated from the rule set:
``jiancha rules reference --out docs/rules.md``.

Each rule's severity, legal basis, escalation policy and parameters come from
``rules/ruleset/*.yaml`` (a parameter's comment in the YAML is its explanation), what it
checks from its check's docstring, what it reads from its ``@reads`` declaration.
tests/unit/test_rules_doc.py fails when the committed file differs from what the rule set
generates, so the reference a reader sees is the rule set the engine runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .checks import CHECKS
from .complaints import COMPLAINT_RULES
from .findings import PROCESS, UNLISTED, declared_reads
from .rulebook import DEFAULT_RULES_DIR, RuleSet, load_ruleset
from .windows import WINDOW_RULES

REGENERATE = "jiancha rules reference --out docs/rules.md"

#: The rules judged outside the case checks (window and complaint rules): what each checks
#: and what it reads, where a case check says it in its docstring and ``@reads``.
OTHER_RULES: Mapping[str, tuple[str, str, str]] = {
    "actor.burst": (
        "One handler (department + actor) decides more than `max_decisions` distinct cases "
        "within any `window_minutes` (a sliding count, not aligned to the clock). A decision "
        "is counted once the clock passes its time plus the allowed lateness, in event-time "
        "order whatever order decisions arrived in. Decisions that take the count above the "
        "limit less than `window_minutes` apart are one burst and raise one alert, whose id "
        "and event time are those of the first such decision.",
        "`decided` (its handler, case and time), through the window records of the "
        "department's accepted events",
        "rules/windows.py",
    ),
    "department.denial_spike": (
        "In a tumbling department window of `window_hours` (aligned to local midnight) with "
        "at least `min_decisions` outcomes, the share of refusals (a decision to deny or a "
        "refusal at intake) is above `ratio` times and above `min_increase` points more than "
        "the department's own share over the `baseline_windows` windows before (judged only "
        "with at least `min_baseline_decisions` outcomes there). Judged once the clock passes "
        "the window's end plus the allowed lateness.",
        "`decided` (`outcome`) and `rejected_at_intake`, through the window records",
        "rules/windows.py",
    ),
    "department.silent": (
        "A department sends no event for `working_hours` office hours (`office_hours` on "
        "working days of the official calendar) after its last event, with no further event "
        "needed to raise it; judged only for departments that usually send at least "
        "`min_events_per_hour` events per office hour over the `baseline_days` working days "
        "before.",
        "every accepted event of the department (its time), through the window records",
        "rules/windows.py",
    ),
    "complaint.received": (
        "A complaint about a department (and, when it names one, a case) reached the "
        "engine: raised at once, so that the department knows it has one to handle.",
        "complaints on the `complaints` topic",
        "rules/complaints.py",
    ),
    "complaint.overdue": (
        "No `complaint_handled` came within `working_days` working days of the complaint's "
        "receipt (start day not counted, ends 24:00); raised with no further event.",
        "complaints and their `complaint_handled` records",
        "rules/complaints.py",
    ),
}

_PARAM = re.compile(r"^      (?P<key>[A-Za-z_][A-Za-z0-9_]*):[^#]*#\s*(?P<comment>.*)$")
_RULE = re.compile(r"^  (?P<rule>[a-z_]+\.[a-z_]+):\s*$")


def _file_comment(text: str) -> str:
    """The comment block a rule family's YAML file opens with, as one paragraph."""
    lines: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(part for part in lines if part)


def _param_comments(text: str) -> dict[tuple[str, str], str]:
    """(rule, parameter) → the comment beside the parameter in the YAML."""
    comments: dict[tuple[str, str], str] = {}
    rule = ""
    for line in text.splitlines():
        if m := _RULE.match(line):
            rule = m["rule"]
        elif (m := _PARAM.match(line)) and rule:
            comments[(rule, m["key"])] = m["comment"].strip()
    return comments


def _docstring(check: Any) -> str:
    paragraphs = (check.__doc__ or "").strip().split("\n\n")
    return "\n\n".join(" ".join(p.split()).replace("``", "`") for p in paragraphs if p.strip())


def _reads(check: Any) -> str:
    declared = declared_reads(check)
    if declared is None:
        return "every step (it runs after every fact)"
    named = []
    if PROCESS in declared:
        named.append("the steps of the item's process")
    if UNLISTED in declared:
        named.append("any step the item has neither in its process nor as an optional step")
    steps = sorted(str(s) for s in declared if s not in (PROCESS, UNLISTED))
    return ", ".join([f"`{s}`" for s in steps] + named)


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _escalation(rs: RuleSet, rule: str) -> str:
    policy = rs.rules[rule].escalation
    if policy is None:
        return "never (a warning, yellow, does not escalate)"
    if policy.never is not None:
        return f"never: {policy.never}"
    days = rs.escalation_days(rule)
    default = " (the rule set's default)" if policy.working_days == "default" else ""
    return (f"after {days} working days{default} unless the missing action happened "
            "meanwhile or a person resolved the alert")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rule_section(rs: RuleSet, rule: str, comments: Mapping[tuple[str, str], str]) -> list[str]:
    cfg = rs.rules[rule]
    if rule in CHECKS:
        check = CHECKS[rule]
        what, reads = _docstring(check), _reads(check)
        where = f"`{check.__module__.removeprefix('jiancha.').replace('.', '/')}.py` (`{check.__name__}`)"
    else:
        what, reads, module = OTHER_RULES[rule]
        where = f"`{module}`"
    severity = cfg.severity + ("" if cfg.enabled else " (disabled)")
    lines = [f"### `{rule}` — {severity}", "", what, "", "| | |", "|---|---|",
             f"| Legal basis | {_cell(cfg.basis)} |",
             f"| Escalation (督办) | {_cell(_escalation(rs, rule))} |"]
    for key, value in cfg.params.items():
        note = comments.get((rule, key))
        lines.append(f"| `{key}` | {_cell(_value(value))}"
                     + (f" — {_cell(note)}" if note else "") + " |")
    lines += [f"| Reads | {_cell(reads)} |", f"| Code | {where} |", ""]
    overrides = {item: o[rule] for item, o in sorted(rs.item_overrides.items()) if rule in o}
    for item, override in overrides.items():
        change = ("disabled" if override.enabled is False else
                  ", ".join(f"`{k}` = {_value(v)}" for k, v in override.params.items()))
        lines.append(f"Item `{item}`: {change}.")
    if overrides:
        lines.append("")
    return lines


def _families(rules_dir: Path) -> Iterable[tuple[Path, str, list[str]]]:
    for path in sorted(rules_dir.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        yield path, text, list(data.get("rules") or {})


def rules_markdown(rules_dir: Path = DEFAULT_RULES_DIR) -> str:
    """The whole of docs/rules.md for the rule set in ``rules_dir``."""
    rs = load_ruleset(rules_dir, known_rules=set(CHECKS) | WINDOW_RULES | COMPLAINT_RULES)
    s = rs.settings
    out = [
        "# Rules reference",
        "",
        f"Generated from `rules/ruleset/*.yaml` and the checks by `{REGENERATE}`; do not "
        "edit by hand (a unit test fails when this file is stale). The alert texts in zh and "
        "en, with an example of each, are in [messages.md](messages.md); the items' limits in "
        "[catalog.md](catalog.md).",
        "",
        f"{len(rs.rules)} rules: {sum(c.severity == 'red' for c in rs.rules.values())} red "
        f"(a violation), {sum(c.severity == 'yellow' for c in rs.rules.values())} yellow (a "
        "warning). A red alert that is neither corrected nor resolved escalates (督办) after "
        "its rule's escalation period: the same `alert_id`, severity `escalated`.",
        "",
        "## Engine settings",
        "",
        "| setting | value | meaning |",
        "|---|---|---|",
        f"| `allowed_lateness_minutes` | {s.allowed_lateness_minutes:g} | event time waited "
        "before judging order or raising a deadline alert, so a late-arriving earlier step "
        "is no false alarm (`JIANCHA_ALLOWED_LATENESS_SECONDS` overrides it) |",
        f"| `reporting_delay_hours` | {s.reporting_delay_hours:g} | an event that reaches the "
        "engine later than this after it happened raises `reporting.late` |",
        f"| `escalation_working_days` | {s.escalation_working_days} | what "
        "`escalation: {working_days: default}` means |",
        "",
    ]
    for path, text, names in _families(rules_dir):
        if not names:
            continue
        out += [f"## {path.name}", "", _file_comment(text), ""]
        comments = _param_comments(text)
        for rule in names:
            out += _rule_section(rs, rule, comments)
    return "\n".join(out).rstrip("\n") + "\n"
