"""Window rules (rules/windows.py): a sliding count of each handler's decisions (more
than N within any M minutes), tumbling department windows aligned to local time, judged
once the clock passes their end plus the allowed lateness; silence fires with no event."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from jiancha.producers.contract import Alert, make_alert_id
from jiancha.rules.factory import build_engine
from jiancha.rules.replay import replay
from jiancha.rules.windows import (
    BURST,
    DENIAL,
    SILENT,
    WindowRecord,
    WindowRules,
    WindowTracker,
    burst_add,
    dept_add,
)
from tests.unit.eventkit import TEST_CATALOG, engine

TZ = ZoneInfo("Asia/Shanghai")


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def rules() -> WindowRules:
    e = engine()
    return WindowRules(e.ruleset, e.working_time, e.catalog.departments)


_n = iter(range(1, 10**9))


def rec(when: str | datetime, step: str = "decided", *, dept: str = "gongan", actor: str = "h1",
        case: str | None = None, refused: bool = False) -> WindowRecord:
    at = t(when) if isinstance(when, str) else when
    n = next(_n)
    return WindowRecord(f"e{n}", case or f"C{n}", dept, actor, step, at.timestamp(), refused)


def feed(tracker: WindowTracker, records: list[WindowRecord]) -> list:
    alerts = []
    for r in sorted(records, key=lambda r: r.at):
        alerts += tracker.observe(r, datetime.fromtimestamp(r.at, TZ))
    return alerts


# --- window arithmetic ------------------------------------------------------------------


def test_windows_are_aligned_to_local_time() -> None:
    r = rules()
    ten = 600.0
    assert r.window_start(t("2026-11-02 10:09:59").timestamp(), ten) == t("2026-11-02 10:00").timestamp()
    assert r.window_start(t("2026-11-02 10:10:00").timestamp(), ten) == t("2026-11-02 10:10").timestamp()
    day = 86_400.0
    # a day window runs 00:00-24:00 Asia/Shanghai, not UTC (08:00 local)
    assert r.window_start(t("2026-11-02 07:59").timestamp(), day) == t("2026-11-02 00:00").timestamp()
    assert r.window_start(t("2026-11-02 23:59:59").timestamp(), day) == t("2026-11-02 00:00").timestamp()
    assert r.window_start(t("2026-11-03 00:00").timestamp(), day) == t("2026-11-03 00:00").timestamp()


def test_window_values_are_small_and_deduplicate_records() -> None:
    a = rec("2026-11-02 10:00", case="X")
    v = burst_add(burst_add(None, a), a)  # forwarded again after a takeover: held once
    assert v == {"q": [[a.at, "X", a.event_id]]}
    d = dept_add(dept_add(None, rec("2026-11-02 10:00", "submitted")),
                 rec("2026-11-02 10:01", "rejected_at_intake", refused=True))
    assert (d["n"], d["d"], d["r"], len(d["e"])) == (2, 1, 1, 1)


# --- actor.burst: more than N decisions within any M minutes ------------------------------


def decisions(first: str | datetime, n: int, every: float, **kw: Any) -> list[WindowRecord]:
    """``n`` decisions ``every`` seconds from ``first``, each of its own case."""
    start = t(first) if isinstance(first, str) else first
    return [rec(start + timedelta(seconds=every * i), **kw) for i in range(n)]


def bursts(records: list[WindowRecord], tracker: WindowTracker | None = None,
           until: str = "2026-11-03 00:00") -> list[Alert]:
    """The burst alerts of records taken in time order, the clock then moved to ``until``."""
    tracker = tracker or WindowTracker(rules())
    alerts = feed(tracker, records) + tracker.advance(t(until))
    return [a for a in alerts if a.rule == BURST]


def rules_with(**params: Any) -> WindowRules:
    e = engine()
    rs = e.ruleset.model_copy(deep=True)
    rs.rules[BURST].params.update(params)
    return WindowRules(rs, e.working_time, e.catalog.departments)


def test_a_burst_across_a_clock_boundary_is_found_once_final() -> None:
    # 21 decisions in 9 minutes, 10:05:30-10:14:30: 10 before 10:10 and 11 after
    records = decisions("2026-11-02 10:05:30", 21, 27)
    tracker = WindowTracker(rules())
    assert feed(tracker, records) == []
    # counted once final: the 21st decision plus the allowed lateness (10 minutes)
    assert tracker.advance(t("2026-11-02 10:24:29")) == []
    alerts = tracker.advance(t("2026-11-02 10:24:30"))
    assert [a.rule for a in alerts] == [BURST]
    a = alerts[0]
    assert a.severity == "yellow" and a.department == "gongan" and a.actor == "h1"
    assert a.case_id is None
    # its event time: the decision that took the count above the limit
    assert a.event_time == t("2026-11-02 10:14:30") and a.detected_at == t("2026-11-02 10:24:30")
    assert a.details["count"] == 21 and a.details["limit"] == 20 and a.details["minutes"] == 10
    assert a.details["window_start"] == t("2026-11-02 10:05:30").isoformat()
    assert a.details["window_end"] == t("2026-11-02 10:14:30").isoformat()
    assert a.evidence == [r.event_id for r in records]
    assert "10:05–10:14" in a.message_zh and "21" in a.message_zh
    assert "h1" in a.message_en and "?" not in a.message_zh + a.message_en
    # deterministic id: rule + handler + that instant
    again = bursts(decisions("2026-11-02 10:05:30", 21, 27))
    assert [x.alert_id for x in again] == [a.alert_id]
    assert a.alert_id == make_alert_id(BURST, "gongan/h1", t("2026-11-02 10:14:30").isoformat())


@pytest.mark.parametrize(("n", "seconds", "found"), [
    (20, 599, False),  # exactly the limit within 10 minutes
    (21, 599, True),  # one more
    (21, 600, False),  # 21 decisions over 10 minutes: no 10 minutes hold them all
    (21, 0, True),  # all at one instant
])
def test_more_than_the_limit_within_the_minutes(n: int, seconds: float, found: bool) -> None:
    every = seconds / (n - 1)
    assert len(bursts(decisions("2026-11-02 10:00", n, every))) == found


@pytest.mark.parametrize(("every", "found"), [(30.0, False), (29.9, True)])
def test_a_steady_spread_of_the_limit_per_window_is_no_burst(every: float, found: bool) -> None:
    # 20 decisions in every 10 minutes for three hours; a little faster is one long burst
    alerts = bursts(decisions("2026-11-02 09:00", 360, every))
    assert [a.event_time for a in alerts] == ([t("2026-11-02 09:00") + timedelta(seconds=20 * every)]
                                             if found else [])


def test_a_long_burst_raises_one_alert_and_a_later_one_another() -> None:
    tracker = WindowTracker(rules())
    first = decisions("2026-11-02 10:00", 180, 10)  # half an hour at six a minute
    second = decisions("2026-11-02 11:00", 25, 5)
    alerts = bursts(first + second, tracker)
    assert [a.event_time for a in alerts] == [t("2026-11-02 10:03:20"), t("2026-11-02 11:01:40")]
    assert len({a.alert_id for a in alerts}) == 2
    # bounded: a handler idle for the minutes (and the allowed lateness) is dropped
    assert tracker.burst == {}


def test_a_handler_keeps_at_most_the_limit_plus_one_counted_decisions() -> None:
    tracker = WindowTracker(rules())
    sizes = []
    for r in decisions("2026-11-02 10:00", 600, 2):  # 20 minutes at 30 a minute
        tracker.observe(r, datetime.fromtimestamp(r.at, TZ))
        value = tracker.burst["gongan/h1"]
        sizes.append((len(value.get("k", [])), len(value.get("q", []))))
    assert max(k for k, _ in sizes) == 21
    assert max(q for _, q in sizes) <= 301  # the decisions of the allowed lateness: 10 min / 2 s
    assert tracker.advance(t("2026-11-02 10:50")) == [] and tracker.burst == {}


def test_repeated_decisions_of_one_case_count_once() -> None:
    records = [rec(t("2026-11-02 10:00") + timedelta(seconds=10 * i), case=f"K{i % 5}")
               for i in range(30)]
    # 20 cases, then the first of them decided again: still 20 cases
    records += decisions("2026-11-02 12:00", 20, 10)
    records.append(rec("2026-11-02 12:04", case=records[-20].case_id))
    assert bursts(records) == []


def test_decisions_of_other_handlers_do_not_count() -> None:
    records = [rec(t("2026-11-02 11:00") + timedelta(seconds=10 * i), actor=f"h{i % 2}")
               for i in range(30)]
    records += [rec(t("2026-11-02 11:00") + timedelta(seconds=10 * i), dept=d, actor="h3")
                for i, d in enumerate(["gongan", "gongshang"] * 15)]
    assert bursts(records) == []


def _arriving(records: list[WindowRecord], seed: int, within: float = 599.0,
              ) -> list[tuple[WindowRecord, datetime]]:
    """Each record arriving up to ``within`` seconds after it happened, in arrival order."""
    import random

    rnd = random.Random(seed)
    arrivals = sorted(((r.at + rnd.uniform(0, within), i, r) for i, r in enumerate(records)))
    return [(r, datetime.fromtimestamp(at, TZ)) for at, _, r in arrivals]


def _dump(alerts: list[Alert]) -> list[str]:
    return [a.model_dump_json() for a in alerts]


@pytest.mark.parametrize("seed", range(5))
def test_decisions_out_of_order_within_the_lateness_are_counted_in_event_time(seed: int) -> None:
    # 22 decisions: the first comes last, after the 22nd. Counted as they came, the 22nd
    # would take the count above 20; in event time it is the 21st.
    records = decisions("2026-11-02 10:00", 22, 20) + decisions("2026-11-02 10:30", 40, 14)
    records += decisions("2026-11-02 10:00", 30, 19, actor="h2")
    expected = bursts(records)
    assert [a.event_time for a in expected if a.actor == "h1"] == [
        t("2026-11-02 10:06:40"), t("2026-11-02 10:34:40")]
    tracker = WindowTracker(rules())
    arrivals = [(records[0], t("2026-11-02 10:09:59"))] + [
        x for x in _arriving(records[1:], seed) if x[0] is not records[0]]
    got = []
    for r, now in arrivals:
        got += tracker.observe(r, now)
    got += tracker.advance(t("2026-11-03 00:00"))
    assert tracker.late == 0
    got.sort(key=lambda a: (a.event_time, a.alert_id))
    expected.sort(key=lambda a: (a.event_time, a.alert_id))
    assert _dump([a.model_copy(update={"detected_at": None}) for a in got]) == \
        _dump([a.model_copy(update={"detected_at": None}) for a in expected])


def test_a_decision_after_the_allowed_lateness_is_late_and_left_out() -> None:
    tracker = WindowTracker(rules())
    feed(tracker, decisions("2026-11-02 10:00", 20, 20))  # 10:00-10:06:20
    assert tracker.observe(rec("2026-11-02 10:05"), t("2026-11-02 10:15")) == []
    assert tracker.late == 1
    assert tracker.advance(t("2026-11-03 00:00")) == []
    # within the allowed lateness it counts: the 21st decision in event time is 10:06:20
    tracker = WindowTracker(rules())
    feed(tracker, decisions("2026-11-02 10:00", 20, 20))
    assert tracker.observe(rec("2026-11-02 10:05"), t("2026-11-02 10:14:59")) == []
    assert tracker.advance(t("2026-11-02 10:16:19")) == []
    assert [a.event_time for a in tracker.advance(t("2026-11-02 10:16:20"))] == [
        t("2026-11-02 10:06:20")]


def _brute_force_bursts(records: list[WindowRecord], size: float, limit: int) -> list[tuple[str, float]]:
    """The definition, decision by decision: a decision is *over* when the cases its
    handler decided less than ``size`` seconds before it and with it number more than
    ``limit``; a burst starts at an over decision unless an earlier one came less than
    ``size`` seconds before it."""
    out = []
    for handler in sorted({r.handler for r in records}):
        mine = sorted((r.at, r.case_id, r.event_id) for r in records if r.handler == handler)
        over = [at for i, (at, _, _) in enumerate(mine)
                if len({c for a, c, _ in mine[:i + 1] if at - a < size}) > limit]
        out += [(handler, at) for i, at in enumerate(over) if i == 0 or at - over[i - 1] >= size]
    return sorted(out, key=lambda x: (x[1], x[0]))


@pytest.mark.parametrize("seed", range(30))
def test_the_sliding_count_agrees_with_the_definition(seed: int) -> None:
    import random

    rnd = random.Random(seed)
    r = rules_with(max_decisions=4, window_minutes=5)
    start = t("2026-11-02 09:00").timestamp()
    records = []
    span = rnd.choice([1800, 7200])  # one decision every 15 s to every 6 min per handler
    for k in range(rnd.randint(20, 120)):
        at = start + rnd.choice([rnd.uniform(0, span), float(rnd.randrange(0, span, 30))])
        case = f"C{rnd.randrange(60)}" if rnd.random() < 0.2 else f"D{k}"
        records.append(WindowRecord(f"e{k}", case, "gongan", f"h{rnd.randrange(3)}", "decided", at))
    tracker = WindowTracker(r)
    alerts = []
    clock = []
    for x, now in _arriving(records, seed, within=rnd.choice([0.0, 120.0, 599.0])):
        alerts += tracker.observe(x, now)
        clock.append(now)
    alerts += tracker.advance(t("2026-11-03 00:00"))
    clock.append(t("2026-11-03 00:00"))
    got = sorted((a.event_time, f"{a.department}/{a.actor}", a.detected_at) for a in alerts)
    # each raised as soon as the clock passed its decision plus the allowed lateness
    expected = []
    for handler, at in _brute_force_bursts(records, 300.0, 4):
        final = datetime.fromtimestamp(at, TZ) + timedelta(minutes=10)
        expected.append((datetime.fromtimestamp(at, TZ), handler, min(c for c in clock if c >= final)))
    assert got == sorted(expected)
    assert tracker.late == 0 and tracker.burst == {}


def test_a_handlers_value_is_json_and_counts_the_same_in_any_steps() -> None:
    """The worker keeps a handler's value in a table (JSON) and counts it on its own timer."""
    r = rules()
    records = decisions("2026-11-02 10:00", 25, 15) + decisions("2026-11-02 10:40", 30, 12)
    expected = bursts(records)
    value: dict[str, Any] = {}
    got: list[Alert] = []
    for i, x in enumerate(records):
        value = orjson.loads(orjson.dumps(burst_add(value, x)))
        if i % 7 == 6:
            now = datetime.fromtimestamp(x.at, TZ)
            got += r.burst_advance(x.handler, value, x.at, now)
    end = t("2026-11-03 00:00")
    got += r.burst_advance("gongan/h1", value, end.timestamp(), end)
    assert r.burst_next(value) is None and value == {}
    assert [(a.alert_id, a.evidence, a.details) for a in got] == [
        (a.alert_id, a.evidence, a.details) for a in expected]


