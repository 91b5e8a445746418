"""The committed JSON Schemas, generated from the contract models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .contract import alert_json_schema, complaint_json_schema, event_json_schema

#: where the committed schemas are (producers/schema/, installed with the package)
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"

SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "approval-event.v1.json": event_json_schema,
    "alert.v1.json": alert_json_schema,
    "complaint.v1.json": complaint_json_schema,
}


def render(name: str) -> bytes:
    return orjson.dumps(SCHEMAS[name](), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SCHEMAS:
        path = out_dir / name
        path.write_bytes(render(name))
        paths.append(path)
    return paths


def check_schemas(out_dir: Path) -> list[str]:
    """Names of schema files missing or different from what the models generate."""
    return [n for n in SCHEMAS
            if not (out_dir / n).exists() or (out_dir / n).read_bytes() != render(n)]
