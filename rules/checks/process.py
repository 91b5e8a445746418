"""Process checks: the order of the item's required steps."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from producers.contract import Step
from rules.findings import CaseView, Check, Finding

STEP_ZH = {
    Step.submitted: "申请",
    Step.supplement_requested: "补正告知",
    Step.supplement_received: "补正材料接收",
    Step.accepted: "受理",
    Step.rejected_at_intake: "不予受理",
    Step.reviewed: "审查",
    Step.suspended: "暂停计时",
    Step.resumed: "恢复计时",
    Step.extended: "延期",
    Step.decided: "决定",
    Step.fee_charged: "收费",
    Step.delivered: "送达",
    Step.completed: "办结",
    Step.withdrawn: "撤回",
}


def _required_before(case: CaseView, missing: Step, later_at: float) -> bool:
    """Whether ``missing`` had to happen before a step at ``later_at``."""
    if case.first(Step.rejected_at_intake) is not None or case.first(Step.withdrawn) is not None:
        return missing is Step.submitted
    if missing is Step.delivered and case.refused:
        return False
    if missing is Step.accepted:
        # Art. 32: no intake decision in 5 working days = deemed accepted, not skipped.
        limit = case.intake_deadline
        if limit is not None and later_at > limit.timestamp():
            return False
    return True


def _present(case: CaseView, step: Step) -> bool:
    if step is Step.reviewed and case.item.joint:
        # the handling department's own review; co-departments' opinions are another rule
        return any(f.department == case.item.department for f in case.all(Step.reviewed))
    return case.first(step) is not None


def skipped_step(case: CaseView, params: Mapping[str, Any]) -> Iterator[Finding]:
    """A step happened whose required earlier step never did (judged after the lateness)."""
    steps = case.item.steps
    lateness = case.settings.allowed_lateness
    flagged: set[Step] = set()
    for i, step in enumerate(steps[1:], 1):
        later = case.first(step)
        if later is None:
            continue
        for missing in steps[:i]:
            if missing in flagged or _present(case, missing):
                continue
            if not _required_before(case, missing, later.at):
                continue
            flagged.add(missing)
            at = case.dt(later.at)
            yield Finding(
                distinct=(missing.value,),
                event_time=at,
                due_at=at + lateness,
                evidence=(later.event_id,),
                actor=later.actor,
                details={
                    "step": step.value, "step_zh": STEP_ZH[step],
                    "missing": missing.value, "missing_zh": STEP_ZH[missing],
                },
            )



CHECKS: dict[str, Check] = {
    "process.skipped_step": skipped_step,
}
