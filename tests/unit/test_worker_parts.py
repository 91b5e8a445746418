"""The worker's parts (agents/parts.py) and its extension host, each built on plain fakes
of its ports: a clock the test sets, partitions whose offsets the test chooses, a dict
for the case table. The real Faust, Kafka and Redis are the integration tests'."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson

from jiancha.agents.extensions import Extension, ExtensionHost
from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.parts import (
    BatchIntake,
    DeadlineTimer,
    FinishedSweep,
    LagReporter,
    PartitionLag,
    PartitionWatchdog,
    WebEndpoints,
)
from jiancha.agents.record import Record
from jiancha.agents.supervisor import Supervisor
from jiancha.producers.contract import Alert, ApprovalEvent
from jiancha.rules.case import CaseState
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.ingest import Gate
from jiancha.rules.state_codec import decode_state
from tests.unit.eventkit import engine, events, t


class FakeClock:
    """The time is what the test says."""

    def __init__(self, instant: datetime) -> None:
        self.instant = instant

    def now(self) -> datetime:
        return self.instant

    def at(self, unix_time: float) -> datetime:
        return datetime.fromtimestamp(unix_time, UTC)

    def at_epoch(self, unix_time: float) -> float:
        return unix_time

    def now_epoch(self) -> float:
        return self.instant.timestamp()


class FakeSink:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.degraded: str | None = None

    async def publish(self, alerts: list[Alert]) -> list[str]:
        self.alerts.extend(alerts)
        return ["new"] * len(alerts)

    async def close(self) -> None:
        pass


@dataclass
class FakePartitions:
    """Partition 0 of the events topic, its offsets as the test sets them."""

    topic: str = "events"
    rebalancing: bool = False
    assigned: set[int] = field(default_factory=lambda: {0})
    ends: dict[int, int] = field(default_factory=dict)  # what the last fetch reported
    broker: dict[int, int] = field(default_factory=dict)  # what the broker has now
    commits: dict[int, int] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    restarts: list[tuple[int, int]] = field(default_factory=list)

    def active(self) -> set[int]:
        return set(self.assigned)

    def end(self, partition: int) -> int | None:
        return self.ends.get(partition)

    def committed(self, partition: int) -> int | None:
        return self.commits.get(partition)

    async def broker_ends(self, partitions: list[int]) -> dict[int, int] | None:
        return {p: self.broker[p] for p in partitions if p in self.broker}

    async def position(self, partition: int) -> int | None:
        return self.positions.get(partition)

    async def restart(self, partition: int, offset: int) -> None:
        self.restarts.append((partition, offset))


@dataclass
class FakeCases:
    data: dict[bytes, bytes] = field(default_factory=dict)

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


class Worker:
    """A supervisor on the fakes, with one T-SHORT case submitted and accepted at 11:00 and
    taken in at 12:00 on partition 0 (offsets 0 and 1)."""

    def __init__(self) -> None:
        eng = engine()
        self.clock = FakeClock(t("2026-03-02 12:00"))
        self.sink = FakeSink()
        self.metrics = EngineMetrics()
        self.sv = Supervisor(eng, Gate(eng.catalog), self.clock, self.sink, self.metrics)
        self.sv.rebuild_index([], {0})
        self.cases = FakeCases()
        self.partitions = FakePartitions()
        self.lag = PartitionLag(self.sv, self.partitions)
        self.timer = DeadlineTimer(self.sv, self.cases, self.lag, self.write)
        self.intake = BatchIntake(self.sv, self.cases, self.write, self.dead_letter,
                                  on_due=self.timer.due)
        evs = events("T-SHORT", [("submitted", "2026-03-02 10:00"),
                                 ("accepted", "2026-03-02 11:00")], case_id="P1")
        records = [Record(b"P1", orjson.dumps(e), 0, n, None) for n, e in enumerate(evs)]
        asyncio.run(self.intake.on_batch(records))

    def write(self, key: bytes, value: bytes, partition: int) -> None:
        self.cases.data[key] = value

    async def dead_letter(self, *args: Any) -> None:
        raise AssertionError(args)


def test_the_batch_intake_writes_the_case_and_counts_the_offsets() -> None:
    w = Worker()
    assert decode_state(w.cases.data[b"P1"], b"P1").case_id == "P1"
    assert w.sv.last_offset == {0: 1} and w.sv.processed == 2


def test_the_deadline_index_holds_the_tables_own_keys() -> None:
    """A case id is held once: the index is keyed by the key object the table keeps, after
    an event and after the index is rebuilt from the table."""
    w = Worker()
    (key,) = w.cases.data
    assert w.sv.index(0).get(b"P1").at is not None
    assert all(k is key for k in w.sv.index(0)._entries)
    w.sv.rebuild_index(((k, decode_state(v, k)) for k, v in w.cases.data.items()), {0})
    assert len(w.sv.index(0)) == 1 and all(k is key for k in w.sv.index(0)._entries)


def test_the_deadline_timer_fires_due_deadlines_by_the_clock_once() -> None:
    w = Worker()
    w.partitions.ends[0] = w.partitions.broker[0] = 2  # caught up: live, by the clock
    asyncio.run(w.timer.tick())
    assert w.sink.alerts == []  # nothing due at 12:00
    before = w.cases.data[b"P1"]
    w.clock.instant = t("2026-06-30 12:00")  # every deadline of the case is past
    asyncio.run(w.timer.tick())
    fired = list(w.sink.alerts)
    assert fired and {a.case_id for a in fired} == {"P1"}
    assert w.cases.data[b"P1"] != before  # the state records them
    asyncio.run(w.timer.tick())
    assert w.sink.alerts == fired  # not again


def test_the_deadline_timer_judges_a_partition_with_a_backlog_by_its_last_event() -> None:
    w = Worker()
    w.clock.instant = t("2026-06-30 12:00")
    w.partitions.ends[0] = 50  # records 2..49 not processed yet: the case's later steps may be there
    asyncio.run(w.timer.tick())
    assert w.sink.alerts == []
    # the last fetch says caught up, the broker has more since: still behind
    w.partitions.ends[0], w.partitions.broker[0] = 2, 50
    asyncio.run(w.timer.tick())
    assert w.sink.alerts == []
    w.partitions.broker[0] = 2
    asyncio.run(w.timer.tick())
    assert w.sink.alerts


def _another_case_at(w: Worker, instant: datetime, offset: int) -> None:
    """A step of another case taken in on partition 0 with the clock at ``instant``: the
    partition's time moves there."""
    w.clock.instant = instant
    case = f"Q{offset}"
    e = events("T-SHORT", [("submitted", instant.strftime("%Y-%m-%d %H:%M"))], case_id=case)[0]
    asyncio.run(w.intake.on_batch([Record(case.encode(), orjson.dumps(e), 0, offset, None)]))


