"""Small builders for contract events in tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from jiancha.producers.contract import sign_payload

CST = timezone(timedelta(hours=8))
_ids = itertools.count(1)


def at(text: str) -> datetime:
    """'2026-11-30 10:00' -> aware datetime in +08:00."""
    return datetime.fromisoformat(text).replace(tzinfo=CST)


def event(case_id: str, step: str, when: datetime | str, *, item: str = "T-SHORT",
          department: str = "gongan", actor: str | None = "h1", event_id: str | None = None,
          key: bytes | None = None, **attributes: Any) -> dict[str, Any]:
    if isinstance(when, str):
        when = at(when)
    e: dict[str, Any] = {
        "schema_version": 1,
        "event_id": event_id or f"ev-{next(_ids)}",
        "case_id": case_id,
        "item_code": item,
        "department": department,
        "step": step,
        "occurred_at": when.isoformat(),
    }
    if step in ("submitted", "supplement_received", "withdrawn"):
        e["actor"] = "applicant"
    elif actor:
        e["actor"] = actor
    if step == "submitted":
        e["applicant_id"] = "sha256:applicant-1"
    if attributes:
        e["attributes"] = attributes
    if key is not None:
        e["signature"] = sign_payload(e, key)
    return e


def case(case_id: str, steps: list[tuple[str, str]], **kw: Any) -> list[dict[str, Any]]:
    """A case as (step, 'YYYY-MM-DD HH:MM') pairs; decided gets outcome grant, reviewed agree."""
    out = []
    for step, when in steps:
        attrs: dict[str, Any] = {}
        actor = kw.get("actor", "h1")
        if step == "decided":
            attrs = {"outcome": "grant"}
            actor = kw.get("decider", "h2")  # segregation of duties: not the reviewer
        elif step == "reviewed":
            attrs = {"opinion": "agree"}
        rest = {k: v for k, v in kw.items() if k not in ("actor", "decider")}
        out.append(event(case_id, step, when, actor=actor, **rest, **attrs))
    return out
