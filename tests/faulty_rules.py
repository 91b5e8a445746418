"""A copy of the shipped rule set with one rule made to fail, for the tests of loud failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from jiancha.rules.rulebook import DEFAULT_RULES_DIR


def rules_with_a_failing_check(directory: Path) -> Path:
    """The rule set in ``directory/rules``, where ``suspension.overlong`` has a maximum that
    is no number: its check raises on every case with an inspection suspension."""
    rules = directory / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules)
    path = rules / "suspensions.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["rules"]["suspension.overlong"]["params"]["max_working_days"]["inspection"] = "a month"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return rules
