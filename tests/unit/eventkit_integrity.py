"""Event builders for the process and integrity rule tests.

Events are wire dicts (contract v1); a list of them is a file in *arrival* order, which
:func:`run` replays through the real engine built from the test catalog. Times are
local Guangzhou times ('YYYY-MM-DD HH:MM' or datetimes).

- :func:`ev` builds one event, with lawful defaults (a reviewed opinion, a decision
  outcome, a refusal reason, a distinct staff actor per step);
- :func:`lawful` builds a whole lawful case, one required step every ``gap`` minutes;
- :func:`drop`, :func:`put_last`, :func:`tick` rearrange a file: remove a step, make an
  event arrive last, push the replay clock with an unrelated case.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from jiancha.producers.contract import Alert
from jiancha.rules.engine import Engine
from jiancha.rules.factory import build_engine
from jiancha.rules.replay import replay

CST = timezone(timedelta(hours=8))
CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"

#: the handling department of each test item
DEPARTMENT = {"T-SHORT": "gongan", "T-SIMPLE": "gongan", "T-JOINT": "jianshe", "T-FEE": "gongshang"}
CO_DEPARTMENTS = {"T-JOINT": ("gongan", "gongshang")}
APPLICANT = "sha256:applicant-1"
APPLICANT_STEPS = {"submitted", "supplement_received", "withdrawn"}

#: Monday 4 March 2024, an ordinary working week (no holiday until Qingming, 4 April)
MONDAY = "2024-03-04"

_ids = itertools.count(1)


def at(when: datetime | str) -> datetime:
    if isinstance(when, datetime):
        return when
    if len(when) == 5:  # 'HH:MM' on MONDAY
        when = f"{MONDAY} {when}"
    return datetime.fromisoformat(when).replace(tzinfo=CST)


@cache
def engine() -> Engine:
    return build_engine(CATALOG)


def ev(case_id: str, step: str, when: datetime | str, *, item: str = "T-SHORT",
       department: str | None = None, actor: str | None = None, event_id: str | None = None,
       applicant_id: str = APPLICANT, received: datetime | str | None = None,
       attrs: dict[str, Any] | None = None, **attributes: Any) -> dict[str, Any]:
    """One event. ``attrs`` replaces the default attributes; keywords add to them."""
    department = department or DEPARTMENT[item]
    e: dict[str, Any] = {
        "schema_version": 1,
        "event_id": event_id or f"{case_id}-{step}-{next(_ids)}",
        "case_id": case_id,
        "item_code": item,
        "department": department,
        "step": step,
        "occurred_at": at(when).isoformat(),
    }
    if step in APPLICANT_STEPS:
        e["actor"] = actor or "applicant"
    else:
        e["actor"] = actor or f"{department}-{step}"
    if step == "submitted":
        e["applicant_id"] = applicant_id
    defaults: dict[str, Any] = {
        "reviewed": {"opinion": "agree", "reason": "材料齐全"},
        "decided": {"outcome": "grant"},
        "rejected_at_intake": {"reason": "不属于本机关职权范围"},
        "suspended": {"reason": "expert_review"},
        "extended": {"days": 5, "approved_by": "head-1"},
        "fee_charged": {"amount": "50.00", "fee_code": "GBF"},
    }
    values = dict(defaults.get(step, {}) if attrs is None else attrs)
    values.update(attributes)
    if values:
        e["attributes"] = values
    if received is not None:
        e["received_at"] = at(received).isoformat()
    return e


def lawful(case_id: str, item: str = "T-SHORT", start: datetime | str = "09:00", gap: float = 30,
           *, outcome: str = "grant", through: str = "completed") -> list[dict[str, Any]]:
    """A case following its item's process, one required step every ``gap`` minutes, in
    order; a joint item gets the handling and every co-handling department's review.
    A deny gets a reason and no delivery. Stops after ``through``."""
    steps = [s.value for s in engine().catalog[item].steps]
    t = at(start)
    out: list[dict[str, Any]] = []
    for step in steps:
        if step == "delivered" and outcome == "deny":
            continue
        if step == "reviewed":
            for dept in (DEPARTMENT[item], *CO_DEPARTMENTS.get(item, ())):
                out.append(ev(case_id, step, t, item=item, department=dept))
        elif step == "decided":
            extra = {"reason": "不符合法定条件"} if outcome == "deny" else {}
            out.append(ev(case_id, step, t, item=item, outcome=outcome, **extra))
        else:
            out.append(ev(case_id, step, t, item=item))
        if step == through:
            break
        t += timedelta(minutes=gap)
    return out


def find(events: Sequence[dict[str, Any]], step: str, department: str | None = None) -> dict[str, Any]:
    for e in events:
        if e["step"] == step and (department is None or e["department"] == department):
            return e
    raise KeyError(step)


def drop(events: Iterable[dict[str, Any]], step: str, department: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events
            if not (e["step"] == step and (department is None or e["department"] == department))]


def retime(events: Iterable[dict[str, Any]], step: str, when: datetime | str,
           department: str | None = None) -> list[dict[str, Any]]:
    out = []
    for e in events:
        if e["step"] == step and (department is None or e["department"] == department):
            e = {**e, "occurred_at": at(when).isoformat()}
        out.append(e)
    return out


def put_last(events: Iterable[dict[str, Any]], step: str,
             department: str | None = None) -> list[dict[str, Any]]:
    """The same file with ``step``'s event(s) arriving after all the others."""
    events = list(events)
    moved = [e for e in events
             if e["step"] == step and (department is None or e["department"] == department)]
    return [e for e in events if e not in moved] + moved


def rename(events: Iterable[dict[str, Any]], case_id: str) -> list[dict[str, Any]]:
    """The same events as another case (new case and event ids)."""
    return [{**e, "case_id": case_id, "event_id": f"{case_id}-{e['event_id']}"} for e in events]


def tick(when: datetime | str, case_id: str | None = None) -> dict[str, Any]:
    """An unrelated submission that moves the replay clock (latest occurred_at) to ``when``."""
    return ev(case_id or f"TICK-{next(_ids)}", "submitted", when, item="T-SIMPLE")


def lines(events: Iterable[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


def run(events: Iterable[dict[str, Any]], until: datetime | str | None = None,
        eng: Engine | None = None) -> list[Alert]:
    """Replay ``events`` in the given arrival order; every event must be accepted."""
    result = replay(lines(events), eng or engine(), at(until) if until is not None else None)
    assert not result.rejected, result.problems
    return result.alerts


def of(alerts: Iterable[Alert], rule: str, case_id: str | None = None) -> list[Alert]:
    """The alerts of ``rule`` as first raised (an escalation re-emits the same alert id
    with severity ``escalated``: see :func:`escalated`)."""
    return [a for a in alerts if a.rule == rule and a.severity != "escalated"
            and (case_id is None or a.case_id == case_id)]


def escalated(alerts: Iterable[Alert], rule: str | None = None) -> list[Alert]:
    return [a for a in alerts if a.severity == "escalated" and (rule is None or a.rule == rule)]
