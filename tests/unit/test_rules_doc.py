"""docs/rules.md is generated from the rule set and must not go stale."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from jiancha.rules.checks import CHECKS
from jiancha.rules.complaints import COMPLAINT_RULES
from jiancha.rules.rulebook import DEFAULT_RULES_DIR, load_ruleset
from jiancha.rules.rules_doc import OTHER_RULES, REGENERATE, rules_markdown
from jiancha.rules.windows import WINDOW_RULES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "rules.md"


def test_docs_rules_is_generated_from_the_rule_set() -> None:
    assert DOC.read_text(encoding="utf-8") == rules_markdown(), (
        f"docs/rules.md is stale: run `{REGENERATE}`")


def test_every_rule_has_a_section_with_its_basis_and_escalation() -> None:
    rs = load_ruleset(DEFAULT_RULES_DIR, known_rules=set(CHECKS) | WINDOW_RULES | COMPLAINT_RULES)
    text = DOC.read_text(encoding="utf-8")
    for rule, cfg in rs.rules.items():
        section = text.split(f"### `{rule}` — ")[1].split("\n### ")[0]
        assert section.startswith(cfg.severity), rule
        assert f"| Legal basis | {cfg.basis.replace('|', chr(92) + '|')} |" in section, rule
        days = rs.escalation_days(rule)
        assert (f"after {days} working days" in section) == (days is not None), rule
        for key in cfg.params:
            assert f"| `{key}` |" in section, (rule, key)
        assert "| Reads | " in section, rule


def test_the_rules_outside_the_checks_are_described() -> None:
    assert set(OTHER_RULES) == WINDOW_RULES | COMPLAINT_RULES


def test_a_changed_threshold_changes_the_document(tmp_path: Path) -> None:
    # so that the staleness test above can fail
    rules_dir = tmp_path / "ruleset"
    shutil.copytree(DEFAULT_RULES_DIR, rules_dir)
    windows = rules_dir / "windows.yaml"
    text = windows.read_text(encoding="utf-8")
    assert "max_decisions: 20" in text
    windows.write_text(text.replace("max_decisions: 20", "max_decisions: 30"), encoding="utf-8")
    changed = rules_markdown(rules_dir)
    assert "| `max_decisions` | 30 — fires when one handler decides MORE" in changed
    assert changed != rules_markdown()


def test_cli_prints_the_same_markdown() -> None:
    out = subprocess.run([sys.executable, "-m", "jiancha.cli", "rules", "reference"],
                         capture_output=True, check=True, cwd=ROOT)
    assert out.stdout.decode("utf-8") == rules_markdown()