def test_a_decision_already_counted_past_is_late_in_the_worker() -> None:
    """A record forwarded again after a takeover keeps its time of arrival; its
    department's decisions counted past it (``bc`` in the worker's state) make it late."""
    r = rules()
    at = t("2026-11-02 10:00").timestamp()
    assert not r.burst_late(at, at + 599)
    assert r.burst_late(at, at + 600)
    assert r.burst_late(at, at + 1, final=at + 600) and not r.burst_late(at, at + 1, final=at + 599)


def test_the_minutes_need_not_divide_a_day_but_a_department_window_must() -> None:
    r = rules_with(window_minutes=7)
    assert len(bursts(decisions("2026-11-02 10:05", 21, 20), WindowTracker(r))) == 1  # 6:40
    assert bursts(decisions("2026-11-02 10:05", 21, 21), WindowTracker(r)) == []  # 7:00
    e = engine()
    rs = e.ruleset.model_copy(deep=True)
    rs.rules[DENIAL].params["window_hours"] = 7
    with pytest.raises(ValueError, match="divide a day"):
        WindowRules(rs, e.working_time)


def test_sharded_replay_finds_the_same_bursts() -> None:
    from jiancha.rules.replay_parallel import replay_parallel
    from tests.unit.eventkit import events

    evs = []
    for item, actor, first, n, every in [("T-SIMPLE", "h1", "2026-11-02 10:05:30", 21, 27),
                                         ("T-SIMPLE", "h2", "2026-11-02 10:00", 20, 20),
                                         ("T-FEE", "h1", "2026-11-02 14:00", 40, 10),
                                         ("T-JOINT", "h9", "2026-11-03 09:58", 30, 15)]:
        for when in [t(first) + timedelta(seconds=every * i) for i in range(n)]:
            evs += events(item, [("submitted", f"{when - timedelta(hours=1):%Y-%m-%d %H:%M:%S}"),
                                 ("accepted", f"{when - timedelta(minutes=30):%Y-%m-%d %H:%M:%S}"),
                                 ("decided", f"{when:%Y-%m-%d %H:%M:%S}", {"actor": actor})])
    evs.sort(key=lambda e: e["occurred_at"])
    lines = [orjson.dumps(e) for e in evs]
    eng = build_engine(TEST_CATALOG)
    until = t("2026-11-30 00:00")
    single = replay(lines, eng, until)
    found = sorted((a.department, a.actor, a.event_time) for a in single.alerts if a.rule == BURST)
    assert found == [("gongan", "h1", t("2026-11-02 10:14:30")),
                     ("gongshang", "h1", t("2026-11-02 14:03:20")),
                     ("jianshe", "h9", t("2026-11-03 10:03:00"))]
    for workers in (2, 3):
        sharded = replay_parallel(lines, eng, until, workers=workers)
        assert _dump(sharded.alerts) == _dump(single.alerts)


