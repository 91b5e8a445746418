"""Property: a case that follows its item's process within its limits never raises a red
alert, whatever the interleaving of several cases in the file and whatever the delivery
delay within the allowed lateness.

A lawful case here: every required step in order (a joint item: the handling
department's and every co-handling department's review before the decision); intake
within 5 working days, at most one correction notice (in time) and acceptance within 5
working days of the corrected materials; a decision within the promised limit counted
from acceptance (a deny with reasons, a refusal at intake with reasons); the licence
delivered within 10 working days of a grant; only Art. 45 suspensions, resumed before
the decision; at most one extension, approved, within the allowed days and asked before
the limit; a fee at or below the standard only on a granted case of an item that has
one; a reviewer who is not the decider, and no handler who is the applicant.

Each event is delivered with a delay in [0, allowed lateness) of event time: the file is
ordered by occurred_at + delay, so events within 10 minutes of each other are shuffled
(across cases as well). Replay runs with ``until`` far after every case is complete.

The limits the generator keeps are counted here, not by the engine: :func:`working_deadline`
walks the days of the official calendar as ``chinese_calendar`` publishes it (Art. 82: the
start day not counted, weekends and holidays out, 调休 days in, the limit ends at 24:00 of
the last day), checked against a hand-counted table. A calendar error in the engine then
shows as a red alert on a lawful case instead of moving the generator along with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import chinese_calendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiancha.producers.contract import LAWFUL_SUSPENSION_REASONS
from tests.unit.eventkit_integrity import CO_DEPARTMENTS, CST, DEPARTMENT, engine, ev, lawful, run

ENGINE = engine()
LATENESS_S = int(ENGINE.ruleset.settings.allowed_lateness.total_seconds())
ITEMS = ("T-SHORT", "T-SIMPLE", "T-JOINT", "T-FEE")
#: start of the window of submissions: 2025 and 2026, years chinese_calendar knows (the
#: longest case, a joint item with a correction, ends within about 120 days of its base)
EPOCH = datetime(2025, 1, 1, tzinfo=CST)
SPAN_DAYS = 2 * 365 - 150
RESOLUTION = 1_000_000
LOUD = ("red", "escalated")
QUIET_YELLOW = ("process.unknown_step", "reporting.late")
LATER = "2024-06-28 18:00"


def working_days_after(day: date) -> Iterator[date]:
    """The working days after ``day``, in order, as the official calendar has them
    (``chinese_calendar`` raises for a year it does not know)."""
    while True:
        day += timedelta(days=1)
        if chinese_calendar.is_workday(day):
            yield day


def working_deadline(start: datetime, days: int) -> datetime:
    """24:00 Beijing time of the ``days``-th working day after the day of ``start``."""
    last = next(itertools.islice(working_days_after(start.astimezone(CST).date()), days - 1, None))
    return datetime.combine(last + timedelta(days=1), time(), CST)


#: counted by hand from the State Council's holiday notices for 2025 and 2026
HAND_COUNTED = [
    ("2025-03-03 23:59:59", 5, "2025-03-11"),  # an ordinary week: Tue to Mon
    ("2025-01-24 17:00", 1, "2025-01-27"),  # Sun 26 January is a 调休 working day
    ("2025-01-24 17:00", 3, "2025-02-06"),  # 26, 27 January, then 28 Jan - 4 Feb off: 5 February
    ("2025-04-30 09:00", 1, "2025-05-07"),  # 1-5 May off
    ("2025-09-30 10:00", 5, "2025-10-15"),  # 1-8 October off, Sat 11 October worked
    ("2025-10-01 10:00", 1, "2025-10-10"),  # starting on a holiday
    ("2025-12-31 18:00", 1, "2026-01-05"),  # 1-3 January 2026 off, Sun 4 January worked
    ("2026-02-13 09:00", 2, "2026-02-25"),  # Sat 14 February worked, 15-23 February off
    ("2026-09-30 09:00", 10, "2026-10-21"),  # 1-7 October off, Sat 10 October worked
]


@pytest.mark.parametrize(("start", "days", "ends"), HAND_COUNTED)
def test_the_oracle_and_the_engine_count_as_the_hand_counted_table(start: str, days: int,
                                                                   ends: str) -> None:
    expected = datetime.fromisoformat(ends).replace(tzinfo=CST)
    at = datetime.fromisoformat(start).replace(tzinfo=CST)
    assert working_deadline(at, days) == expected
    assert ENGINE.working_time.working_deadline(at, days) == expected


@dataclass
class Planned:
    at: datetime
    event: dict[str, Any]


def _between(a: datetime, b: datetime, k: int) -> datetime:
    """A whole second in [a, b): ``k`` in [0, RESOLUTION) is the fraction of the way."""
    span = int((b - a).total_seconds())
    if span <= 0:
        return a
    return a + timedelta(seconds=span * k // RESOLUTION)


#: where in a window a step falls: Hypothesis draws a wide integer range mostly near its
#: low end, which would leave the last days of a limit (where a false red shows) unvisited,
#: so as often near the end of the window, and anywhere in between
fraction = st.one_of(
    st.integers(0, RESOLUTION - 1),
    st.integers(0, RESOLUTION - 1).map(lambda k: RESOLUTION - 1 - k),
    st.integers(0, 99).map(lambda percent: percent * RESOLUTION // 100),
)


@st.composite
def lawful_case(draw: st.DrawFn, n: int, base: datetime) -> list[Planned]:
    cid = f"C{n}"
    item_code = draw(st.sampled_from(ITEMS), label=f"{cid} item")
    item = ENGINE.catalog[item_code]
    dept = DEPARTMENT[item_code]
    path = draw(st.sampled_from(["grant", "grant", "deny", "reject"]), label=f"{cid} path")
    sub = base + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60), label=f"{cid} start"))
    staff = {role: f"{dept}-{role}-{n}" for role in ("acc", "rev", "dec", "del", "fee", "sup")}
    if draw(st.booleans(), label=f"{cid} acceptor reviews"):
        staff["acc"] = staff["rev"]  # one person may accept and review: not a conflict
    out: list[Planned] = []

    def add(step: str, when: datetime, department: str = dept, actor: str | None = None,
            **attrs: Any) -> None:
        role = {"accepted": "acc", "rejected_at_intake": "acc", "supplement_requested": "acc",
                "reviewed": "rev", "decided": "dec", "delivered": "del", "completed": "del",
                "fee_charged": "fee"}.get(step, "sup")
        e = ev(cid, step, when, item=item_code, department=department,
               actor=actor or (None if step in ("submitted", "supplement_received") else staff[role]),
               event_id=f"{cid}-{len(out)}", applicant_id=f"sha256:applicant-{n}", **attrs)
        out.append(Planned(when, e))

    add("submitted", sub)
    intake_end = working_deadline(sub, 5)
    window_start = sub
    if draw(st.booleans(), label=f"{cid} correction notice"):
        notice = _between(sub, intake_end, draw(fraction))
        add("supplement_requested", notice, items=["身份证明"])
        back = notice + timedelta(minutes=draw(st.integers(0, 5 * 24 * 60), label=f"{cid} back after"))
        add("supplement_received", back)
        window_start, intake_end = back, working_deadline(back, 5)
    if path == "reject":
        refused = _between(window_start, intake_end, draw(fraction))
        add("rejected_at_intake", refused, reason="不属于本机关职权范围")
        if draw(st.booleans(), label=f"{cid} closed"):
            add("completed", refused + timedelta(minutes=draw(st.integers(0, 600))))
        return out
    accepted = _between(window_start, intake_end, draw(fraction))
    add("accepted", accepted)
    promise_end = working_deadline(accepted, item.promised_days)
    decided = _between(accepted, promise_end, draw(fraction, label=f"{cid} decision"))
    # the reviews, a lawful suspension and an extension between acceptance and decision
    if "reviewed" in {s.value for s in item.steps}:
        for department in (dept, *CO_DEPARTMENTS.get(item_code, ())):
            actor = None if department == dept else f"{department}-rev-{n}"
            add("reviewed", _between(accepted, decided, draw(fraction)), department=department,
                actor=actor, opinion="agree", reason="符合条件")
    if draw(st.booleans(), label=f"{cid} suspension"):
        a, b = sorted(_between(accepted, decided, draw(fraction)) for _ in range(2))
        add("suspended", a, reason=draw(st.sampled_from(sorted(LAWFUL_SUSPENSION_REASONS))))
        add("resumed", b)
    if draw(st.booleans(), label=f"{cid} extension"):
        days = draw(st.integers(1, item.max_extension_days))
        add("extended", _between(accepted, decided, draw(fraction)), days=days, approved_by=f"head-{dept}")
    if path == "deny":
        add("decided", decided, outcome="deny", reason="不符合法定条件")
        closed = decided
        if draw(st.booleans(), label=f"{cid} refusal delivered"):
            closed = _between(decided, working_deadline(decided, 10), draw(fraction))
            add("delivered", closed)
    else:
        add("decided", decided, outcome="grant")
        closed = _between(decided, working_deadline(decided, 10), draw(fraction, label=f"{cid} delivery"))
        if item.fee_standard is not None and draw(st.booleans(), label=f"{cid} fee"):
            cents = draw(st.integers(0, int(item.fee_standard * 100)))
            add("fee_charged", _between(accepted, closed, draw(fraction)), amount=f"{cents / 100:.2f}",
                fee_code="GBF")
        add("delivered", closed)
    add("completed", closed + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60))))
    return out


@st.composite
def interleaved_files(draw: st.DrawFn) -> tuple[list[dict[str, Any]], datetime]:
    base = EPOCH + timedelta(days=draw(st.integers(0, SPAN_DAYS), label="base day"))
    n_cases = draw(st.integers(1, 4), label="cases")
    planned = [p for n in range(n_cases) for p in draw(lawful_case(n, base))]
    delays = draw(st.lists(st.integers(0, LATENESS_S - 1), min_size=len(planned), max_size=len(planned)),
                  label="delivery delays (s)")
    order = sorted(range(len(planned)), key=lambda i: (planned[i].at + timedelta(seconds=delays[i]), i))
    until = max(p.at for p in planned) + timedelta(days=120)
    return [planned[i].event for i in order], until


# --- what the property found, pinned -------------------------------------------------------

def _decision_just_before_the_promise_arrives_late() -> list[dict[str, Any]]:
    """T-SHORT accepted Mon 09:30: promised limit 24:00 Tue. Decided Tue 23:59:52,
    delivered Wed 00:00:31; the decision reaches the engine 39 s late, after the delivery."""
    case = lawful("K1", "T-SHORT", "2024-03-04 09:00", through="reviewed")
    return [*case, ev("K1", "delivered", "2024-03-06 00:00:31"),
            ev("K1", "decided", "2024-03-05 23:59:52"), ev("K1", "completed", "2024-03-06 08:00")]


def _acceptance_on_the_last_intake_day_arrives_late() -> list[dict[str, Any]]:
    """Submitted Mon 4 March; accepted Mon 11 March 23:59:58 (the 5th working day), decided
    4 min later; the acceptance reaches the engine after the decision."""
    return [ev("K2", "submitted", "2024-03-04 09:00"), ev("K2", "reviewed", "2024-03-11 23:59:59"),
            ev("K2", "decided", "2024-03-12 00:03"), ev("K2", "accepted", "2024-03-11 23:59:58"),
            ev("K2", "delivered", "2024-03-12 09:00"), ev("K2", "completed", "2024-03-12 10:00")]


def _acceptance_arrives_after_an_extension() -> list[dict[str, Any]]:
    """Submitted Wed 29 May 2024; accepted and suspended (quarantine) Sat 1 June 06:30:31,
    extended 24 s later; the acceptance reaches the engine after the extension."""
    return [ev("K3", "submitted", "2024-05-29 18:46"),
            ev("K3", "suspended", "2024-06-01 06:30:31", reason="quarantine"),
            ev("K3", "extended", "2024-06-01 06:30:55", days=2),
            ev("K3", "reviewed", "2024-06-01 06:33:09"), ev("K3", "resumed", "2024-06-01 06:32:15"),
            ev("K3", "accepted", "2024-06-01 06:30:31"), ev("K3", "decided", "2024-06-01 06:35:12"),
            ev("K3", "delivered", "2024-06-02 08:53"), ev("K3", "completed", "2024-06-04 15:11")]


@pytest.mark.parametrize("events", [
    pytest.param(_decision_just_before_the_promise_arrives_late(), id="decision-before-the-promise"),
    pytest.param(_acceptance_on_the_last_intake_day_arrives_late(), id="acceptance-on-last-intake-day"),
    pytest.param(_acceptance_arrives_after_an_extension(), id="acceptance-after-extension"),
])
def test_found_out_of_order_cases_raise_no_red(events: list[dict[str, Any]]) -> None:
    """Counterexamples the property found (fixed): a step delivered within the allowed
    lateness after a later one, close to a limit."""
    in_order = sorted(events, key=lambda e: e["occurred_at"])
    for file in (in_order, events):
        assert [(a.rule, a.severity) for a in run(file, LATER) if a.severity in LOUD] == []


def _suspended_on_the_acceptance_day() -> list[dict[str, Any]]:
    """T-SHORT (promised 1 working day): suspended for an Art. 45 reason on the day of
    acceptance, not yet resumed."""
    return [ev("K4", "submitted", "2024-03-04 09:00"), ev("K4", "accepted", "2024-03-04 09:30"),
            ev("K4", "suspended", "2024-03-04 09:40", reason="appraisal")]


def test_open_suspension_on_the_acceptance_day_does_not_crash() -> None:
    # promised_days 1: the warning instant is the end of the uncounted start day; a lawful
    # suspension open since that day stops the clock, so there is no deadline to warn of
    eng = engine()  # its own: its check errors are this test's
    alerts = run(_suspended_on_the_acceptance_day(), LATER, eng)
    assert eng.check_errors == {}
    assert [a.rule for a in alerts if a.case_id == "K4" and a.rule.startswith("deadline.")] == []


# --- the property -------------------------------------------------------------------------

@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(interleaved_files())
def test_lawful_cases_never_raise_red(file: tuple[list[dict[str, Any]], datetime]) -> None:
    events, until = file
    alerts = run(events, until)
    loud = [(a.rule, a.case_id, a.severity, a.details) for a in alerts if a.severity in LOUD]
    assert loud == [], loud
    quiet = [(a.rule, a.case_id, a.details) for a in alerts if a.rule in QUIET_YELLOW]
    assert quiet == [], quiet


def test_the_generator_covers_the_interesting_shapes() -> None:
    """The strategy reaches every item, path and option, decides close to the limit, and
    really shuffles the file."""
    seen: set[str] = set()

    # derandomized: a fixed sequence of examples, so that this check of the strategy does
    # not fail now and then on a random draw (it missed fee_charged about one run in 20)
    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(interleaved_files())
    def collect(file: tuple[list[dict[str, Any]], datetime]) -> None:
        events, _ = file
        seen.update(e["item_code"] for e in events)
        seen.update(e["step"] for e in events)
        seen.update(str(e.get("attributes", {}).get("outcome")) for e in events)
        if len({e["case_id"] for e in events}) > 1:
            seen.add("several cases")
        steps = {(e["case_id"], e["step"]): e for e in events}
        for (cid, step), e in steps.items():
            days = ENGINE.catalog[e["item_code"]].promised_days
            if step == "decided" and (cid, "accepted") in steps and days >= 10:
                accepted = datetime.fromisoformat(steps[cid, "accepted"]["occurred_at"])
                left = working_deadline(accepted, days) - datetime.fromisoformat(e["occurred_at"])
                if left < timedelta(days=1):
                    seen.add("decided on the last day of a long promise")
        times = [e["occurred_at"] for e in events]
        if any(datetime.fromisoformat(a) > datetime.fromisoformat(b) for a, b in itertools.pairwise(times)):
            seen.add("out of order")

    collect()
    assert seen >= {*ITEMS, "supplement_requested", "suspended", "resumed", "extended", "fee_charged",
                    "rejected_at_intake", "delivered", "grant", "deny", "several cases", "out of order",
                    "decided on the last day of a long promise"}
