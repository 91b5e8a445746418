"""Deadline checks: the promised and the legal limit counted in working days, the clock
stops (suspensions, Art. 45) and extensions (Art. 42), and the delivery after a grant
(Art. 44).

Every deadline is derived from the facts again on each evaluation: a finding whose
deadline lies in the future is simply not due yet (the engine schedules it), and it
disappears once the missing action happened in time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from jiancha.producers.contract import LAWFUL_SUSPENSION_REASONS, Step

from ..case import Fact
from ..counted_time import DAY, EpochPause, Pause, WorkingTime
from ..findings import (
    CLOCK_START_READS,
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
from ..messages import REASON_ZH, UNIT, days_text, less_than_text, span_text
from ..steps import DECIDED, DELIVERED, EXTENDED, RESUMED, SUSPENDED

#: the texts of spans and bounds the alerts quote, kept by value: the same few recur (no
#: paused time, the warning's share of a promised limit)
_span_text = functools.lru_cache(maxsize=4096)(span_text)
_less_than_text = functools.lru_cache(maxsize=4096)(less_than_text)

#: Art. 44: the licence is issued and delivered within 10 working days of the grant.
DELIVERY_DAYS = 10


# --- helpers shared with the other time rules ---------------------------------------------


@functools.lru_cache(maxsize=4096)  # kept by value: the same few limits and spans recur
def fmt_days(days: float) -> int | float:
    """A number of working days as the alert text shows it (1 decimal when fractional)."""
    rounded = round(days, 1)
    return int(rounded) if rounded == int(rounded) else rounded


@functools.lru_cache(maxsize=4096)  # kept by instant: deadlines fall on a few midnights
def deadline_text(deadline: datetime, wt: WorkingTime) -> str:
    """A deadline as people read it: local time, 24:00 of the day rather than 00:00."""
    loc = wt.local(deadline)
    if (loc.hour, loc.minute, loc.second, loc.microsecond) == (0, 0, 0, 0):
        return f"{(loc.date() - timedelta(1)).isoformat()} 24:00"
    return loc.strftime("%Y-%m-%d %H:%M")


def working_day_number(wt: WorkingTime, start: datetime, at: datetime) -> int:
    """On which working day after the day of ``start`` the instant ``at`` falls (the start
    day is day 0; a non-working day counts as the next working day)."""
    start_day = wt.local(start).date()
    at_day = wt.local(at).date()
    n = wt.workdays_before(at_day + timedelta(1)) - wt.workdays_before(start_day + timedelta(1))
    return n if wt.is_workday(at_day) else n + 1


def _staff(fact: Fact) -> str | None:
    return fact.actor if fact.actor != "applicant" else None


def _paused_seconds(wt: WorkingTime, start: datetime, until: datetime,
                    pauses: Sequence[Pause]) -> float:
    """Working seconds between the count start and ``until`` during which the clock stood."""
    span = max(0.0, wt.working_seconds(until) - wt.count_start(start))
    return span - wt.counted_seconds(start, until, pauses)


def _clock_details(case: CaseView, limit: float, deadline: datetime,
                   pauses: Sequence[EpochPause] | None = None) -> dict[str, Any]:
    start = case.clock_start
    assert start is not None
    start_at, basis, _, _ = start
    stood = case.pauses if pauses is None else [
        (case.dt(a), case.dt(b) if b is not None else None) for a, b in pauses]
    # with no pause the clock never stood (and the counted time is the whole span)
    paused = _paused_seconds(case.wt, start_at, deadline, stood) if stood else 0.0
    paused_zh, paused_en = _span_text(paused)
    return {
        "limit": fmt_days(limit),
        "deadline": deadline.isoformat(),
        "deadline_text": deadline_text(deadline, case.wt),
        "clock_start": start_at.isoformat(),
        "clock_start_date": case.wt.local(start_at).date().isoformat(),
        "clock_basis": basis,
        "paused_days": fmt_days(paused / DAY),
        "paused_seconds": round(paused),
        # the clause naming the paused time, empty when the clock never stood
        "paused_zh": f"，其间依法暂停计时 {paused_zh}不计入" if paused >= 60 else "",
        "paused_en": f", not counting {paused_en} of lawful suspension" if paused >= 60 else "",
        # the suspensions themselves (end null: still suspended), for the alert's case page
        "paused_spans": [[a.isoformat(), b.isoformat() if b is not None else None]
                         for a, b in stood if a < deadline],
    }


def _deadline_due(case: CaseView, deadline: float, known_at: float | None = None) -> float:
    """When a deadline finding is raised (epoch seconds): the allowed lateness after the
    deadline instant (the alert's ``event_time`` stays the deadline), so that a decision
    taken just before the deadline but delivered within the allowed lateness is no false
    alarm; and not before the clock start is certain (a deemed acceptance is known only
    after the intake window and the allowed lateness)."""
    due = deadline + case.allowed_lateness_seconds
    return max(due, known_at) if known_at is not None else due


# --- the legal limit and its extension (Art. 42) -------------------------------------------


def legal_deadline(case: CaseView, extension: int = 0) -> float | None:
    """The legal limit plus ``extension`` days of a regular extension (pauses honoured),
    epoch seconds; None without a clock or while the clock stands still.

    A limit in calendar days (``Item.legal_unit``, set by another law) ends as
    ``WorkingTime.calendar_deadline_at`` counts it; its extension stays in working days:
    the extension is Art. 42's own, which Art. 82 counts in working days."""
    start = case.clock_start_at
    if start is None:
        return None
    item = case.item
    if item.legal_unit == "calendar":
        return case.wt.calendar_deadline_at(start[0], item.legal_days, case.pauses_at, extension)
    return case.counted_deadline(start[0], item.legal_days + extension)


def _legal_details(case: CaseView, limit: int, extension: int, deadline_at: float) -> dict[str, Any]:
    """The numbers of a broken legal limit, with the unit its limit is counted in."""
    out = _clock_details(case, limit, case.dt(deadline_at))
    unit = case.item.legal_unit
    if unit == "calendar":  # paused calendar time, not working time
        start = case.clock_start_at
        assert start is not None
        out["paused_days"] = fmt_days(
            case.wt.calendar_paused_seconds_at(start[0], deadline_at, case.pauses_at) / DAY)
    out.update(extension=extension, total=limit + extension, used=limit + extension)
    return out


def extension_problems(case: CaseView, ext: Fact, index: int) -> list[str]:
    """Why an ``extended`` event is irregular (empty when it is a regular extension)."""
    problems: list[str] = []
    if index > 0:
        problems.append("repeated")
    approver = ext.attrs.get("approved_by")
    if not isinstance(approver, str) or not approver.strip():
        problems.append("no_approver")
    days = ext.attrs.get("days")
    if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
        problems.append("bad_days")
    elif days > case.item.max_extension_days:
        problems.append("too_long")
    limit = legal_deadline(case)
    if limit is not None and ext.at > limit:
        problems.append("late")
    return problems


def regular_extension(case: CaseView) -> Fact | None:
    """The extension that moves the legal limit: the first one, if it is regular."""
    extensions = case.all(EXTENDED)
    if extensions and not extension_problems(case, extensions[0], 0):
        return extensions[0]
    return None


# --- the checks ----------------------------------------------------------------------------


@reads(CLOCK_START_READS, PAUSES_READS)
def approaching(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """Open case whose remaining counted time to the promise is within the threshold:
    max(``min_working_days``, ``share_of_promise`` × the promised limit)."""
    start = case.clock_start_at
    if start is None:
        return ()
    start_at, _, start_fact, known_at = start
    ended = case.ended
    if ended is not None and ended.at <= start_at:
        return ()  # never open after the clock start: no warning can be due
    limit = case.item.promised_days
    threshold = max(float(params.get("min_working_days", 1)),
                    float(params.get("share_of_promise", 0.2)) * limit)
    threshold = min(threshold, float(limit))
    warn_at = case.counted_deadline(start_at, limit - threshold)
    if warn_at is None:
        return ()  # suspended for an Art. 45 reason before the warning: the clock stands still
    warn_at = max(warn_at, start_at)
    if ended is not None and ended.at <= warn_at:
        return ()  # decided before the warning (whatever the deadline)
    # the deadline as it stood at the warning instant: a suspension that starts later does
    # not change what the warning says (the same text whenever it is evaluated)
    pauses = case.pauses_at  # in time order
    if pauses and pauses[-1][0] >= warn_at:
        pauses = [p for p in pauses if p[0] < warn_at]
    deadline_at = case.counted_deadline(start_at, limit, pauses)
    if deadline_at is None:
        return ()  # suspended (Art. 45) since before counting began: the clock stands still
    due = _deadline_due(case, warn_at, known_at)
    if due >= deadline_at or (ended is not None and ended.at <= due):
        return ()  # decided in time, or only known once the limit was already broken

    def details() -> dict[str, Any]:
        out = _clock_details(case, limit, case.dt(deadline_at), pauses)
        out.update(threshold=fmt_days(threshold), used=fmt_days(limit - threshold),
                   remaining=fmt_days(threshold))
        out["used_zh"], out["used_en"] = _span_text((limit - threshold) * DAY)
        out["remaining_zh"], out["remaining_en"] = _less_than_text(threshold)
        return out

    return [Finding((), warn_at, due, (start_fact.event_id,), _staff(start_fact),
                    LazyDetails(details), None, warn_at)]


@reads(CLOCK_START_READS, PAUSES_READS)
def promise_broken(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """No decision when the promised limit (counted working days) is used up.

    Suspensions for Art. 45 reasons move it; an extension does not (it only moves the
    legal limit: the promise to the public stands)."""
    start = case.clock_start_at
    if start is None:
        return ()
    start_at, _, start_fact, known_at = start
    limit = case.item.promised_days
    deadline_at = case.counted_deadline(start_at, limit)
    if deadline_at is None:
        return ()  # suspended for an Art. 45 reason: the clock stands still
    ended = case.ended
    if ended is not None and ended.at <= deadline_at:
        return ()  # decided, refused or withdrawn by then
    details = LazyDetails(lambda: {**_clock_details(case, limit, case.dt(deadline_at)),
                                   "used": fmt_days(limit)})
    return [Finding((), deadline_at, _deadline_due(case, deadline_at, known_at),
                    (start_fact.event_id,), _staff(start_fact), details,
                    ended.at if ended is not None else None, deadline_at)]


@reads(CLOCK_START_READS, PAUSES_READS, Step.extended)
def legal_broken(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """No decision when the legal limit plus a regular extension is used up (Art. 42),
    the limit counted in the unit the item's law sets (``Item.legal_unit``)."""
    start = case.clock_start_at
    if start is None:
        return ()
    _, _, start_fact, known_at = start
    ext = regular_extension(case)
    extension = int(ext.attrs["days"]) if ext is not None else 0
    limit = case.item.legal_days
    deadline_at = legal_deadline(case, extension)
    if deadline_at is None:
        return ()
    ended = case.ended
    if ended is not None and ended.at <= deadline_at:
        return ()  # decided, refused or withdrawn by then
    details = LazyDetails(lambda: {**_legal_details(case, limit, extension, deadline_at),
                                   **_legal_texts(case, limit, ext)})
    evidence = (start_fact.event_id,) if ext is None else (start_fact.event_id, ext.event_id)
    return [Finding((), deadline_at, _deadline_due(case, deadline_at, known_at), evidence,
                    _staff(start_fact), details, ended.at if ended is not None else None,
                    deadline_at)]


def _legal_texts(case: CaseView, limit: int, ext: Fact | None) -> dict[str, Any]:
    """The legal limit with its unit, and what became of an extension: counted (approved
    and regular), disregarded (with why), or none asked."""
    unit = case.item.legal_unit
    limit_zh, limit_en = days_text(limit, unit)
    out: dict[str, Any] = {"legal_unit": unit, "legal_unit_zh": UNIT[unit][0],
                           "legal_limit_zh": limit_zh, "legal_limit_en": limit_en,
                           "extension_zh": "", "extension_en": ""}
    if ext is not None:
        days = int(ext.attrs["days"])
        ext_zh, ext_en = days_text(days)
        if unit == "working":  # one unit: the total says when the limit ends
            total_zh, total_en = days_text(limit + days)
            ext_zh, ext_en = f"{ext_zh}，共 {total_zh}", f"{ext_en}, {total_en} in all"
        out.update(extension_zh=f"，经批准延长 {ext_zh}",
                   extension_en=f" plus an approved extension of {ext_en}")
        return out
    extensions = case.all(EXTENDED)
    if extensions:  # asked, but irregular: it does not move the limit (extension.irregular)
        first = extensions[0]
        problems = extension_problems(case, first, 0)
        when = case.wt.local(case.dt(first.at)).date().isoformat()
        out.update(
            extension_disregarded=first.event_id,
            extension_zh=f"（{when} 的延期因"
                         + "、".join(_PROBLEM_TEXT[p][0] for p in problems) + "不予计入）",
            extension_en=f" (the extension of {when} does not count: "
                         + "; ".join(_PROBLEM_TEXT[p][1] for p in problems) + ")")
    return out


_PROBLEM_TEXT = {
    "repeated": ("重复延期（法定只可延长一次）", "a second extension (only one is allowed)"),
    "no_approver": ("未经行政机关负责人批准", "no approval by the head of the agency"),
    "bad_days": ("延长天数无效", "an invalid number of days"),
    "too_long": ("延长期限超过法定上限", "longer than the legal maximum"),
    "late": ("法定期限届满后才申请延期", "asked after the legal limit had passed"),
}


@reads(CLOCK_START_READS, PAUSES_READS, Step.extended)
@changes_with(has_fact_of(Step.extended))
def extension_irregular(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """An extension without approver, longer than allowed, a second one, or asked after
    the legal limit had passed. Such an extension does not move the limit."""
    out: list[Finding] = []
    for index, ext in enumerate(case.all(EXTENDED)):
        problems = extension_problems(case, ext, index)
        if not problems:
            continue
        due = ext.at
        start = case.clock_start_at
        if "late" in problems and start is not None and start[3] > ext.at:
            due = start[3]  # judged against a deemed start: an acceptance could still come
        days = ext.attrs.get("days")
        out.append(Finding(
            distinct=(ext.event_id,),
            event_time=ext.at,
            due_at=due,
            evidence=(ext.event_id,),
            actor=_staff(ext),
            details={
                "days": days if isinstance(days, int) else "?",
                "max_days": case.item.max_extension_days,
                "approved_by": ext.attrs.get("approved_by"),
                "problems": problems,
                "problems_zh": "；".join(_PROBLEM_TEXT[p][0] for p in problems),
                "problems_en": "; ".join(_PROBLEM_TEXT[p][1] for p in problems),
            },
        ))
    return out


@reads(ENDED_READS, PAUSES_READS)
@changes_with(has_fact_of(Step.suspended))
def suspension_unlawful_reason(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """The clock was "stopped" for a reason not in Art. 45's list: it keeps running, and
    the suspension itself is irregular. Corrected by the next resumption (or the end)."""
    suspensions = case.all(SUSPENDED)
    if not suspensions:
        return ()
    out: list[Finding] = []
    resumes = [f.at for f in case.all(RESUMED)]
    ended = case.ended
    for s in suspensions:
        reason = str(s.attrs.get("reason", ""))
        if reason in LAWFUL_SUSPENSION_REASONS:
            continue
        ends = [r for r in resumes if r >= s.at]
        if ended is not None and ended.at >= s.at:
            ends.append(ended.at)
        out.append(Finding(
            distinct=(s.event_id,),
            event_time=s.at,
            due_at=s.at,
            evidence=(s.event_id,),
            actor=_staff(s),
            corrected_at=min(ends) if ends else None,
            details={"reason": reason,
                     "lawful_reasons": ", ".join(sorted(LAWFUL_SUSPENSION_REASONS)),
                     "lawful_reasons_zh": "、".join(REASON_ZH.values()),
                     "lawful_reasons_en": ", ".join(r.replace("_", " ") for r in REASON_ZH)},
        ))
    return out


@reads(Step.decided, Step.delivered)
def delivery_late(case: CaseView, params: Mapping[str, Any]) -> Sequence[Finding]:
    """Granted, but not delivered within 10 working days of the decision (Art. 44)."""
    for grant in case.all(DECIDED):  # the first grant (a loop: no generator to build)
        if grant.attrs.get("outcome") == "grant":
            break
    else:
        return ()
    limit = int(params.get("working_days", DELIVERY_DAYS))
    deadline_at = case.wt.working_deadline_epoch(grant.at, limit)
    delivered = case.first(DELIVERED)
    if delivered is not None and delivered.at <= deadline_at:
        return ()

    def details() -> dict[str, Any]:
        deadline = case.dt(deadline_at)
        return {
            "limit": limit,
            "decided_at": case.dt(grant.at).isoformat(),
            "decided_date": case.wt.local(case.dt(grant.at)).date().isoformat(),
            "deadline": deadline.isoformat(),
            "deadline_text": deadline_text(deadline, case.wt),
            "used": limit,
        }

    return [Finding((), deadline_at, _deadline_due(case, deadline_at), (grant.event_id,),
                    _staff(grant), LazyDetails(details),
                    delivered.at if delivered is not None else None, deadline_at)]


CHECKS: dict[str, Check] = {
    "deadline.approaching": approaching,
    "deadline.promise_broken": promise_broken,
    "deadline.legal_broken": legal_broken,
    "extension.irregular": extension_irregular,
    "suspension.unlawful_reason": suspension_unlawful_reason,
    "delivery.late": delivery_late,
}

