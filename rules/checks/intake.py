"""Intake checks (行政许可法 Art. 32): acceptance within 5 working days or it is deemed
given, and one correction notice (一次性告知) in time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jiancha.producers.contract import Step

from ..findings import (
    CLOCK_START_READS,
    INTAKE_DAYS,
    SUBMISSION_READS,
    CaseView,
    Check,
    Finding,
    LazyDetails,
    changes_with,
    has_fact_of,
    reads,
)
from ..steps import SUPPLEMENT_REQUESTED
from .deadlines import deadline_text, working_day_number

_FROM = {
    "deemed_accepted": ("收到申请材料", "the application was received"),
    "deemed_accepted_after_supplement": ("收到补正材料", "the corrected materials were received"),
}


@reads(CLOCK_START_READS)
def deemed_accepted(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """No acceptance, refusal or correction notice within 5 working days of submission
    (or, after a correction notice, of the corrected materials): the application is
    deemed accepted on the day it was received and the decision clock runs from then."""
    start = case.clock_start_at
    if start is None:
        return ()
    start_ts, basis, fact, known_ts = start
    if basis not in _FROM:
        return ()
    from_zh, from_en = _FROM[basis]
    window_end_ts = known_ts - case.allowed_lateness_seconds

    def details() -> dict[str, Any]:
        start_at, window_end = case.dt(start_ts), case.dt(window_end_ts)
        return {
            "limit": INTAKE_DAYS,
            "used": INTAKE_DAYS,
            "from_zh": from_zh,
            "from_en": from_en,
            "clock_basis": basis,
            "clock_start": start_at.isoformat(),
            "clock_start_date": case.wt.local(start_at).date().isoformat(),
            "deadline": window_end.isoformat(),
            "deadline_text": deadline_text(window_end, case.wt),
        }

    return [Finding((), window_end_ts, known_ts, (fact.event_id,), None, LazyDetails(details))]


@reads(Step.supplement_requested)
def supplement_repeated(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """A second (third, …) correction notice on the same case: the law asks for one
    notice listing everything (一次性告知). Cannot be undone: a person resolves it."""
    out: list[Finding] = []
    notices = case.all(SUPPLEMENT_REQUESTED)
    for n, notice in enumerate(notices[1:], 2):
        out.append(Finding(
            distinct=(str(n),),
            event_time=notice.at,
            due_at=notice.known_at,
            evidence=(notices[0].event_id, notice.event_id),
            actor=notice.actor,
            details={"count": n, "first_at": case.dt(notices[0].at).isoformat()},
        ))
    return out


@reads(SUBMISSION_READS, Step.supplement_requested)
@changes_with(has_fact_of(Step.supplement_requested))
def supplement_late(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """The correction notice came later than 5 working days after submission (the
    application was by then already deemed accepted)."""
    sub = case.submitted
    notice = case.first(SUPPLEMENT_REQUESTED)
    limit_at = case.intake_deadline_at
    if sub is None or notice is None or limit_at is None or notice.at <= limit_at:
        return ()
    limit = case.dt(limit_at)
    at = case.dt(notice.at)
    used = working_day_number(case.wt, case.dt(sub.at), at)
    return [Finding(
        distinct=(),
        event_time=notice.at,
        due_at=notice.known_at,
        evidence=(sub.event_id, notice.event_id),
        actor=notice.actor,
        details={
            "limit": INTAKE_DAYS,
            "used": used,
            "overdue": max(used - INTAKE_DAYS, 1),
            "deadline": limit.isoformat(),
            "deadline_text": deadline_text(limit, case.wt),
        },
    )]


CHECKS: dict[str, Check] = {
    "intake.deemed_accepted": deemed_accepted,
    "supplement.repeated": supplement_repeated,
    "supplement.late": supplement_late,
}