def _lateness_count(w: Worker) -> float:
    return w.metrics.registry.get_sample_value("jiancha_deadline_lateness_seconds_count") or 0


def test_a_partition_caught_up_with_its_fetch_is_judged_by_its_last_event_and_live() -> None:
    """Events that came after the last fetch wait: the deadlines fire by the time of the
    partition's latest event, and how late they are is measured (a live partition with
    events always on the way is never confirmed caught up by the broker)."""
    w = Worker()
    _another_case_at(w, t("2026-06-30 12:00"), 2)  # every deadline of P1 is past by now
    w.partitions.ends[0], w.partitions.broker[0] = 3, 9
    w.clock.instant = t("2026-06-30 12:05")
    asyncio.run(w.timer.tick())
    assert {a.case_id for a in w.sink.alerts} == {"P1"}
    assert _lateness_count(w) == 1  # one case fired


def test_the_lateness_of_a_partition_working_through_a_backlog_is_not_the_timers() -> None:
    w = Worker()
    _another_case_at(w, t("2026-06-30 12:00"), 2)
    w.partitions.ends[0] = w.partitions.broker[0] = 50  # its last fetch reported more
    asyncio.run(w.timer.tick())
    assert w.sink.alerts and _lateness_count(w) == 0


def _behind_the_brokers_end(w: Worker, reading: datetime) -> None:
    """A tick by the clock at ``reading`` finds partition 0 behind the broker's end: two
    records (offsets 2 and 3) on the way, nothing fired."""
    w.clock.instant = reading
    w.partitions.ends[0], w.partitions.broker[0] = 2, 4
    asyncio.run(w.timer.tick())
    assert w.sink.alerts == []
    w.partitions.ends[0] = 4
    w.clock.instant = reading + timedelta(seconds=1)


