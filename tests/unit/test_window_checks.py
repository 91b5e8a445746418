"""The window tracker checks a department's silence by the floor of its first open span,
not as each span becomes final (``WindowRules.silence_next``): against a tracker that
checks every span as it becomes final, the same alerts at the same detected times, on
random feeds with late and out-of-order records and quiet spells."""

from __future__ import annotations

import dataclasses
import heapq
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from jiancha.producers.contract import Alert
from jiancha.rules.windows import _NEVER, SILENT, WindowRecord, WindowRules, WindowTracker
from tests.unit.test_windows import TZ, rules, t

BASE = t("2026-11-02 08:00")  # a Monday


class EachSpanTracker(WindowTracker):
    """A silence check at every span's end plus the allowed lateness (the oracle)."""

    def _schedule(self, dept: str, now: float) -> None:
        st_ = self.state_of(dept)
        last = st_.get("L")
        r = self.rules
        times = []
        if last is not None and st_.get("s", 0) < last[0]:
            floor = r.silence_due_floor(last[0]) + r.cfg.lateness
            times.append(floor if floor > now else r.silence_due(last[0]) + r.cfg.lateness)
        spans = self.spans.get(dept)
        if spans:
            times.append(spans[0][2] + r.cfg.lateness)
        nxt = min(times) if times else None
        if nxt is not None and nxt < self._scheduled.get(dept, _NEVER):
            self._scheduled[dept] = nxt
            heapq.heappush(self._silence, (nxt, dept))

    def observe(self, rec: WindowRecord, now: datetime, t: float | None = None) -> list[Alert]:
        t = now.timestamp() if t is None else t
        alerts = self.advance(now, t) if self.may_be_due(t) else []
        self.flow.observe(self._store, rec, t)
        if self._scheduled.get(rec.department, _NEVER) > rec.at + self.rules.cfg.lateness:
            last = self.state_of(rec.department).get("L")
            if last is None or rec.at > last[0]:
                self._schedule(rec.department, t)
        return alerts


def _rules() -> WindowRules:
    r = rules()
    r.cfg = dataclasses.replace(r.cfg, min_events_per_hour=0.0)  # any department may be silent
    return r


@st.composite
def feed(draw: st.DrawFn) -> list[tuple[float, WindowRecord | None]]:
    """(clock, record) in the order a replay meets them: the clock is the latest event time
    so far; some records are late (behind it); None: the clock moves with no record."""
    out: list[tuple[float, WindowRecord | None]] = []
    clock = BASE.timestamp()
    for n in range(draw(st.integers(1, 60))):
        gap = draw(st.one_of(st.integers(0, 5), st.integers(5, 60), st.integers(200, 3000)))
        clock += gap * 60
        dept = draw(st.sampled_from(["gongan", "gongshang"]))
        at = clock - draw(st.sampled_from([0, 0, 0, 1, 5, 9, 11, 30, 300])) * 60
        earlier = [r.at for _, r in out if r is not None and r.department == dept]
        if earlier and draw(st.integers(0, 4)) == 0:  # late, at the time of an earlier one
            at = draw(st.sampled_from(earlier))
        if draw(st.integers(0, 9)) == 0:
            out.append((clock, None))
        else:
            out.append((clock, WindowRecord(f"e{n:02d}", f"C{n}", dept, "h1", "accepted", at)))
    out.append((clock + 10 * 86_400, None))
    return out


def _run(tracker: WindowTracker, events: list[tuple[float, WindowRecord | None]]) -> list[Alert]:
    alerts: list[Alert] = []
    for clock, record in events:
        now = datetime.fromtimestamp(clock, TZ)
        if record is not None:
            alerts += tracker.observe(record, now, clock)
        if tracker.may_be_due(clock):  # as replay does after every line
            alerts += tracker.advance(now, clock)
    return alerts


@settings(max_examples=300, deadline=None)
@given(feed())
def test_checking_by_the_floor_finds_what_checking_every_span_finds(events) -> None:  # type: ignore[no-untyped-def]
    r = _rules()
    got = _run(WindowTracker(r), events)
    expected = _run(EachSpanTracker(r), events)
    # the same alerts, detected at the same instants; several departments' silences found
    # at one instant may come in another order (replay sorts its alerts)
    assert sorted(a.to_json() for a in got) == sorted(a.to_json() for a in expected)


def test_the_random_feeds_find_silences() -> None:
    """The property above is not vacuous: a quiet spell in such a feed is a silence (and
    so is the end of the feed)."""
    r = _rules()
    events: list[tuple[float, WindowRecord | None]] = []
    at = BASE.timestamp()
    for n in range(20):
        at += (5 if n != 10 else 2000) * 60
        events.append((at, WindowRecord(f"e{n}", f"C{n}", "gongan", "h1", "accepted", at)))
    events.append((at + 10 * 86_400, None))
    found = [a for a in _run(WindowTracker(r), events) if a.rule == SILENT]
    assert len(found) == 2 and found == [a for a in _run(EachSpanTracker(r), events)
                                         if a.rule == SILENT]


def test_a_late_record_at_the_last_final_events_time_is_left_out_as_before() -> None:
    """A record behind the department's last final event is left out of the spans, though
    no check has taken that event in yet: the silence after it names that event."""
    r = _rules()
    at = BASE.timestamp()
    events: list[tuple[float, WindowRecord | None]] = [
        (at, WindowRecord("e1", "C1", "gongan", "h1", "accepted", at)),
        (at + 900, None),  # its span is final (the allowed lateness has passed)
        (at + 900, WindowRecord("e2", "C2", "gongan", "h1", "accepted", at)),  # late, same time
        (at + 10 * 86_400, None),
    ]
    for tracker in (WindowTracker(r), EachSpanTracker(r)):
        silences = [a for a in _run(tracker, events) if a.rule == SILENT]
        assert [a.evidence for a in silences] == [["e1"]]
