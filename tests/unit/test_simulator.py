"""The department traffic simulator: determinism, contract, process, violations, replay."""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from jiancha.producers.contract import ApprovalEvent, Step, parse_event
from jiancha.rules.calendar import OfficialCalendar
from jiancha.rules.catalog import load_catalog
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.counted_time import WorkingTime
from jiancha.rules.factory import build_engine
from jiancha.rules.replay import replay
from jiancha.settings import SimulatorSettings
from jiancha.simulator import (
    OFFICE_DAY,
    VIOLATION_KINDS,
    VIOLATION_RULES,
    CasePlanner,
    LiveSimulator,
    OfficeHours,
    Simulation,
    expected_violations,
    generate_cases,
    generate_file,
    run_live,
    simulate,
    write_jsonl,
)
from tests.wait import wait_for_async

ROOT = Path(__file__).resolve().parents[2]
CATALOG_DIR = ROOT / "rules" / "catalog"
TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)  # a Monday
CATALOG = load_catalog(CATALOG_DIR)
WT = WorkingTime(OfficialCalendar(), TZ)
CHECKED_RULES = {"process.skipped_step", "deadline.promise_broken"}


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(CATALOG, start=START, cases=400, seed=7, violations=0.2, working_time=WT)


def by_case(events: list[ApprovalEvent]) -> dict[str, list[ApprovalEvent]]:
    out: dict[str, list[ApprovalEvent]] = defaultdict(list)
    for ev in events:
        out[ev.case_id].append(ev)
    return out


def wire(events: list[ApprovalEvent]) -> list[bytes]:
    return [orjson.dumps(ev.wire_dict()) for ev in events]


# --- determinism and contract -----------------------------------------------------------


def test_same_seed_same_events_other_seed_other_events() -> None:
    a = generate_cases(CATALOG, start=START, cases=60, seed=3, violations=0.3)
    b = generate_cases(CATALOG, start=START, cases=60, seed=3, violations=0.3)
    c = generate_cases(CATALOG, start=START, cases=60, seed=4, violations=0.3)
    assert wire(a) == wire(b)
    assert wire(a) != wire(c)
    assert expected_violations(CATALOG, start=START, cases=60, seed=3, violations=0.3) == \
        simulate(CATALOG, start=START, cases=60, seed=3, violations=0.3).violations


def test_every_event_follows_the_contract(sim: Simulation) -> None:
    ids: set[tuple[str, str]] = set()
    for ev in sim.events:
        again = parse_event(orjson.dumps(ev.wire_dict()))
        assert again == ev
        assert (ev.department, ev.event_id) not in ids
        ids.add((ev.department, ev.event_id))
        assert re.fullmatch(rf"{re.escape(ev.department)}-\d+", ev.event_id)
        assert re.fullmatch(r"GZ2026-\d{7}", ev.case_id)
        assert ev.occurred_at.utcoffset() == timedelta(hours=8)
        if ev.step in (Step.submitted, Step.supplement_received):
            assert ev.actor == "applicant"
        else:
            assert re.fullmatch(rf"{re.escape(ev.department)}-h\d+", ev.actor or "")
        if ev.step is Step.submitted:
            assert re.fullmatch(r"[0-9a-f]{64}", ev.applicant_id or "")
            assert ev.channel in ("online", "window", "mobile")


def test_events_sorted_and_in_office_hours(sim: Simulation) -> None:
    times = [ev.occurred_at for ev in sim.events]
    assert times == sorted(times)
    for t in times:
        local = t.astimezone(TZ)
        assert WT.is_workday(local.date()), t
        hm = local.hour * 60 + local.minute
        assert 9 * 60 <= hm < 12 * 60 or 14 * 60 <= hm < 18 * 60, t
    assert times[0] >= START


def test_json_schema_accepts_every_event(sim: Simulation) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is missing: pip install -e '.[test]'")
    schema = orjson.loads((ROOT / "producers" / "schema" / "approval-event.v1.json").read_bytes())
    validator = jsonschema.Draft202012Validator(schema)
    for ev in sim.events[:500]:
        validator.validate(ev.wire_dict())


# --- the process of clean cases ---------------------------------------------------------