def _on_the_way(w: Worker, offset: int, sent: datetime) -> None:
    """The record at ``offset``: a step of another case, its record stamped ``sent``."""
    case = f"Q{offset}"
    e = events("T-SHORT", [("submitted", "2026-03-02 10:00")], case_id=case)[0]
    asyncio.run(w.intake.on_batch([Record(case.encode(), orjson.dumps(e), 0, offset,
                                          sent.timestamp())]))


def test_a_partition_behind_the_brokers_end_is_judged_by_the_ticks_reading_once_at_it(
        ) -> None:
    """A tick by the clock found the partition behind the broker's end (records on the
    way): its deadlines wait. Once its events processed reach that end, every record that
    was in when the tick read the clock is in: the deadlines due by that reading fire then,
    though no event is past them (on a quiet partition the next may be long in coming)."""
    w = Worker()
    w.timer.tick_seconds = 60.0  # live: its latest event within a minute of the reading
    due = w.clock.instant + timedelta(seconds=cast(float, w.sv.seconds_to_next_due()))
    reading = due + timedelta(seconds=10)  # P1's first deadline fell due 10 s before
    _behind_the_brokers_end(w, reading)
    _on_the_way(w, 2, due - timedelta(seconds=20))  # both sent before the deadline
    assert not w.timer.woken.is_set()  # one still on the way
    asyncio.run(w.timer.tick_by_events())
    assert w.sink.alerts == []
    _on_the_way(w, 3, due - timedelta(seconds=10))  # the end the tick was told
    assert w.timer.woken.is_set()
    asyncio.run(w.timer.tick_by_events())
    assert {a.case_id for a in w.sink.alerts} == {"P1"}
    assert {a.detected_at for a in w.sink.alerts} == {reading}
    assert w.sv.partition_ts[0] == (due - timedelta(seconds=10)).timestamp()


def test_a_partition_taking_in_a_backfill_is_not_judged_by_a_ticks_reading() -> None:
    """Records sent after a tick's reading may tell of steps before it when they are a
    backfill (records stamped with the times the steps happened): a partition whose events
    are not within a tick of the reading when they reach the broker's end waits for its
    events' time."""
    w = Worker()
    w.timer.tick_seconds = 60.0
    _behind_the_brokers_end(w, t("2026-06-30 12:00"))  # every deadline of P1 is past
    _on_the_way(w, 2, t("2026-03-02 12:10"))
    _on_the_way(w, 3, t("2026-03-02 12:20"))
    asyncio.run(w.timer.tick_by_events())
    assert not w.timer.woken.is_set() and w.sink.alerts == []


def test_a_batch_that_moves_a_partition_past_a_deadline_wakes_the_timer() -> None:
    w = Worker()
    _another_case_at(w, t("2026-03-02 12:30"), 2)
    assert not w.timer.woken.is_set()  # P1 has nothing due by 12:30
    _another_case_at(w, t("2026-06-30 12:00"), 3)
    assert w.timer.woken.is_set()


