"""Faults lose nothing: a worker killed mid-stream, Redis down for a while."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jiancha.embedded import EmbeddedStack
from jiancha.rules.catalog import load_catalog
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.factory import build_engine
from jiancha.rules.replay import replay
from jiancha.settings import DEFAULT_CATALOG_DIR
from jiancha.simulator import generate_cases
from tests.integration.conftest import WorkerSpec
from tests.metric_samples import total
from tests.wait import wait_for

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 18, 13, 0, tzinfo=TZ)  # a Wednesday afternoon: nothing due soon


def _history(cases: int, seed: int) -> list:  # type: ignore[type-arg]
    return [e for e in generate_cases(load_catalog(DEFAULT_CATALOG_DIR),
                                      start=NOW - timedelta(days=21), cases=cases, seed=seed,
                                      violations=0.3)
            if e.occurred_at <= NOW]


def _with_bursts(events: list, bursts: int = 8) -> list:  # type: ignore[type-arg]
    """The history with handlers each deciding 21 cases within 9 minutes across a 10-minute
    boundary (actor.burst), on days spread over it: the handlers' counts are in the
    worker's state when it dies."""
    from jiancha.producers.contract import parse_event

    items = [it for it in load_catalog(DEFAULT_CATALOG_DIR).values() if not it.joint]
    out = list(events)
    for b in range(bursts):
        item = items[b % len(items)]
        first = (NOW - timedelta(days=20 - 2 * b)).replace(hour=10, minute=5, second=30)
        for i in range(21):
            decided = first + timedelta(seconds=27 * i)
            for n, (step, when, actor) in enumerate([
                    ("submitted", decided - timedelta(hours=2), "applicant"),
                    ("accepted", decided - timedelta(hours=1), "clerk"),
                    ("decided", decided, f"burst-{b}")]):
                e = {"schema_version": 1, "event_id": f"B{b}-{i}-{n}", "case_id": f"B{b}-{i}",
                     "item_code": item.code, "department": item.department, "step": step,
                     "occurred_at": when.isoformat(), "actor": actor}
                if step == "submitted":
                    e["applicant_id"] = "sha256:burst"
                if step == "decided":
                    e["attributes"] = {"outcome": "grant"}
                out.append(parse_event(e))
    return sorted(out, key=lambda e: e.occurred_at)


def _expected(events: list, until: datetime) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    lines = [json.dumps(e.wire_dict()).encode() for e in events]
    return {(a.alert_id, a.severity)
            for a in replay(lines, build_engine(DEFAULT_CATALOG_DIR), until).alerts}


def _stream_versions(spec: WorkerSpec) -> Counter[tuple[str, str]]:
    return Counter((a["alert_id"], a["severity"]) for a in spec.alerts())


def _settle(spec: WorkerSpec, want: set[tuple[str, str]], timeout: float) -> None:
    """Until the stream holds every wanted alert version and nothing changed for 4 s."""
    end, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < end:
        alerts = spec.alerts()
        if len(alerts) != last:
            last, since = len(alerts), time.monotonic()
        elif time.monotonic() - since > 4 and want <= {(a["alert_id"], a["severity"])
                                                        for a in alerts}:
            return
        time.sleep(0.3)