def test_clean_cases_follow_their_item(sim: Simulation) -> None:
    cases = by_case(sim.events)
    assert len(cases) == 400
    checked_joint = checked_fee = checked_deny = 0
    for case_id in sim.clean_cases:
        evs = cases[case_id]
        item = CATALOG[sim.items[case_id]]
        assert {e.item_code for e in evs} == {item.code}
        first: dict[Step, ApprovalEvent] = {}
        for e in evs:
            first.setdefault(e.step, e)
        decided = first[Step.decided]
        refused = decided.attributes["outcome"] == "deny"
        required = [s for s in item.steps if not (refused and s is Step.delivered)]
        order = [e.step for e in evs if e.step in required and first[e.step] is e]
        assert order == required, case_id
        # within the promise, counted from acceptance
        start = first[Step.accepted].occurred_at
        assert decided.occurred_at <= WT.working_deadline(start, item.promised_days)
        assert first[Step.accepted].occurred_at <= WT.working_deadline(
            first[Step.submitted].occurred_at, 5)
        reviews = [e for e in evs if e.step is Step.reviewed]
        assert all(e.occurred_at < decided.occurred_at for e in reviews)
        if Step.reviewed in item.steps:
            own = [e for e in reviews if e.department == item.department]
            assert len(own) == 1 and own[0].actor != decided.actor
            assert own[0].attributes == {"opinion": "agree"}
        if item.joint:
            checked_joint += 1
            assert {e.department for e in reviews} == {item.department, *item.co_departments}
        fees = [e for e in evs if e.step is Step.fee_charged]
        if refused:
            checked_deny += 1
            assert decided.attributes.get("reason")
            assert not fees and Step.delivered not in first
        else:
            assert decided.attributes == {"outcome": "grant"}
            if item.fee_standard:
                checked_fee += 1
                assert [Decimal(f.attributes["amount"]) for f in fees] == [item.fee_standard]
                assert decided.occurred_at < fees[0].occurred_at < first[Step.delivered].occurred_at
            else:
                assert not fees
            if Step.delivered in item.steps:
                assert first[Step.delivered].occurred_at <= WT.working_deadline(
                    decided.occurred_at, 10)
        for s in (Step.supplement_requested, Step.suspended):
            assert len([e for e in evs if e.step is s]) <= 1
        for e in evs:
            if e.step is Step.suspended:
                assert e.attributes["reason"] in {"expert_review", "inspection", "testing",
                                                  "appraisal", "hearing"}
    assert checked_joint and checked_fee and checked_deny


# --- violations -------------------------------------------------------------------------


def test_violation_share_and_every_kind_planted(sim: Simulation) -> None:
    assert len(sim.violations) == 80  # exactly 20 % of 400
    kinds = Counter(sim.violations.values())
    assert set(kinds) == set(VIOLATION_KINDS)
    assert max(kinds.values()) - min(kinds.values()) <= 1
    few = simulate(CATALOG, start=START, cases=200, seed=1, violations=0.1)
    assert len(few.violations) == 20
    none = simulate(CATALOG, start=START, cases=50, seed=1, violations=0.0)
    assert none.violations == {}


def test_live_violation_share_roughly_as_asked() -> None:
    live = LiveSimulator(CATALOG, WT, seed=5, violations=0.1)
    t = START
    for _ in range(3000):
        live.start_case(t)
        t += timedelta(seconds=7)
    assert 0.08 <= sum(live.planted.values()) / live.started <= 0.12
    assert set(live.planted) == set(VIOLATION_KINDS)


def test_each_violation_is_visible_in_its_events(sim: Simulation) -> None:
    cases = by_case(sim.events)
    for case_id, kind in sim.violations.items():
        evs = cases[case_id]
        item = CATALOG[sim.items[case_id]]
        steps = [e.step for e in evs]
        decided = next((e for e in evs if e.step is Step.decided), None)
        accepted = next(e for e in evs if e.step is Step.accepted)
        own_reviews = [e for e in evs if e.step is Step.reviewed and e.department == item.department]
        fees = [e for e in evs if e.step is Step.fee_charged]
        suspensions = [e for e in evs if e.step is Step.suspended]
        promise = WT.working_deadline(accepted.occurred_at, item.promised_days)
        if kind != "never_decided":
            assert decided is not None
        if kind not in ("decided_late", "never_decided"):
            assert decided is not None and decided.occurred_at <= promise, (case_id, kind)
        if kind == "skipped_review":
            assert not own_reviews
            if item.joint:
                assert {e.department for e in evs if e.step is Step.reviewed} == set(
                    item.co_departments)
        elif Step.reviewed in item.steps:
            assert len(own_reviews) == 1
        if kind == "decided_late":
            assert decided is not None and decided.occurred_at > promise
        elif kind == "never_decided":
            assert Step.decided not in steps and Step.completed not in steps
        elif kind == "delivered_late":
            assert decided is not None
            delivered = next(e for e in evs if e.step is Step.delivered)
            assert delivered.occurred_at > WT.working_deadline(decided.occurred_at, 10)
        elif kind == "fee_over_standard":
            assert item.fee_standard and len(fees) == 1
            assert Decimal(fees[0].attributes["amount"]) > item.fee_standard
        elif kind == "fee_unauthorized":
            assert item.fee_standard is None and len(fees) == 1
        elif kind == "deny_without_reason":
            assert decided is not None and decided.attributes == {"outcome": "deny"}
        elif kind == "actor_conflict":
            assert decided is not None and own_reviews[0].actor == decided.actor
        elif kind == "unlawful_suspension":
            assert len(suspensions) == 1
            assert suspensions[0].attributes["reason"] not in {"hearing", "expert_review"}
            assert Step.resumed in steps
        elif kind == "repeated_supplement":
            assert steps.count(Step.supplement_requested) == 2
        if kind != "repeated_supplement":
            assert steps.count(Step.supplement_requested) <= 1
        if kind not in ("fee_over_standard", "fee_unauthorized") and fees:
            assert item.fee_standard and Decimal(fees[0].attributes["amount"]) == item.fee_standard