# --- department.denial_spike ---------------------------------------------------------------


def _day(date: str, decisions: int, refusals: int, dept: str = "gongan") -> list[WindowRecord]:
    out = []
    for i in range(decisions):
        at = t(f"{date} 09:00") + timedelta(minutes=7 * i)
        out.append(rec(at, "decided", dept=dept, actor=f"h{i % 9}", refused=i < refusals))
    return out


def _workdays(first: str, n: int) -> list[str]:
    wt = engine().working_time
    day, out = t(f"{first} 00:00").date(), []
    while len(out) < n:
        if wt.is_workday(day):
            out.append(day.isoformat())
        day += timedelta(1)
    return out


def test_denial_spike_against_the_departments_own_baseline() -> None:
    tracker = WindowTracker(rules())
    days = _workdays("2026-10-12", 11)
    records = [r for d in days[:10] for r in _day(d, 10, 1)]  # baseline: 100 decisions, 10 % refused
    records += _day(days[10], 24, 12)  # 50 % > max(3 x 10 %, 10 % + 25 points)
    alerts = feed(tracker, records)
    assert alerts == []
    end = t(f"{days[10]} 00:00") + timedelta(days=1)
    assert tracker.advance(end + timedelta(minutes=9)) == []
    alerts = tracker.advance(end + timedelta(minutes=10))
    assert [a.rule for a in alerts] == [DENIAL]
    a = alerts[0]
    assert a.event_time == t(f"{days[10]} 00:00") and a.department == "gongan"
    assert a.details["refused"] == 12 and a.details["decisions"] == 24
    assert a.details["baseline"] == 0.1 and a.details["baseline_decisions"] == 100
    assert len(a.evidence) == 12 and "50" in a.message_zh
    # bounded history: only the windows a baseline needs
    hist = tracker.state["gongan"]["h"]
    assert len(hist) <= tracker.rules.cfg.history_windows and tracker.dept == {}


