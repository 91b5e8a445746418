"""Integrity checks: what the records claim (times, reasons, fees, who acted).

- ``reporting.late`` / ``reporting.backdated``: the data about a step came in too late, or
  claims a time before the step it depends on;
- ``decision.no_reason``: a refusal without reasons (Art. 38);
- ``fee.unauthorized`` / ``fee.over_standard``: Art. 58 / 59;
- ``actor.conflict``: segregation of duties.

A fee or a conflict of duties is not corrected by a later event, only by a person
resolving the alert: such a red alert escalates unless it was resolved in time (the alert
sink does not escalate a resolved alert).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from jiancha.producers.contract import Step

from ..case import Fact
from ..findings import (
    PROCESS,
    REFUSAL_READS,
    CaseView,
    Check,
    Finding,
    changes_with,
    has_fact_of,
    reads,
)
from ..messages import elapsed_text, whole_minutes
from ..steps import DECIDED, FEE_CHARGED, REJECTED_AT_INTAKE, REVIEWED
from .process import STEP_EN, STEP_ZH


def _hours(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 2)


# --- reporting ------------------------------------------------------------------------


def _about(case: CaseView, f: Fact, details: dict[str, Any], *, at: float | None = None,
           due: float | None = None, also: tuple[str, ...] = ()) -> Finding:
    """A finding about one event: one alert per event (its department and id), at the
    instant it happened unless said otherwise (epoch seconds), due then or once the event
    was received if that is earlier (:attr:`Fact.known_at`); only the bureau can
    correct it."""
    at = f.at if at is None else at
    return Finding(distinct=(f.department, f.event_id), event_time=at,
                   due_at=min(at, f.received) if due is None else due,
                   evidence=(f.event_id, *also), actor=f.actor, details=details)


def _reported_late(case: CaseView, fact: Fact) -> bool:
    """Whether ``fact`` reached the engine later than the reporting delay allows (the
    only facts that change what ``reporting.late`` finds)."""
    return fact.received - fact.at > case.settings.reporting_delay_hours * 3600


@changes_with(_reported_late)
def reporting_late(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """An event reached the engine more than the reporting delay after it happened."""
    limit_hours = case.settings.reporting_delay_hours
    limit = limit_hours * 3600
    # any fact may be the late one, so it reads every step (and runs after a late one): the
    # case's longest delay (kept as facts arrive) spares reading them all while none was late
    if case.max_delay <= limit:
        return ()
    out: list[Finding] = []
    for f in case.facts:
        delay = f.received - f.at
        if delay <= limit:
            continue
        delay_zh, delay_en = elapsed_text(delay)
        out.append(_about(case, f, {
            "step": f.step.value, "step_zh": STEP_ZH[f.step], "step_en": STEP_EN[f.step],
            "event_department": f.department,
            "occurred_at": case.dt(f.at).isoformat(),
            "received_at": case.dt(f.received).isoformat(),
            "delay_hours": round(delay / 3600, 1),
            "delay_zh": delay_zh, "delay_en": delay_en,
            "limit_hours": _hours(limit_hours),
        }, at=f.at + limit))  # when it should have been reported by
    return out


@functools.cache
def _neighbours(process: tuple[Step, ...]) -> dict[Step, tuple[frozenset[Step], tuple[Step, ...]]]:
    """Each step of a process with the steps after it, and those before it nearest first."""
    return {step: (frozenset(process[i + 1:]), process[:i][::-1])
            for i, step in enumerate(process)}


def _may_backdate(case: CaseView, fact: Fact) -> bool:
    """Whether ``fact`` may change what ``reporting.backdated`` finds: only if it is now
    the first fact of a required step (else the process facts it compares are the same),
    and then only if a required step after that one has a fact (the fact may be backdated
    against it), or the fact is earlier than the nearest present required step before it
    by more than the allowed lateness. A fact in time order of the process's next step,
    the usual, changes nothing."""
    item = case.item
    if item.joint:  # the process counts the handling department's own review only
        return True
    around = _neighbours(item.steps).get(fact.step)
    if around is None or case.all(fact.step)[0] is not fact:
        return False
    later, earlier = around
    if case.having(later):
        return True
    for step in earlier:
        previous = case.first(step)
        if previous is not None:
            return fact.at < previous.at - case.allowed_lateness_seconds
    return False


@reads(PROCESS, Step.reviewed)
@changes_with(_may_backdate)
def reporting_backdated(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """A required step claims to have happened before the previous required step present
    by more than the allowed lateness. Judged only after the lateness (of event time)
    has passed since that previous step."""
    lateness_seconds = case.allowed_lateness_seconds
    present = case.process_facts
    dep_at: float | None = None
    for fact in present:  # most cases: none before the previous one by more than that
        if fact is not None:
            at = fact.at
            if dep_at is not None and at < dep_at - lateness_seconds:
                return _backdated(case, present, lateness_seconds)
            dep_at = at
    return ()


def _backdated(case: CaseView, present: list[Fact | None], lateness_seconds: float
               ) -> list[Finding]:
    """:func:`reporting_backdated`'s findings in the process facts ``present``."""
    out: list[Finding] = []
    steps = case.item.steps
    dep: Fact | None = None  # the previous required step present, and its index
    dep_index = 0
    for i, fact in enumerate(present):
        if fact is None:
            continue
        if dep is not None and fact.at < dep.at - lateness_seconds:
            step, dep_step = steps[i], steps[dep_index]
            out.append(Finding(
                distinct=(step.value,),
                event_time=dep.at,
                due_at=dep.at + lateness_seconds,
                evidence=(fact.event_id, dep.event_id),
                actor=fact.actor,
                details={
                    "step": step.value, "step_zh": STEP_ZH[step], "step_en": STEP_EN[step],
                    "depends_on": dep_step.value, "depends_on_zh": STEP_ZH[dep_step],
                    "depends_on_en": STEP_EN[dep_step],
                    "claimed_at": case.dt(fact.at).isoformat(),
                    "depends_at": case.dt(dep.at).isoformat(),
                    "minutes_before": whole_minutes(dep.at - fact.at),
                    "lateness_minutes": _hours(case.settings.allowed_lateness_minutes),
                },
            ))
        dep, dep_index = fact, i
    return out


