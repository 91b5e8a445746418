"""Deadline checks: the promised and the legal limit, counted in working days."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from rules.findings import CaseView, Check, Finding


def promise_broken(case: CaseView, params: Mapping[str, Any]) -> Iterator[Finding]:
    """No decision when the promised limit (counted working days) is used up."""
    start = case.decision_start
    if start is None:
        return
    start_at, basis, start_fact = start
    limit = case.item.promised_days
    deadline = case.wt.counted_deadline(start_at, limit, case.pauses)
    if deadline is None:
        return  # suspended for an Art. 45 reason: the clock stands still
    ended = case.ended
    if ended is not None and ended.at <= deadline.timestamp():
        return
    due = deadline
    if basis == "deemed_accepted" and case.intake_deadline and case.intake_deadline > due:
        due = case.intake_deadline  # an acceptance could still arrive until then
    yield Finding(
        distinct=(),
        event_time=deadline,
        due_at=due,
        evidence=(start_fact.event_id,),
        corrected_at=ended.at if ended is not None else None,
        actor=start_fact.actor if start_fact.actor != "applicant" else None,
        details={
            "limit": limit,
            "used": limit,
            "deadline": deadline.isoformat(),
            "clock_start": start_at.isoformat(),
            "clock_basis": basis,
        },
    )


CHECKS: dict[str, Check] = {
    "deadline.promise_broken": promise_broken,
}