@pytest.mark.parametrize(("decisions", "refusals", "baseline_days"), [
    (19, 15, 10),  # too few decisions in the window
    (24, 8, 10),  # 33 %: above 3 x 10 % but not above 10 % + 25 points
    (24, 12, 4),  # baseline of 40 decisions: too thin to judge
])
def test_no_denial_spike(decisions: int, refusals: int, baseline_days: int) -> None:
    tracker = WindowTracker(rules())
    days = _workdays("2026-10-12", baseline_days + 1)
    records = [r for d in days[:baseline_days] for r in _day(d, 10, 1)]
    records += _day(days[-1], decisions, refusals)
    feed(tracker, records)
    assert [a for a in tracker.advance(t("2026-12-31 00:00")) if a.rule == DENIAL] == []


# --- department.silent -----------------------------------------------------------------------


def _busy(days: list[str], per_day: int = 30, dept: str = "gongan") -> list[WindowRecord]:
    """Steady traffic in office hours (09:00-12:00, 14:00-18:00)."""
    out = []
    for d in days:
        for i in range(per_day):
            minute = (i * 7 * 60) // per_day  # spread over the 7 office hours
            hour = 9 + minute // 60 if minute < 180 else 14 + (minute - 180) // 60
            out.append(rec(t(f"{d} {hour:02d}:{minute % 60:02d}"), "submitted", dept=dept, actor="applicant"))
    return out


