"""Event builder for the time-rule tests: write a case as a list of steps, replay it
through the real engine (test catalog), look at the alerts of one rule."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from jiancha.producers.contract import Alert, parse_event
from jiancha.rules.engine import Engine
from jiancha.rules.factory import build_engine
from jiancha.rules.replay import replay

ROOT = Path(__file__).resolve().parents[2]
TEST_CATALOG = ROOT / "tests" / "fixtures" / "catalog"
TZ = ZoneInfo("Asia/Shanghai")

#: the handling department of each test item
DEPARTMENT = {"T-SHORT": "gongan", "T-SIMPLE": "gongan", "T-FEE": "gongshang", "T-JOINT": "jianshe"}
APPLICANT_STEPS = {"submitted", "supplement_received", "withdrawn"}
DEFAULT_ATTRS: dict[str, dict[str, Any]] = {
    "decided": {"outcome": "grant"},
    "reviewed": {"opinion": "agree"},
    "suspended": {"reason": "inspection"},
    "extended": {"days": 3, "approved_by": "head-1"},
    "rejected_at_intake": {"reason": "not within our remit"},
    "supplement_requested": {"items": ["ID card copy"]},
}

_case_ids = itertools.count(1)

#: a step as a test table writes it: (step, 'YYYY-MM-DD HH:MM[:SS]'[, attributes])
Step = tuple[str, str] | tuple[str, str, dict[str, Any]]


def t(text: str) -> datetime:
    """'2026-03-02 10:00' (or with seconds) -> aware datetime in Asia/Shanghai."""
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


@functools.cache
def engine() -> Engine:
    """The real engine over the test catalog (rules from rules/ruleset/); shared, the
    engine keeps no per-case state."""
    return build_engine(TEST_CATALOG)


def events(item: str, steps: Sequence[Step], case_id: str | None = None) -> list[dict[str, Any]]:
    """Wire events for one case; ids are '<case>-<n>'; attributes default per step."""
    case_id = case_id or f"C{next(_case_ids):05d}"
    out = []
    for n, spec in enumerate(steps, 1):
        step, when = spec[0], spec[1]
        attrs = dict(DEFAULT_ATTRS.get(step, {}))
        if len(spec) > 2:
            attrs.update(spec[2])  # type: ignore[misc]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        department = attrs.pop("department", DEPARTMENT[item])
        ev: dict[str, Any] = {
            "schema_version": 1,
            "event_id": f"{case_id}-{n}",
            "case_id": case_id,
            "item_code": item,
            "department": department,
            "step": step,
            "occurred_at": t(when).isoformat(),
            "actor": "applicant" if step in APPLICANT_STEPS else attrs.pop("actor", "h1"),
        }
        if step == "submitted":
            ev["applicant_id"] = "sha256:applicant-1"
        if attrs:
            ev["attributes"] = attrs
        out.append(ev)
    return out


def run(item: str, steps: Sequence[Step], until: str, *, eng: Engine | None = None,
        in_order: bool = True) -> list[Alert]:
    """Replay one case (events sorted by time unless ``in_order`` is False) up to ``until``."""
    evs = events(item, steps)
    if in_order:
        evs.sort(key=lambda e: e["occurred_at"])
    return replay_events(evs, until, eng=eng)


def replay_events(evs: Iterable[dict[str, Any]], until: str, *, eng: Engine | None = None) -> list[Alert]:
    result = replay((orjson.dumps(e) for e in evs), eng or engine(), t(until))
    assert not result.problems, result.problems
    return result.alerts


def of(alerts: Iterable[Alert], rule: str) -> list[Alert]:
    return [a for a in alerts if a.rule == rule]


def severities(alerts: Iterable[Alert], rule: str) -> list[str]:
    """The severities raised for ``rule`` in order (escalation adds a second alert record)."""
    return [a.severity for a in alerts if a.rule == rule]


def raised_at(item: str, steps: Sequence[Step], rule: str, *, severity: str | None = None,
              eng: Engine | None = None) -> datetime | None:
    """The instant at which the engine (as the worker's deadline index drives it) raises
    ``rule`` for a case with these facts, or None if it never does."""
    eng = eng or engine()
    state = None
    for e in events(item, steps):
        ev = parse_event(e)
        state = eng.ingest(state, ev, ev.occurred_at)
    assert state is not None
    _, now = eng.evaluate(state, datetime(1970, 1, 1, tzinfo=UTC))
    while now is not None:
        alerts, nxt = eng.evaluate(state, now)
        if any(a.rule == rule and severity in (None, a.severity) for a in alerts):
            return now.astimezone(TZ)
        assert nxt is None or nxt > now
        now = nxt
    return None