def test_the_timer_waits_a_tick_or_until_the_next_deadline_if_sooner() -> None:
    w = Worker()
    w.timer.tick_seconds = 5.0
    due = w.sv.seconds_to_next_due()
    assert due is not None and due > 5.0  # by the fake clock (speed 1), days ahead
    assert w.timer.pause() == 5.0
    w.timer.tick_seconds = 10 * due
    assert w.timer.pause() == due
    w.clock.instant = t("2026-06-30 12:00")  # past every deadline, none looked at: at once
    assert w.timer.pause() == 0.0
    w.partitions.ends[0], w.partitions.broker[0] = 2, 9  # events on the way: nothing fires
    asyncio.run(w.timer.tick())
    assert w.sink.alerts == []
    # looked at: they wait for the partition's time (a batch wakes the timer), or a tick
    assert w.sv.seconds_to_next_due() is None and w.timer.pause() == 10 * due


def test_a_deadline_that_fell_due_while_a_tick_ran_is_looked_at_at_once() -> None:
    w = Worker()
    w.timer.tick_seconds = 5.0
    w.partitions.ends[0] = w.partitions.broker[0] = 2
    due = w.clock.instant + timedelta(seconds=cast(float, w.sv.seconds_to_next_due()))
    w.clock.instant = due - timedelta(seconds=1)
    asyncio.run(w.timer.tick())  # began just before it: nothing due yet
    assert w.sink.alerts == []
    w.clock.instant = due + timedelta(seconds=1)  # the tick took a while
    assert w.timer.pause() == 0.0


def test_the_timer_fires_a_deadline_when_it_falls_due_not_at_the_next_tick() -> None:
    w = Worker()
    w.partitions.ends[0] = w.partitions.broker[0] = 2
    due = w.clock.instant + timedelta(seconds=cast(float, w.sv.seconds_to_next_due()))
    speed = 3600.0  # the deadline falls due 0.2 s of real time from now
    w.sv.clock = SimulatedClock(due - timedelta(seconds=0.2 * speed), speed)
    w.timer.tick_seconds = 60.0

    async def run() -> float:
        started = time.monotonic()
        timer = asyncio.create_task(w.timer.run())
        while not w.sink.alerts and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
        timer.cancel()
        return time.monotonic() - started

    assert asyncio.run(run()) < 5 and w.sink.alerts  # not after a whole tick (60 s)
    assert _lateness_count(w) >= 1


def test_the_tick_asks_the_broker_before_it_holds_the_case_lock() -> None:
    """The round trip to the broker does not hold up batches of events."""
    w = Worker()
    w.partitions.ends[0] = w.partitions.broker[0] = 2
    held: list[bool] = []
    ask = w.partitions.broker_ends

    async def broker_ends(partitions: list[int]) -> dict[int, int] | None:
        held.append(w.sv.case_lock.locked())
        return await ask(partitions)

    w.partitions.broker_ends = broker_ends  # type: ignore[method-assign]
    w.clock.instant = t("2026-06-30 12:00")
    asyncio.run(w.timer.tick())
    assert held == [False] and w.sink.alerts


def test_a_batch_past_a_deadline_while_the_tick_asks_the_broker_fires_it_without_the_answer(
        ) -> None:
    """The tick by the clock waits for the broker's end offsets; a batch that moves the
    partition's time past a deadline meanwhile has it fired by that time, before the
    broker answers (its round trip is not added to how late the deadline fires)."""
    w = Worker()
    w.partitions.ends[0] = 50  # a backlog: the clock's tick will not fire P1
    answer = asyncio.Event()
    ask = w.partitions.broker_ends

    async def slow_broker_ends(partitions: list[int]) -> dict[int, int] | None:
        await answer.wait()
        return await ask(partitions)

    w.partitions.broker_ends = slow_broker_ends  # type: ignore[method-assign]
    later = t("2026-06-30 12:00")  # past every deadline of P1
    q = events("T-SHORT", [("submitted", "2026-06-30 12:00")], case_id="Q2")[0]

    async def go() -> tuple[bool, set[str | None]]:
        tick = asyncio.create_task(w.timer.tick())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not tick.done() and not w.sink.alerts  # asking the broker
        w.clock.instant = later
        await w.intake.on_batch([Record(b"Q2", orjson.dumps(q), 0, 2, None)])
        for _ in range(50):
            await asyncio.sleep(0)
            if w.sink.alerts:
                break
        fired_before_answer = {a.case_id for a in w.sink.alerts}
        answer.set()
        await asyncio.wait_for(tick, 1)
        return tick.done(), fired_before_answer

    done, fired = asyncio.run(go())
    assert done and fired == {"P1"}


