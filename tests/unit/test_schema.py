from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from jiancha.producers.schema_files import SCHEMAS, check_schemas, render
from tests.events import event

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "producers" / "schema"


def test_committed_schemas_match_the_models() -> None:
    stale = check_schemas(SCHEMA_DIR)
    assert not stale, f"run 'jiancha schema export': {stale} differ from the pydantic models"


def test_schema_accepts_a_contract_event_and_rejects_a_bad_one() -> None:
    schema = json.loads(render("approval-event.v1.json"))
    jsonschema.validate(event("C1", "submitted", "2026-11-30 09:00"), schema)
    bad = event("C1", "submitted", "2026-11-30 09:00")
    bad["step"] = "teleported"
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError as exc:
        assert "teleported" in str(exc)
    else:
        raise AssertionError("schema accepted an unknown step")


def test_every_schema_has_an_id() -> None:
    for name in SCHEMAS:
        assert json.loads(render(name))["$id"].endswith(name)
