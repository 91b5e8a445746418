"""Suspensions for a lawful reason (Art. 45) stop the clock, but not for ever:
``suspension.overlong`` fires when one stays open beyond the maximum the rule set gives for
its reason (``params.max_working_days``, per reason with a ``default``, and per item through
``item_overrides``). A suspension for any other reason does not stop the clock at all and is
judged by ``suspension.unlawful_reason`` (rules/checks/deadlines.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jiancha.producers.contract import Step

from ..findings import (
    ENDED_READS,
    PAUSES_READS,
    CaseView,
    Check,
    Finding,
    LazyDetails,
    changes_with,
    has_fact_of,
    reads,
)
from ..steps import SUSPENDED
from .deadlines import deadline_text, fmt_days

#: the maximum for a reason the rule set does not name, when it gives no ``default`` either
DEFAULT_MAX_WORKING_DAYS = 30

#: Art. 45's reasons as an alert names them (zh, en)
REASON_NAMES: dict[str, tuple[str, str]] = {
    "hearing": ("听证", "a hearing"),
    "tendering": ("招标", "tendering"),
    "auction": ("拍卖", "an auction"),
    "inspection": ("检验", "inspection"),
    "testing": ("检测", "testing"),
    "quarantine": ("检疫", "quarantine"),
    "appraisal": ("鉴定", "appraisal"),
    "expert_review": ("专家评审", "expert review"),
}


def max_working_days(params: Mapping[str, Any], reason: str) -> float:
    """The longest a suspension for ``reason`` may stay open, in working days."""
    limits = params.get("max_working_days") or {}
    return float(limits.get(reason, limits.get("default", DEFAULT_MAX_WORKING_DAYS)))


@reads(PAUSES_READS, ENDED_READS)
@changes_with(has_fact_of(Step.suspended))
def suspension_overlong(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """A suspension for a lawful reason (Art. 45) still open — neither resumed nor ended by
    a decision, refusal or withdrawal — when the maximum for its reason has passed; fires at
    that instant (plus the allowed lateness), with no further event."""
    out: list[Finding] = []
    pauses = dict(case.pauses_at)  # lawful suspensions: start -> resumption (None: open)
    if not pauses:
        return out
    ended = case.ended
    for s in case.all(SUSPENDED):
        if s.at not in pauses:
            continue  # not lawful, or suspended again while suspended
        resumed = pauses.pop(s.at)
        closed = resumed
        if ended is not None and ended.at >= s.at and (closed is None or ended.at < closed):
            closed = ended.at
        reason = str(s.attrs.get("reason", ""))
        limit = max_working_days(params, reason)
        deadline_at = case.wt.working_deadline_epoch(s.at, limit)
        if closed is not None and closed <= deadline_at:
            continue

        def details(s_at: float = s.at, deadline_at: float = deadline_at, reason: str = reason,
                    limit: float = limit) -> dict[str, Any]:
            zh, en = REASON_NAMES.get(reason, (reason, reason))
            deadline = case.dt(deadline_at)
            return {"reason": reason, "reason_zh": zh, "reason_en": en,
                    "limit": fmt_days(limit),
                    "suspended_at": case.dt(s_at).isoformat(),
                    "suspended_text": case.dt(s_at).strftime("%Y-%m-%d %H:%M"),
                    "deadline": deadline.isoformat(),
                    "deadline_text": deadline_text(deadline, case.wt)}

        out.append(Finding(
            distinct=(s.event_id,),
            event_time=deadline_at,
            due_at=deadline_at + case.allowed_lateness_seconds,
            evidence=(s.event_id,),
            actor=s.actor if s.actor != "applicant" else None,
            details=LazyDetails(details),
        ))
    return out


CHECKS: dict[str, Check] = {
    "suspension.overlong": suspension_overlong,
}