def test_replay_raises_the_planted_alerts_and_none_on_clean_cases(sim: Simulation) -> None:
    engine = build_engine(CATALOG_DIR)
    until = sim.events[-1].occurred_at + timedelta(days=90)
    result = replay(wire(sim.events), engine, until=until)
    assert result.rejected == {}
    assert result.events == len(sim.events)
    raised: dict[str, set[str]] = defaultdict(set)
    for alert in result.alerts:
        if alert.rule in CHECKED_RULES and alert.severity in ("red", "escalated"):
            assert alert.case_id is not None
            raised[alert.case_id].add(alert.rule)
    for case_id, kind in sim.violations.items():
        rule = VIOLATION_RULES[kind]
        expected = {rule} if rule in CHECKED_RULES else set()
        assert raised.get(case_id, set()) == expected, (case_id, kind)
    for case_id in sim.clean_cases:
        assert case_id not in raised, case_id
    # and there is no alert at all of these two rules on a clean case
    clean = set(sim.clean_cases)
    assert not [a for a in result.alerts if a.rule in CHECKED_RULES and a.case_id in clean]


# --- files ------------------------------------------------------------------------------


def test_write_jsonl_and_generate_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sim = generate_file(CATALOG_DIR, path, start=START, cases=30, seed=2, violations=0.2)
    lines = path.read_bytes().splitlines()
    assert lines == wire(sim.events)
    assert [parse_event(line) for line in lines] == sim.events
    assert len(sim.violations) == 6
    other = tmp_path / "again.jsonl"
    assert write_jsonl(sim.events, other) == len(lines)
    assert other.read_bytes() == path.read_bytes()


def test_submissions_spread_over_working_days() -> None:
    sim = simulate(CATALOG, start=START, cases=300, seed=9, violations=0.0, days=3)
    subs = [e.occurred_at.astimezone(TZ).date() for e in sim.events if e.step is Step.submitted]
    assert len(set(subs)) == 3 and min(subs) == START.date()


def test_office_hours_mapping() -> None:
    office = OfficeHours(WT)
    day = office.ceil(START)
    assert office.instant(day) == START
    assert office.instant(day + 3 * 3600 - 1) == START.replace(hour=11, minute=59, second=59)
    assert office.instant(day + 3 * 3600) == START.replace(hour=14)
    assert office.ceil(START.replace(hour=12, minute=30)) == day + 3 * 3600
    assert office.ceil(START.replace(hour=19)) == day + OFFICE_DAY
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=TZ)
    assert office.instant(office.ceil(saturday)) == datetime(2026, 3, 9, 9, 0, tzinfo=TZ)
    assert office.is_open(START) and not office.is_open(saturday)
    assert not office.is_open(START.replace(hour=13))
    half = START.replace(hour=15, minute=30, second=10, microsecond=500_000)
    assert office.instant(office.at_or_before(half)) == half.replace(microsecond=0)
    assert office.at_or_before(START.replace(hour=13)) == office.ceil(START.replace(hour=13))


# --- live mode --------------------------------------------------------------------------


class FakeProducer:
    def __init__(self, clock: SimulatedClock) -> None:
        self.clock = clock
        self.sent: list[tuple[ApprovalEvent, datetime]] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def send(self, event: ApprovalEvent) -> None:
        assert self.started and not self.stopped
        self.sent.append((event, self.clock.now()))

    async def stop(self) -> None:
        self.stopped = True