def test_silence_due_counts_office_hours_on_working_days() -> None:
    r = rules()
    due = lambda s: datetime.fromtimestamp(r.silence_due(t(s).timestamp()), TZ)  # noqa: E731
    assert due("2026-11-02 09:30") == t("2026-11-02 15:30")  # 2.5 h before lunch, 1.5 h after
    assert due("2026-11-02 17:00") == t("2026-11-03 12:00")  # overnight
    assert due("2026-11-06 16:00") == t("2026-11-09 11:00")  # Friday -> Monday
    assert due("2026-11-07 10:00") == t("2026-11-09 15:00")  # from a Saturday: Monday's 4 hours
    # National Day 2026: Oct 1-7 off, Sat Oct 10 is a make-up working day
    assert due("2026-09-30 17:30") == t("2026-10-08 14:30")
    assert due("2026-10-09 16:00") == t("2026-10-10 11:00")


def test_a_silent_department_fires_without_any_event() -> None:
    tracker = WindowTracker(rules())
    days = _workdays("2026-10-12", 11)
    alerts = feed(tracker, _busy(days))  # ~4.3 events per office hour
    assert [a for a in alerts if a.rule == SILENT] == []
    last = max(r.at for r in _busy(days[-1:]))
    last_at = datetime.fromtimestamp(last, TZ)
    due = datetime.fromtimestamp(tracker.rules.silence_due(last), TZ)
    # nothing more arrives: only the clock moves
    assert tracker.advance(due + timedelta(minutes=9)) == []
    alerts = tracker.advance(due + timedelta(minutes=10))
    assert [a.rule for a in alerts] == [SILENT]
    a = alerts[0]
    assert a.event_time == due and a.department == "gongan" and a.severity == "yellow"
    assert a.details["last_event_at"] == last_at.isoformat()
    assert a.details["rate"] >= 2 and "4" in a.message_zh
    # one alert per silence
    assert tracker.advance(due + timedelta(days=3)) == []


