"""The worker and replay raise the same alerts on the same events."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jiancha.producers.contract import ApprovalEvent, Step
from jiancha.rules.catalog import load_catalog
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.factory import build_engine
from jiancha.rules.replay import replay
from jiancha.settings import DEFAULT_CATALOG_DIR
from jiancha.simulator import generate_cases
from tests.integration.conftest import WorkerSpec

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


def test_worker_and_replay_raise_the_same_alerts(stack) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 11, 18, 13, 0, tzinfo=TZ)  # a Wednesday afternoon: nothing due soon
    events = _history(now)
    expected = _agree(stack, now, events, [e.occurred_at for e in events])
    assert len(expected) > 50  # the scenario raises plenty of alerts of many rules
    assert len({k[1] for k in expected}) >= 8


def test_worker_and_replay_agree_on_a_file_in_arrival_order(stack) -> None:  # type: ignore[no-untyped-def]
    """Some cases' last step (办结, which no deadline waits for) is reported a day or two
    late, some a few hours late: the file is in arrival order, each line reaching Kafka
    when the replay clock (the latest occurred_at so far) says it was read."""
    now = datetime(2026, 11, 18, 13, 0, tzinfo=TZ)
    rng = random.Random(5)
    arriving = []
    for e in _history(now):
        delay = timedelta(0)
        if e.step is Step.completed:
            delay = timedelta(hours=rng.choice([0, 0, 3, 20, 26, 40]), minutes=rng.randint(0, 59))
        if e.occurred_at + delay <= now:
            arriving.append((e.occurred_at + delay, e))
    arriving.sort(key=lambda pair: pair[0])  # stable: the order they were made in ties
    events = [e for _, e in arriving]
    read_at, latest = [], events[0].occurred_at
    for e in events:
        latest = max(latest, e.occurred_at)
        read_at.append(latest)
    expected = _agree(stack, now, events, read_at)
    late = [k for k in expected if k[1] == "reporting.late"]
    assert len(late) >= 5, late


def test_worker_and_replay_agree_when_events_come_shuffled_and_decisions_late(stack) -> None:  # type: ignore[no-untyped-def]
    """Every event reaches Kafka up to the allowed lateness (10 minutes) after it happened,
    so the file is shuffled within it; decisions come in nightly batches, hours late but
    within the reporting tolerance: reds raised before they came are retracted by them, in
    the worker as in replay, and the final version of every alert is the same."""
    now = datetime(2026, 11, 18, 13, 0, tzinfo=TZ)
    rng = random.Random(7)
    arriving = []
    for e in _history(now):
        delay = timedelta(seconds=rng.randint(0, 600))
        if e.step is Step.decided and rng.random() < 0.5:
            delay = timedelta(hours=rng.randint(1, 20))
        if e.occurred_at + delay <= now:
            arriving.append((e.occurred_at + delay, e))
    arriving.sort(key=lambda pair: pair[0])
    events = [e for _, e in arriving]
    # the worker's input archived with when it reached Kafka (replay's received_at). The
    # worker judges by that time, replay by the latest occurred_at (up to 10 minutes
    # behind): an alert one raised just before its evidence came and retracted, the other
    # may never have raised. Either way nothing stands; what stands must be the same.
    expected = _agree(stack, now, events, [at for at, _ in arriving], archived=True,
                      standing_only=True)
    assert [k for k in expected if k[4] != "retracted"]


def _history(now: datetime) -> list[ApprovalEvent]:
    return [e for e in generate_cases(load_catalog(DEFAULT_CATALOG_DIR),
                                      start=now - timedelta(days=21), cases=150, seed=11,
                                      violations=0.3)
            if e.occurred_at <= now]


def _agree(stack, now: datetime, events: list[ApprovalEvent],  # type: ignore[no-untyped-def]
           read_at: list[datetime], archived: bool = False,
           standing_only: bool = False) -> set[tuple[str, str, str, str, str]]:
    """Send ``events`` (each reaching Kafka at ``read_at``) to a worker started after them,
    replay the same lines (``archived``: with their ``received_at``, else received when
    read), and check that the final version of every alert is the same (returned)."""
    anchor = time.time()
    clock = SimulatedClock(now, 1.0, anchor)
    spec = WorkerSpec(stack, extra_env={
        "JIANCHA_CATALOG_DIR": str(DEFAULT_CATALOG_DIR),
        "JIANCHA_CLOCK_START": now.isoformat(),
        "JIANCHA_CLOCK_ANCHOR": repr(anchor),
    })
    # the whole history is in Kafka before the worker starts: it catches up on a backlog,
    # judging each event as of its record time (a backfill that arrives while the worker is
    # caught up is late data as far as the live clock knows, and is judged so)
    spec.backfill(events, clock, read_at)
    worker = spec.start_worker()
    try:
        stable_since, last = time.monotonic(), -1
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # until every event is processed and nothing new
            n = len(spec.alerts())
            if n != last:
                last, stable_since = n, time.monotonic()
            elif time.monotonic() - stable_since > 3 and _ingested(worker) >= len(events):
                break
            time.sleep(0.5)
        lines = [json.dumps({**e.wire_dict(), **({"received_at": at.isoformat()} if archived
                                                 else {})}).encode()
                 for e, at in zip(events, read_at, strict=True)]
        engine = build_engine(DEFAULT_CATALOG_DIR)
        expected = _final(a.model_dump(mode="json")
                          for a in replay(lines, engine, clock.now() - timedelta(seconds=5)).alerts)
        got = _final(spec.alerts())
        assert _ingested(worker) == len(events)
        if standing_only:
            retracted = [k for k in expected if k[4] == "retracted"]
            assert retracted, "replay retracted nothing: the late decisions proved nothing wrong"
            expected = {k for k in expected if k[4] != "retracted"}
            got = {k for k in got if k[4] != "retracted"}
        assert got == expected, (sorted(got - expected)[:10], sorted(expected - got)[:10])
        return expected
    finally:
        worker.stop()


def _final(versions: Iterable[dict]) -> set[tuple[str, str, str, str, str]]:  # type: ignore[type-arg]
    """The last version of each alert (replay's and the stream's are in the order made)."""
    last = {a["alert_id"]: a for a in versions}
    return {(a["alert_id"], a["rule"], a["severity"], a["event_time"], a["status"])
            for a in last.values()}


def _ingested(worker) -> float:  # type: ignore[no-untyped-def]
    return sum(float(line.rsplit(" ", 1)[1]) for line in worker.metrics().splitlines()
               if line.startswith("jiancha_events_ingested_total{"))