def test_the_alerts_and_the_steps_of_their_cases_are_stored_at_the_same_time() -> None:
    """The case mirror's round trip does not wait for the alerts' (nor the reverse)."""
    w = Worker()
    mirrored = asyncio.Event()
    publish = w.sink.publish

    async def sink_publish(alerts: list[Alert]) -> list[str]:
        await asyncio.wait_for(mirrored.wait(), 2.0)  # the mirror is under way meanwhile
        return await publish(alerts)

    async def mirror(states: Any) -> None:
        assert {s.case_id for s in states} == {"P1"}
        mirrored.set()

    w.sink.publish = sink_publish  # type: ignore[method-assign]
    w.sv.case_mirror = mirror
    w.partitions.ends[0] = w.partitions.broker[0] = 2
    w.clock.instant = t("2026-06-30 12:00")
    asyncio.run(w.timer.tick())
    assert w.sink.alerts and mirrored.is_set()


def test_the_deadline_timer_waits_out_a_rebalance() -> None:
    w = Worker()
    w.clock.instant = t("2026-06-30 12:00")
    w.partitions.ends[0] = w.partitions.broker[0] = 2
    w.partitions.rebalancing = True
    asyncio.run(w.timer.tick())
    assert w.sink.alerts == []


def test_a_partition_taken_over_is_lagging_until_processing_reaches_its_end() -> None:
    w = Worker()
    lag, parts = w.lag, w.partitions
    assert lag.lagging(0)  # no end known yet
    parts.ends[0] = 2
    assert not lag.lagging(0)
    w.sv.last_offset.clear()  # nothing processed since the assignment: the committed offset
    assert lag.lagging(0)
    parts.commits[0] = 2
    assert not lag.lagging(0)


def test_the_watchdog_restarts_a_partition_that_delivers_nothing() -> None:
    w = Worker()
    now = [100.0]
    dog = PartitionWatchdog(w.sv, w.partitions, w.metrics, monotonic=lambda: now[0],
                            stuck_after=10.0)
    w.sv.last_offset.clear()  # nothing delivered since the assignment
    w.partitions.ends[0], w.partitions.commits[0] = 7, 3
    dog.assigned({0})
    now[0] = 105.0
    asyncio.run(dog.check())
    assert w.partitions.restarts == []  # not stuck for long enough
    now[0] = 111.0
    asyncio.run(dog.check())
    assert w.partitions.restarts == [(0, 3)]
    assert w.metrics.registry.get_sample_value("jiancha_partition_restarts_total") == 1
    asyncio.run(dog.check())  # the clock starts again from the restart
    assert w.partitions.restarts == [(0, 3)]
    now[0] = 130.0
    w.partitions.commits[0] = 7  # nothing left to deliver
    asyncio.run(dog.check())
    assert w.partitions.restarts == [(0, 3)]


def test_the_sweep_removes_finished_cases_past_their_retention() -> None:
    w = Worker()
    evs = events("T-SHORT", [("submitted", "2026-03-01 09:00"), ("withdrawn", "2026-03-01 10:00")],
                 case_id="DONE")
    records = [Record(b"DONE", orjson.dumps(e), 0, 2 + n, None) for n, e in enumerate(evs)]
    asyncio.run(w.intake.on_batch(records))
    deleted: list[tuple[bytes, int]] = []
    sweep = FinishedSweep(w.sv, w.cases, w.partitions, lambda k, p: deleted.append((k, p)),
                          retention_seconds=0.0)
    asyncio.run(sweep.sweep())
    assert deleted == [(b"DONE", 0)]  # the open case P1 stays