def test_an_event_before_the_silence_is_due_resets_it() -> None:
    tracker = WindowTracker(rules())
    days = _workdays("2026-10-12", 11)
    feed(tracker, _busy(days))
    last = max(r.at for r in _busy(days[-1:]))
    due = datetime.fromtimestamp(tracker.rules.silence_due(last), TZ)
    one_more = rec(due - timedelta(minutes=30), "submitted", actor="applicant")
    assert [a for a in tracker.observe(one_more, due - timedelta(minutes=30)) if a.rule == SILENT] == []
    assert tracker.advance(due + timedelta(minutes=10)) == []
    later = datetime.fromtimestamp(tracker.rules.silence_due(one_more.at), TZ)
    assert [a.rule for a in tracker.advance(later + timedelta(minutes=10))] == [SILENT]


def test_a_small_department_is_not_silent() -> None:
    tracker = WindowTracker(rules())
    days = _workdays("2026-10-12", 11)
    feed(tracker, _busy(days, per_day=10))  # 1.4 per office hour < 2
    assert tracker.advance(t("2026-12-01 00:00")) == []


def test_replay_raises_silence_at_until_with_no_event(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.unit.eventkit import events

    days = _workdays("2026-10-12", 11)
    evs = []
    for d in days:
        for i in range(16):  # 16 cases a day, submitted + accepted: 32 events, ~4.6 per office hour
            hour = 9 + (i % 3) if i < 8 else 14 + (i % 4)
            minute = (i * 7) % 60
            evs += events("T-SIMPLE", [("submitted", f"{d} {hour:02d}:{minute:02d}"),
                                       ("accepted", f"{d} {hour:02d}:{minute + 1:02d}")])
    evs.sort(key=lambda e: e["occurred_at"])
    lines = [orjson.dumps(e) for e in evs]
    eng = build_engine(TEST_CATALOG)
    last = max(datetime.fromisoformat(e["occurred_at"]) for e in evs)
    until_quiet = last + timedelta(hours=1)
    assert not [a for a in replay(lines, eng, until_quiet).alerts if a.rule == SILENT]
    alerts = [a for a in replay(lines, eng, t("2026-11-30 00:00")).alerts if a.rule == SILENT]
    assert [a.department for a in alerts] == ["gongan"]
    assert replay(lines, eng, t("2026-11-30 00:00"), windows=False).alerts == [
        a for a in replay(lines, eng, t("2026-11-30 00:00")).alerts if a.rule != SILENT]


def test_silence_does_not_depend_on_the_order_events_arrive_in() -> None:
    """The worker reads a department's events from independent partitions: out of order.
    Spans plus a low watermark find the same silences as events in time order."""
    import random

    from jiancha.rules.windows import span_add

    r = rules()
    days = _workdays("2026-10-12", 14)
    records = _busy(days[:11]) + _busy(days[12:], per_day=6)  # a quiet day, then sparse traffic
    tracker = WindowTracker(r)
    in_order = [a for a in feed(tracker, records) if a.rule == SILENT]
    in_order += [a for a in tracker.advance(t("2026-11-05 00:00")) if a.rule == SILENT]
    history = tracker.state["gongan"]["h"]
    assert len(in_order) >= 2

    shuffled = records[:]
    random.Random(4).shuffle(shuffled)
    spans: list = []
    for rec_ in shuffled:
        spans = span_add(spans, rec_.at, rec_.event_id, r.merge_seconds)
    last, spans, _, found = r.silence_advance(None, spans, 0, t("2026-11-05 00:00").timestamp())
    got = [r.judge_silence("gongan", at, eid, history, t("2026-11-05 00:00")) for at, eid in found]
    assert [a.alert_id for a in got if a is not None] == [a.alert_id for a in in_order]
    assert spans == [] and last == (max(x.at for x in records),
                                    max(x.event_id for x in records if x.at == last[0]))


def test_span_add_merges_close_events_in_any_order() -> None:
    from jiancha.rules.windows import span_add

    times = [(100.0, "a"), (130.0, "b"), (500.0, "c"), (160.0, "d"), (1000.0, "e"), (470.0, "f")]
    spans: list = []
    for at, eid in times:
        spans = span_add(spans, at, eid, 60.0)
    assert spans == [[100.0, "a", 160.0, "d"], [470.0, "f", 500.0, "c"], [1000.0, "e", 1000.0, "e"]]
    again: list = []
    for at, eid in reversed(times):
        again = span_add(again, at, eid, 60.0)
    assert again == spans
    # a bridge joins two spans
    assert span_add([*spans], 220.0, "g", 60.0)[0] == [100.0, "a", 220.0, "g"]
    assert span_add([*spans], 280.0, "h", 60.0)[:2] == [[100.0, "a", 160.0, "d"], [280.0, "h", 280.0, "h"]]
    assert span_add(spans, 280.0, "h", 60.0) is spans  # in place


def _span_add_by_scan(spans: list, at: float, event_id: str, merge: float) -> list:
    """The plain definition: every span compared with the new event, in order."""
    new = [at, event_id, at, event_id]
    out, placed = [], False
    for sp in spans:
        if sp[2] + merge < new[0]:
            out.append(sp)
        elif new[2] + merge < sp[0]:
            if not placed:
                out.append(new)
                placed = True
            out.append(sp)
        else:
            if (sp[0], sp[1]) < (new[0], new[1]):
                new[0], new[1] = sp[0], sp[1]
            if (sp[2], sp[3]) > (new[2], new[3]):
                new[2], new[3] = sp[2], sp[3]
    if not placed:
        out.append(new)
    return out


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("in_order", [False, True])
def test_span_add_looks_only_around_the_event_and_agrees_with_the_scan(seed: int,
                                                                       in_order: bool) -> None:
    """In any order; and mostly in time order (events at or after the last span's end, at
    its very time, within ``merge`` of it or just beyond), as a feed mostly comes."""
    import random

    from jiancha.rules.windows import span_add, spans_after

    rnd = random.Random(seed)
    fast: list = []
    slow: list = []
    clock = 0.0
    for i in range(300):
        if in_order and rnd.random() < 0.9:
            clock += rnd.choice([0.0, 0.0, 30.0, 59.5, 60.0, 60.5, 61.0, 400.0])
            at = clock
        else:
            at = float(rnd.choice([rnd.randrange(0, 20_000), rnd.randrange(0, 20_000) + 0.5]))
        eid = f"e{rnd.randrange(50):02d}-{i}"
        fast = span_add(fast, at, eid, 60.0)
        slow = _span_add_by_scan(slow, at, eid, 60.0)
        assert fast == slow
        cut = float(rnd.randrange(0, 20_000))
        assert spans_after(fast, cut) == [sp for sp in slow if sp[2] > cut]


@pytest.mark.parametrize("seed", range(5))
def test_silence_due_in_epoch_arithmetic_agrees_with_the_datetime_walk(seed: int) -> None:
    import random

    r = rules()
    rnd = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    for _ in range(400):
        at = start + rnd.uniform(0, 3 * 365 * 86400)
        if rnd.random() < 0.3:  # on the minute, as events often are
            at = at // 60 * 60
        fixed = r._silence_due_fixed(at, 8 * 3600)
        assert abs(fixed - r._silence_due_zoned(at)) < 1e-6, datetime.fromtimestamp(at)
        assert r.silence_due(at) == fixed


@pytest.mark.parametrize("seed", range(3))
def test_the_silence_floor_is_never_after_the_due_instant(seed: int) -> None:
    """The tracker schedules a silence check at ``silence_due_floor`` and computes the due
    instant only then: a floor after it would judge the silence late."""
    import random

    r = rules()
    rnd = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=TZ).timestamp()
    for _ in range(400):
        at = start + rnd.uniform(0, 3 * 365 * 86400)
        if rnd.random() < 0.5:  # inside office hours on the minute: due = at + the hours
            at = datetime.fromtimestamp(at, TZ).replace(hour=9, minute=rnd.randrange(60),
                                                        second=0, microsecond=0).timestamp()
        assert r.silence_due_floor(at) <= r.silence_due(at)


