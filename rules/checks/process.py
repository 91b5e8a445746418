"""Process checks: the item's required steps, their order, and the opinions of a joint case."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from jiancha.producers.contract import Step

from ..case import Fact
from ..catalog import OPTIONAL_STEPS
from ..findings import (
    PROCESS,
    REFUSAL_READS,
    SUBMISSION_READS,
    UNLISTED,
    CaseView,
    Check,
    Finding,
    changes_with,
    reads,
)
from ..messages import names_en
from ..steps import ACCEPTED, DECIDED, DELIVERED, REJECTED_AT_INTAKE, REVIEWED, SUBMITTED, WITHDRAWN

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

#: the same in English, for the en messages (a reader should not need the wire codes)
STEP_EN = {
    Step.submitted: "application",
    Step.supplement_requested: "correction notice",
    Step.supplement_received: "receipt of corrected materials",
    Step.accepted: "acceptance",
    Step.rejected_at_intake: "refusal at intake",
    Step.reviewed: "review",
    Step.suspended: "suspension",
    Step.resumed: "resumption",
    Step.extended: "extension",
    Step.decided: "decision",
    Step.fee_charged: "fee",
    Step.delivered: "delivery",
    Step.completed: "closing",
    Step.withdrawn: "withdrawal",
}


def _required_before(case: CaseView, missing: Step, later_at: float) -> bool:
    """Whether ``missing`` had to happen before a step at ``later_at``."""
    if case.first(REJECTED_AT_INTAKE) is not None or case.first(WITHDRAWN) is not None:
        return missing is SUBMITTED
    if missing is DELIVERED and case.refused:
        return False
    if missing is ACCEPTED:
        # Art. 32: no intake decision in 5 working days = deemed accepted, not skipped.
        limit = case.intake_deadline_at
        if limit is not None and later_at > limit:
            return False
    return True


@reads(PROCESS, Step.reviewed, REFUSAL_READS, Step.withdrawn, SUBMISSION_READS)
def skipped_step(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """A step happened whose required earlier step never did (judged after the lateness)."""
    item = case.item
    steps = item.steps
    if not item.joint:
        # every required step is there, or nothing after the first absent one happened (a
        # case under way, in order); not so read on a joint item, where the process counts
        # only the handling department's own ``reviewed`` (``CaseView.process_facts``)
        required, prefixes = _process_sets(steps)
        have = case.having(required)
        if have == prefixes[len(have)]:
            return ()
    out: list[Finding] = []
    present = case.process_facts
    # absent steps by identity: ``None in present`` would compare every fact with None
    absent = [i for i, fact in enumerate(present) if fact is None]
    if not absent:
        return ()  # every required step is there
    lateness = case.allowed_lateness_seconds
    flagged: set[Step] = set()
    for i in range(absent[0] + 1, len(steps)):  # no step before the first absent one is missing
        step = steps[i]
        later = case.first(step)
        if later is None:
            continue
        for j in absent:
            if j >= i:
                break
            missing = steps[j]
            if missing in flagged:
                continue
            if not _required_before(case, missing, later.at):
                continue
            flagged.add(missing)
            out.append(Finding(
                distinct=(missing.value,),
                event_time=later.at,
                due_at=later.at + lateness,
                evidence=(later.event_id,),
                actor=later.actor,
                details={
                    "step": step.value, "step_zh": STEP_ZH[step], "step_en": STEP_EN[step],
                    "missing": missing.value, "missing_zh": STEP_ZH[missing],
                    "missing_en": STEP_EN[missing],
                },
            ))
    return out


@functools.cache
def _process_sets(process: tuple[Step, ...]) -> tuple[frozenset[Step], tuple[frozenset[Step], ...]]:
    """A process's steps as a set, and its first k steps as a set for each k."""
    return frozenset(process), tuple(frozenset(process[:k]) for k in range(len(process) + 1))


@functools.cache
def _unknown_steps(process: tuple[Step, ...]) -> tuple[Step, ...]:
    """The steps a process has neither as required nor as optional, in ``Step`` order."""
    return tuple(s for s in Step if s not in process and s not in OPTIONAL_STEPS)


@reads(UNLISTED)
def unknown_step(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """A step the item's process does not have (neither required nor optional); one
    finding per kind of step, on its first occurrence."""
    out: list[Finding] = []
    lateness = case.allowed_lateness_seconds
    for step in _unknown_steps(case.item.steps):
        first = case.first(step)
        if first is None:
            continue
        out.append(Finding(
            distinct=(step.value,),
            event_time=first.at,
            due_at=first.at + lateness,  # a late-arriving earlier one still becomes the evidence
            evidence=(first.event_id,),
            actor=first.actor,
            details={
                "step": step.value, "step_zh": STEP_ZH[step], "step_en": STEP_EN[step],
                "process": " → ".join(s.value for s in case.item.steps),
                "process_en": " → ".join(STEP_EN[s] for s in case.item.steps),
                "process_zh": "→".join(STEP_ZH[s] for s in case.item.steps),
            },
        ))
    return out


def _joint_decided(case: CaseView, fact: Fact) -> bool:
    """Whether the case is a joint one with a decision (else no opinion is missing)."""
    return case.item.joint and case.first(DECIDED) is not None


@reads(Step.decided, Step.reviewed)
@changes_with(_joint_decided)
def missing_opinion(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """A joint case decided before every co-handling department gave its ``reviewed``
    opinion (judged after the allowed lateness, so an opinion given before the decision
    but arriving a little after it is no alarm)."""
    item = case.item
    if not item.joint:
        return ()
    decided = case.first(DECIDED)
    if decided is None:
        return ()
    opinions = {}
    for f in case.all(REVIEWED):
        if f.department in item.co_departments and f.at <= decided.at:
            opinions.setdefault(f.department, f)
    missing = [d for d in item.co_departments if d not in opinions]
    if not missing:
        return ()
    names = [case.department_names(d) for d in missing]
    return [Finding(
        distinct=(),
        event_time=decided.at,
        due_at=decided.at + case.allowed_lateness_seconds,
        evidence=(decided.event_id, *(opinions[d].event_id for d in item.co_departments if d in opinions)),
        actor=decided.actor,
        details={
            "missing": missing,
            "missing_list": names_en([en for _, en in names]),
            "missing_list_zh": "、".join(zh for zh, _ in names),
            "given": [d for d in item.co_departments if d in opinions],
            "co_departments": list(item.co_departments),
            "outcome": str(decided.attrs.get("outcome", "")),
        },
    )]


CHECKS: dict[str, Check] = {
    "process.skipped_step": skipped_step,
    "process.unknown_step": unknown_step,
    "parallel.missing_opinion": missing_opinion,
}