class FakeOpenAlerts:
    async def open_counts(self, departments: list[str]) -> list[int]:
        return [len(d) for d in departments]


def test_the_reporter_sets_the_lag_and_the_open_alerts() -> None:
    w = Worker()
    w.partitions.ends[0], w.partitions.positions[0] = 10, 7
    asyncio.run(LagReporter(w.sv, w.partitions, w.metrics, FakeOpenAlerts()).observe())
    registry = w.metrics.registry
    assert registry.get_sample_value("jiancha_consumer_lag",
                                     {"topic": "events", "partition": "0"}) == 3
    assert registry.get_sample_value("jiancha_open_alerts", {"department": "gongan"}) == 6


def test_the_health_endpoint_reports_degraded_when_the_alert_store_is() -> None:
    w = Worker()
    w.partitions.ends[0] = 2
    endpoints = WebEndpoints(w.sv, w.cases, w.partitions, w.lag, w.sink, w.metrics.registry)
    health = endpoints.health()
    assert health["status"] == "ok" and health["alert_store"] == "ok" and health["ready"]
    assert health["cases"] == 1 and health["partitions"] == [0]
    assert health["partition_status"]["0"]["lagging"] is False
    w.sink.degraded = "ConnectionError: refused"
    health = endpoints.health()
    assert health["status"] == "degraded" and health["alert_store"] == "ConnectionError: refused"
    w.partitions.rebalancing = True
    assert endpoints.health()["ready"] is False
    assert endpoints.progress()["events"] == 2
    assert b"jiancha_events" in endpoints.metrics()


def test_the_health_endpoint_reports_degraded_after_a_check_raised() -> None:
    w = Worker()
    w.sv.engine.check_errors["some.rule"] = 1
    try:
        health = WebEndpoints(w.sv, w.cases, w.partitions, w.lag, w.sink,
                              w.metrics.registry).health()
    finally:
        w.sv.engine.check_errors.clear()
    assert health["status"] == "degraded" and health["check_errors"] == {"some.rule": 1}