# --- refusals ---------------------------------------------------------------------------


#: a refusal by the step that records it: the decision the law names (Art. 32, Art. 38)
_REFUSAL = {
    Step.rejected_at_intake: ("不予受理", "refusal to accept the application"),
    Step.decided: ("不予许可", "refusal of the licence"),
}


@reads(REFUSAL_READS)
def no_reason(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """A refusal (不予受理, or a decision to deny) that states no reason (Art. 38)."""
    out: list[Finding] = []
    refusals = [f for f in case.all(DECIDED) if f.attrs.get("outcome") == "deny"]
    refusals += case.all(REJECTED_AT_INTAKE)
    for f in sorted(refusals, key=lambda f: f.at):
        reason = f.attrs.get("reason")
        if isinstance(reason, str) and reason.strip():
            continue
        zh, en = _REFUSAL[f.step]
        out.append(_about(case, f, {"step": f.step.value, "step_zh": STEP_ZH[f.step],
                               "refusal_zh": zh, "refusal_en": en}))
    return out


# --- fees -------------------------------------------------------------------------------


def _amount(f: Fact) -> Decimal | None:
    try:
        value = Decimal(str(f.attrs.get("amount")))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _refusal(case: CaseView) -> Fact | None:
    refusals = [f for f in case.all(DECIDED) if f.attrs.get("outcome") == "deny"]
    refusals += case.all(REJECTED_AT_INTAKE)
    return min(refusals, key=lambda f: f.at) if refusals else None


@reads(Step.fee_charged, REFUSAL_READS)
@changes_with(has_fact_of(Step.fee_charged))
def fee_unauthorized(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """A fee charged on an item without a fee basis (Art. 58), or on a refused case (a
    refused case pays no fee, whichever came first)."""
    fees = case.all(FEE_CHARGED)
    if not fees:
        return ()
    out: list[Finding] = []
    standard = case.item.fee_standard
    refusal = _refusal(case)
    for f in fees:
        if _amount(f) == 0:
            continue  # nothing was taken
        if standard is None:
            why, why_zh, why_en, due = ("no_fee_basis", "该事项无收费依据",
                                        "the item has no fee basis", f.known_at)
            also: tuple[str, ...] = ()
        elif refusal is not None:
            why, why_zh, why_en = "refused", "办件未获许可或不予受理", "the case was refused"
            due = max(f.known_at, refusal.known_at)
            also = (refusal.event_id,)
        else:
            continue
        out.append(_about(case, f, {
            "amount": str(f.attrs.get("amount", "")),
            "fee_code": str(f.attrs.get("fee_code", "")),
            "why": why, "why_zh": why_zh, "why_en": why_en,
        }, due=due, also=also))
    return out


@reads(Step.fee_charged)
def fee_over_standard(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """A fee above the item's published standard (Art. 59)."""
    out: list[Finding] = []
    standard = case.item.fee_standard
    if standard is None:
        return ()  # any fee is fee.unauthorized
    for f in case.all(FEE_CHARGED):
        amount = _amount(f)
        if amount is None or amount <= standard:
            continue
        out.append(_about(case, f, {
            "amount": str(amount),
            "standard": f"{standard:.2f}",
            "excess": str(amount - standard),
            "fee_code": str(f.attrs.get("fee_code", "")),
        }))
    return out


# --- duties -----------------------------------------------------------------------------


def _conflict(first: Fact, then: Fact, details: dict[str, Any]) -> Finding:
    """A conflict of duties that ``then`` (its actor the person) shows with ``first``."""
    return Finding(distinct=(details["kind"], then.actor), event_time=max(first.at, then.at),
                   due_at=max(first.known_at, then.known_at),
                   evidence=(first.event_id, then.event_id), actor=then.actor, details=details)


#: the steps whose facts make the conflicts of duties: a review and a decision, and the
#: submission that names the applicant
_DUTY_STEPS = frozenset({Step.reviewed, Step.decided, Step.submitted})


def _may_conflict(case: CaseView, fact: Fact) -> bool:
    """Whether ``fact`` may change what ``actor.conflict`` finds: a review, a decision or
    a submission, or a fact the applicant acted in."""
    return fact.step in _DUTY_STEPS or fact.actor == case.applicant_id


@changes_with(_may_conflict)
def actor_conflict(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """The same person reviewed and approved the case, or a staff member handled an
    application they made themselves (actor = the ``submitted`` event's applicant_id)."""
    # the handler may act at any step, so it reads every step (and runs after a fact of
    # the applicant's): the applicant's earliest handling is read from the case's summary
    # rather than from every fact
    out: list[Finding] = []
    decisions = case.all(DECIDED)
    reviewed = case.all(REVIEWED) if decisions else ()
    if reviewed:
        reviews: dict[str, Fact] = {}
        for f in reviewed:
            if f.actor != "applicant":
                reviews.setdefault(f.actor, f)
        seen: set[str] = set()
        for d in decisions:
            if d.attrs.get("outcome") != "grant" or d.actor not in reviews or d.actor in seen:
                continue
            seen.add(d.actor)
            r = reviews[d.actor]
            out.append(_conflict(r, d, {
                "kind": "review_and_decide", "person": d.actor,
                "conflict_zh": "同一人既审查又作出许可决定",
                "conflict_en": "the same person reviewed and approved the case",
            }))
    applicant = case.applicant_id
    if applicant is None:
        return out
    f = case.first_handled_by(applicant)
    if f is not None:
        sub = case.submitted
        assert sub is not None  # the applicant is named on the submission
        out.append(_conflict(sub, f, {
            "kind": "own_application", "person": f.actor, "step": f.step.value,
            "conflict_zh": f"经办人办理本人的申请（{STEP_ZH[f.step]}）",
            "conflict_en": f"a handler handled their own application ({f.step.value})",
        }))
    return out


CHECKS: dict[str, Check] = {
    "reporting.late": reporting_late,
    "reporting.backdated": reporting_backdated,
    "decision.no_reason": no_reason,
    "fee.unauthorized": fee_unauthorized,
    "fee.over_standard": fee_over_standard,
    "actor.conflict": actor_conflict,
}