def test_silence_alerts_do_not_depend_on_when_the_tracker_checks() -> None:
    """The tracker skips checks the floor rules out; stepping the clock minute by minute
    (a chance to check at every step) finds the same silences, each within a minute of its
    due instant plus the allowed lateness (never later, as a floor past it would make it)."""
    r = rules()
    base = t("2026-11-02 08:00")
    records = [rec(base + timedelta(minutes=m), dept="gongan", step="accepted")
               for m in list(range(0, 600, 3)) + list(range(1500, 1800, 2)) + [4000, 4003, 9000]]
    plain = WindowTracker(r)
    alerts = feed(plain, records)
    alerts += plain.advance(base + timedelta(days=10))
    stepped = WindowTracker(r)
    stepped_alerts = []
    minute = 0
    for x in records:
        now = datetime.fromtimestamp(x.at, TZ)
        while base + timedelta(minutes=minute) < now:
            stepped_alerts += stepped.advance(base + timedelta(minutes=minute))
            minute += 1
        stepped_alerts += stepped.observe(x, now)
    stepped_alerts += stepped.advance(base + timedelta(days=10))
    assert [a.alert_id for a in alerts] == [a.alert_id for a in stepped_alerts]
    # the silences due while the clock was stepped (the last one waits for the end)
    stepped_until = records[-1].at
    silences = [a for a in stepped_alerts if a.rule == SILENT
                and a.event_time.timestamp() + r.cfg.lateness < stepped_until]
    assert silences
    for a in silences:
        late = (a.detected_at - a.event_time).total_seconds() - r.cfg.lateness
        assert 0 <= late < 60, a