class Counting(Extension):
    """Overrides two hooks only."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.complaints: list[tuple[str | None, str | None, float]] = []
        self.installed: list[Any] = []

    def install(self, app: Any) -> None:
        self.installed.append(app)

    def on_event(self, event: ApprovalEvent, state: CaseState, alerts: list[Alert],
                 now: datetime) -> None:
        self.events.append(event.case_id)

    def on_complaint(self, department: str | None, item_code: str | None,
                     received_at: float) -> None:
        self.complaints.append((department, item_code, received_at))


class Off(Counting):
    active = False


def test_the_host_calls_the_hooks_an_extension_overrides_and_nothing_else() -> None:
    w = Worker()  # P1 taken in before the extension: not seen
    host = ExtensionHost()
    on, off = Counting(), Off()
    host.add(on)
    host.add(off)
    app = object()
    host.install(app, w.sv)  # type: ignore[arg-type]
    assert on.installed == [app] and off.installed == []
    assert w.sv.forwarders == [] and w.sv.alert_observers == []  # not overridden: not called
    evs = events("T-SHORT", [("submitted", "2026-03-02 11:30")], case_id="P2")
    asyncio.run(w.intake.on_batch([Record(b"P2", orjson.dumps(evs[0]), 0, 2, None)]))
    assert on.events == ["P2"] and off.events == []
    host.complaint_seen("gongan", "T-SHORT", 1.0)
    assert on.complaints == [("gongan", "T-SHORT", 1.0)] and off.complaints == []


def test_the_deadline_timer_judges_ahead_and_the_tick_stores_it_when_it_falls_due() -> None:
    plain, early = Worker(), Worker()
    for w in (plain, early):
        w.partitions.ends[0] = w.partitions.broker[0] = 2
    due = plain.sv.index(0).get(b"P1").at
    assert due is not None
    early.timer.ahead_seconds = due - early.clock.now_epoch() + 1
    stored = dict(early.cases.data)
    assert asyncio.run(early.timer.judge_ahead()) == 1
    assert early.sink.alerts == [] and early.cases.data == stored and len(early.sv.ahead) == 1
    assert asyncio.run(early.timer.judge_ahead()) == 0  # held already
    for w in (plain, early):
        w.clock.instant = datetime.fromtimestamp(due, w.clock.instant.tzinfo)
        asyncio.run(w.timer.tick())
    assert plain.sink.alerts and early.sink.alerts == plain.sink.alerts
    assert early.cases.data == plain.cases.data and len(early.sv.ahead) == 0


def test_the_deadline_timer_judges_ahead_from_a_partitions_own_time_while_it_lags() -> None:
    """A partition caught up with its fetch is judged ahead from the clock; one with a
    backlog from the time of its latest event (what the clock says is due waits for its
    events)."""
    w = Worker()
    due = w.sv.index(0).get(b"P1").at
    assert due is not None
    events_time = w.sv.partition_ts[0]
    w.clock.instant = datetime.fromtimestamp(due - 60, UTC)  # the clock: a minute before
    w.timer.ahead_seconds = (due - events_time) / 2
    w.partitions.ends[0] = 50  # a backlog
    assert asyncio.run(w.timer.judge_ahead()) == 0
    w.partitions.ends[0] = 2  # caught up
    w.clock.instant = datetime.fromtimestamp(due, UTC)
    assert asyncio.run(w.timer.judge_ahead()) == 0  # due already: the tick's
    w.clock.instant = datetime.fromtimestamp(due - 60, UTC)
    assert asyncio.run(w.timer.judge_ahead()) == 1
    w.sv.rebuild_index(((k, decode_state(v, k)) for k, v in w.cases.data.items()), {0})
    assert len(w.sv.ahead) == 0  # after a rebalance the cases may be another worker's
    w.timer.ahead_seconds = 0.0
    assert asyncio.run(w.timer.judge_ahead()) == 0


def test_a_batch_past_a_deadline_fires_it_by_the_partitions_time_without_asking_the_broker(
        ) -> None:
    """Woken by a batch that moved a partition's time past a deadline, the timer fires it
    by that time at once: the events up to it are in. The clock's tick, which asks the
    broker whether the partition is caught up, comes when it is due."""
    w = Worker()
    asked: list[list[int]] = []
    broker_ends = w.partitions.broker_ends

    async def counted(partitions: list[int]) -> dict[int, int] | None:
        asked.append(partitions)
        return await broker_ends(partitions)

    w.partitions.broker_ends = counted  # type: ignore[method-assign]
    w.partitions.ends[0] = 50  # a backlog: judged by its events' time
    w.timer.looked_at = w.clock.now_epoch()  # a tick by the clock just ran
    _another_case_at(w, t("2026-06-30 12:00"), 2)  # past every deadline of P1
    w.clock.instant = t("2026-03-02 12:00")
    w.timer.looked_at = w.clock.now_epoch()
    assert w.timer.by_events and w.timer.woken.is_set()

    async def one_round() -> None:
        task = asyncio.create_task(w.timer.run())
        for _ in range(50):
            await asyncio.sleep(0)
            if w.sink.alerts:
                break
        task.cancel()

    asyncio.run(one_round())
    assert {a.case_id for a in w.sink.alerts} == {"P1"} and asked == []


def test_a_batch_waits_for_the_due_alerts_of_its_cases_a_tick_is_storing_others_go_on() -> None:
    """A tick stores due alerts after it lets go of the case lock, its cases in flight: a
    batch of other cases goes on meanwhile; one with an event of a case in flight waits
    until its alerts are stored and its state written, and then sees that state."""
    w = Worker()
    w.partitions.ends[0] = w.partitions.broker[0] = 2
    release = asyncio.Event()
    publish = w.sink.publish
    calls: list[int] = []

    async def held(alerts: list[Alert]) -> list[str]:
        calls.append(len(alerts))
        if len(calls) == 1:  # the tick's store waits until the test lets it go
            await release.wait()
        return await publish(alerts)

    w.sink.publish = held  # type: ignore[method-assign]
    later = t("2026-06-30 12:00")
    w.clock.instant = later
    p1 = events("T-SHORT", [("submitted", "2026-03-02 10:00"), ("accepted", "2026-03-02 11:00"),
                            ("withdrawn", "2026-06-30 12:00")], case_id="P1")[2]
    q = events("T-SHORT", [("submitted", "2026-06-30 12:00")], case_id="Q7")[0]

    async def go() -> None:
        tick = asyncio.create_task(w.timer.tick())
        for _ in range(20):
            await asyncio.sleep(0)
        assert set(w.sv.in_flight) == {b"P1"} and not w.sink.alerts
        await asyncio.wait_for(w.intake.on_batch([Record(b"Q7", orjson.dumps(q), 0, 2, None)]), 1)
        assert b"Q7" in w.cases.data  # another case: not held up
        of_p1 = asyncio.create_task(
            w.intake.on_batch([Record(b"P1", orjson.dumps(p1), 0, 3, None)]))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not of_p1.done()  # waits for the tick's store
        release.set()
        await asyncio.wait_for(asyncio.gather(tick, of_p1), 1)

    asyncio.run(go())
    fired = {a.alert_id for a in w.sink.alerts if a.case_id == "P1"}
    state = decode_state(w.cases.data[b"P1"], b"P1")
    assert fired and fired <= set(state.raised)  # the tick's alerts recorded, and then
    assert [f.step for f in state.facts][-1] == "withdrawn"  # the event added to that state
    assert w.sv.in_flight == {}


class PreparingSink(FakeSink):
    """A sink that prepares what it sends (``agents.sinks.types.PreparingAlertSink``)."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[str] = []
        self.given: list[list[Any]] = []

    def prepare(self, alert: Alert) -> str:
        self.made.append(alert.alert_id)
        return f"sent:{alert.alert_id}"

    async def publish(self, alerts: list[Alert], prepared: list[Any] | None = None
                      ) -> list[str]:
        self.given.append(list(prepared or [None] * len(alerts)))
        return await super().publish(alerts)