def _committed(spec: WorkerSpec) -> dict[int, int | None]:
    """The group's committed offset per partition of the events topic (None: nothing)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> dict[int, int | None]:
        consumer = AIOKafkaConsumer(bootstrap_servers=spec.stack.bootstrap,
                                    group_id=spec.app_id, enable_auto_commit=False)
        await consumer.start()
        try:
            return {p: await consumer.committed(TopicPartition(spec.events_topic, p))
                    for p in range(spec.partitions)}
        finally:
            await consumer.stop()

    return asyncio.run(go())


@pytest.mark.parametrize("commits", ["committed", "never_committed"])
def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(stack: EmbeddedStack,
                                                              commits: str) -> None:
    """``never_committed``: the killed worker (and the one beside it) commit every 60 s,
    so no offset of the group is committed when it dies; whoever takes its partitions over
    reads them from the start, and the alerts already written are not written again."""
    events = _with_bursts(_history(cases=2500, seed=5))
    anchor = time.time()
    clock = SimulatedClock(NOW, 1.0, anchor)
    env = {
        "JIANCHA_CATALOG_DIR": str(DEFAULT_CATALOG_DIR),
        "JIANCHA_CLOCK_START": NOW.isoformat(), "JIANCHA_CLOCK_ANCHOR": repr(anchor),
        # small batches: alerts arrive a batch at a time, and a whole fetch (the default)
        # can take in the backlog in one batch before the kill can fall mid-stream
        "JIANCHA_KAFKA_MAX_POLL_RECORDS": "200",
    }
    first_env = dict(env, JIANCHA_KAFKA_COMMIT_INTERVAL_SECONDS="60") \
        if commits == "never_committed" else env
    spec = WorkerSpec(stack, partitions=8, extra_env=first_env)
    spec.backfill(events, clock)
    expected = _expected(events, NOW)
    first = spec.start_worker("w1", wait=False)  # both join the same generation
    second = spec.start_worker("w2", wait=False)
    try:
        first.wait_ready()
        second.wait_ready()
        # kill the first worker once some of the alerts are in, mid-stream
        wait_for(lambda: len(spec.alerts()) >= len(expected) // 4, timeout=60,
                 what="a quarter of the alerts, to kill the first worker mid-stream")
        assert len(spec.alerts()) < len(expected), "too fast to kill mid-stream; grow the history"
        first.proc.kill()  # SIGKILL: no goodbye, no commit, no flush
        if commits == "never_committed":
            assert set(_committed(spec).values()) == {None}, "an offset was committed"
        spec.extra_env = env
        third = spec.start_worker("w3")  # another one joins
        _settle(spec, expected, timeout=120)
        for w in (second, third):
            assert w.proc.proc.poll() is None, f"a worker died:\n{w.proc.log_path.read_text()[-4000:]}"
        versions = _stream_versions(spec)
        doubled = {k: n for k, n in versions.items() if n > 1}
        assert not doubled, f"alerts written twice: {list(doubled)[:5]}"
        got = set(versions)
        status = [w.health().get("partition_status") for w in (second, third)]
        assert expected <= got, f"lost: {sorted(expected - got)[:5]}; partitions: {status}"
        extra = sorted(got - expected)
        rules = {a["alert_id"]: a["rule"] for a in spec.alerts()}
        assert not extra, f"raised although replay does not: {[(rules[a], a, s) for a, s in extra[:5]]}"
        assert len(expected) > 100
        assert sum(rules.get(a) == "actor.burst" for a, _ in expected) == 8
        r = spec.redis()
        assert len(r.keys(f"{spec.prefix}alert:*")) == len({a for a, _ in expected})
    finally:
        for w in (first, second):
            w.stop()
        if "third" in locals():
            third.stop()


def test_redis_outage_delays_alerts_but_loses_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with EmbeddedStack(workdir=tmp_path) as own:
        events = _history(cases=200, seed=9)
        anchor = time.time()
        clock = SimulatedClock(NOW, 1.0, anchor)
        spec = WorkerSpec(own, extra_env={
            "JIANCHA_CATALOG_DIR": str(DEFAULT_CATALOG_DIR),
            "JIANCHA_CLOCK_START": NOW.isoformat(), "JIANCHA_CLOCK_ANCHOR": repr(anchor),
        })
        expected = _expected(events, NOW)
        worker = spec.start_worker()
        try:
            redis_port = own.redis_port
            own.process("redis").stop()
            own.processes = [p for p in own.processes if p.name != "redis"]
            spec.backfill(events, clock)  # alerts pile up while Redis is down
            wait_for(lambda: total(worker.metrics(), "jiancha_sink_errors_total", sink="redis") >= 1,
                     timeout=30, what="the worker failing to store alerts in the stopped Redis")
            assert worker.proc.proc.poll() is None, "the worker died with Redis"
            own.redis_port = redis_port
            own.start_redis()
            _settle(spec, expected, timeout=90)
            versions = _stream_versions(spec)
            assert max(versions.values()) == 1
            assert set(versions) == expected
            assert total(worker.metrics(), "jiancha_sink_errors_total", sink="redis") >= 1
        finally:
            worker.stop()