def test_a_facts_window_fields_are_its_events() -> None:
    """The worker and replay build a window record from the accepted event's fact: the
    same fields as from the event itself (refusals, applicant steps, offsets kept)."""
    from datetime import UTC

    from jiancha.producers.contract import ApprovalEvent, Step, parse_event
    from jiancha.rules.case import Fact
    from jiancha.rules.windows import fact_fields
    from jiancha.simulator import generate_cases

    def event_fields(ev: ApprovalEvent) -> list:  # the record as the event itself says it
        refused = ev.step is Step.rejected_at_intake or (
            ev.step is Step.decided and ev.attributes.get("outcome") == "deny")
        return [ev.event_id, ev.case_id, ev.department, ev.effective_actor, ev.step.value,
                ev.occurred_at.timestamp(), refused]

    eng = engine()
    evs = generate_cases(eng.catalog, start=datetime(2026, 3, 2, tzinfo=UTC), cases=400, seed=5,
                         violations=0.3)
    refused = {**evs[1].wire_dict(), "event_id": "refusal-1", "step": "rejected_at_intake",
               "attributes": {"reason": "incomplete"}}
    steps = set()
    for wire in [*(ev.wire_dict() for ev in evs), refused]:
        ev = parse_event(wire)
        fact = Fact.from_event(ev, ev.occurred_at)
        assert fact_fields(ev.case_id, fact) == event_fields(ev)
        assert type(fact_fields(ev.case_id, fact)[4]) is str
        steps.add((ev.step.value, event_fields(ev)[6]))
    assert ("decided", True) in steps and ("rejected_at_intake", True) in steps
    assert ("decided", False) in steps and ("submitted", False) in steps