def test_what_storing_a_case_judged_ahead_sends_is_made_ahead_too() -> None:
    """The sink's and the case mirror's work for the alerts of a case judged ahead is done
    then, not when the instant comes."""
    w = Worker()
    w.sv.sink = sink = PreparingSink()
    mirrored: list[dict[str, bytes] | None] = []

    class Mirror:
        def payload(self, state: CaseState) -> bytes:
            return f"steps:{state.case_id}".encode()

        async def __call__(self, states: Any, payloads: dict[str, bytes] | None = None) -> None:
            mirrored.append(payloads)

    w.sv.case_mirror = Mirror()
    w.partitions.ends[0] = w.partitions.broker[0] = 2
    due = w.sv.index(0).get(b"P1").at
    assert due is not None
    w.timer.ahead_seconds = due - w.clock.now_epoch() + 1
    assert asyncio.run(w.timer.judge_ahead()) == 1
    made = list(sink.made)
    assert made and sink.given == []  # made ahead, nothing sent yet
    w.clock.instant = datetime.fromtimestamp(due, w.clock.instant.tzinfo)
    asyncio.run(w.timer.tick())
    assert sink.made == made  # nothing made again when it fell due
    assert sink.given == [[f"sent:{a}" for a in made]]
    assert [a.alert_id for a in sink.alerts] == made
    assert mirrored == [{"P1": b"steps:P1"}]
