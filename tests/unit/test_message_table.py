"""docs/messages.md: every rule's zh and en template with an example the engine renders;
stale when the rule set's texts (or what the checks put in them) change."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from jiancha.rules.message_table import EXAMPLES, example_alerts, example_engine, render_table

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "messages.md"
#: fields every case alert gets besides its details (rules.engine ``_render``), and every
#: window or complaint alert (rules.windows ``render_alert``)
RENDER_FIELDS = {"case_id", "item_code", "item_zh", "item_en", "department",
                 "department_zh", "department_en", "actor"}


def test_the_doc_is_what_the_rule_set_gives() -> None:
    assert DOC.read_text(encoding="utf-8") == render_table(), (
        "docs/messages.md is stale: run `jiancha rules messages --out docs/messages.md`")


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    return example_engine()


def test_every_rule_has_an_example(engine) -> None:  # type: ignore[no-untyped-def]
    missing = set(engine.ruleset.rules) - set(EXAMPLES)
    assert not missing, f"rules without an example case in rules/message_table.py: {missing}"
    doc = DOC.read_text(encoding="utf-8")
    for rule in engine.ruleset.rules:
        assert doc.count(f"| `{rule}` |") == 2, rule  # in the zh and in the en table
    assert doc.count("| `(escalation prefix)` | escalated |") == 2


def test_every_field_of_a_template_is_given(engine) -> None:  # type: ignore[no-untyped-def]
    """A field the finding does not give renders as '?': no template names one."""
    for rule, config in engine.ruleset.rules.items():
        alert = example_alerts(engine, rule)[0]
        for template in (config.message_zh, config.message_en):
            fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
            assert fields <= set(alert.details) | RENDER_FIELDS, (rule, fields - set(alert.details))
        assert "?" not in alert.message_zh + alert.message_en, (rule, alert.message_en)