def test_run_live_sends_steps_when_the_clock_reaches_them() -> None:
    clock = SimulatedClock(START, speed=20_000)
    fake = FakeProducer(clock)
    seen: list[ApprovalEvent] = []
    n = asyncio.run(run_live(SimulatorSettings(), rate=20, duration=1.5, violations=0.2, seed=3,
                             clock=clock, on_event=seen.append, producer=fake,  # type: ignore[arg-type]
                             first_case=1))
    assert fake.started and fake.stopped
    assert n == len(fake.sent) == len(seen) > 10
    times = [ev.occurred_at for ev, _ in fake.sent]
    assert times == sorted(times)
    for ev, at in fake.sent:
        assert ev.occurred_at <= at
    steps = Counter(ev.step for ev, _ in fake.sent)
    assert steps[Step.submitted] > 5 and steps[Step.accepted] > 0
    assert {ev.case_id for ev, _ in fake.sent} >= {"GZ2026-0000001"}


def test_run_live_cancelled_stops_the_producer() -> None:
    clock = SimulatedClock(START, speed=5_000)
    fake = FakeProducer(clock)

    async def main() -> None:
        task = asyncio.create_task(run_live(SimulatorSettings(), rate=50, duration=None, violations=0.1,
                                            seed=1, clock=clock, producer=fake))  # type: ignore[arg-type]
        await wait_for_async(lambda: fake.sent, what="the first events sent")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert fake.started and fake.stopped and fake.sent


def test_run_live_starts_no_case_outside_office_hours() -> None:
    night = datetime(2026, 3, 2, 20, 0, tzinfo=TZ)
    clock = SimulatedClock(night, speed=10)
    fake = FakeProducer(clock)
    n = asyncio.run(run_live(SimulatorSettings(), rate=100, duration=0.3, violations=0.1, seed=1,
                             clock=clock, producer=fake))  # type: ignore[arg-type]
    assert n == 0 and fake.stopped


def test_run_live_bounds_the_cases_in_progress() -> None:
    clock = SimulatedClock(START, speed=1)
    fake = FakeProducer(clock)
    n = asyncio.run(run_live(SimulatorSettings(), rate=200, duration=0.3, violations=0.0, seed=1,
                             clock=clock, producer=fake, max_open_cases=3))  # type: ignore[arg-type]
    assert n == 3 and {ev.step for ev, _ in fake.sent} == {Step.submitted}


# --- item shares and calendar-day limits ------------------------------------------------


def test_items_are_drawn_by_their_volume_share() -> None:
    planner = CasePlanner(CATALOG, WT, seed=3)
    rng = random.Random(3)
    drawn = Counter(planner.pick_item(rng, None).code for _ in range(20_000))
    total = sum(i.volume_share for i in CATALOG.values())
    for code in ("GA-0005", "GT-0003", "GS-0003"):  # the large ones: within 15 % of the share
        expected = 20_000 * CATALOG[code].volume_share / total
        assert abs(drawn[code] - expected) < 0.15 * expected, (code, drawn[code], expected)
    assert drawn["GA-0005"] > 50 * max(drawn["HB-0001"], 1)  # identity cards, not EIA reports
    # a violation is drawn among the items that can carry it, by share too
    fees = Counter(planner.pick_item(rng, "fee_over_standard").code for _ in range(2_000))
    assert set(fees) <= {c for c, i in CATALOG.items() if i.fee_standard}
    assert fees.most_common(1)[0][0] == "GA-0005"


def test_clean_decision_of_a_calendar_day_item_keeps_the_legal_limit_across_a_holiday() -> None:
    # JS-0001: 7 calendar days (建筑法 第八条), promise 3 working days. Accepted on 2026-09-29
    # or -30, the 7th day falls in 国庆 (10-01..10-07) and the limit ends on 10-08, while the
    # promise would end on 10-09 or 10-10 (a 调休 Saturday).
    item = CATALOG["JS-0001"]
    assert (item.legal_days, item.legal_unit, item.promised_days) == (7, "calendar", 3)
    planner = CasePlanner({"JS-0001": item}, WT, seed=11)
    office = planner.office
    submitted = office.ceil(datetime(2026, 9, 29, 9, 0, tzinfo=TZ))
    limit_end = datetime(2026, 10, 9, 0, 0, tzinfo=TZ)
    latest = datetime(2026, 9, 1, tzinfo=TZ)
    for n in range(300):
        case = planner.plan(n, item, submitted, None, random.Random(n))
        decided = [office.instant(d.os) for d in case.drafts if d.step is Step.decided]
        assert decided and decided[0] < limit_end, (n, decided)
        latest = max(latest, decided[0])
    assert latest.date() == date(2026, 10, 8)  # the clamp, not the promise, bounds them
