"""Producer -> Tansu broker -> jiancha worker -> Redis, end to end, with real servers."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta

import orjson
import pytest

from jiancha.rules.clock import SimulatedClock
from tests.events import at, case, event
from tests.metric_samples import samples, total
from tests.wait import wait_for

pytestmark = pytest.mark.integration

GONGSHANG_KEY = b"k-gongshang-2026"
CENTRE_KEY = b"k-centre-2026"


@pytest.fixture(scope="module")
def running(stack, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One worker on a simulated clock at 2026-12-01 09:00 running 60x, gongshang signs
    (gongan and jianshe are still moving to signing)."""
    from tests.integration.conftest import WorkerSpec

    keys = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys.write_text(f"gongshang: {GONGSHANG_KEY.decode()}\n"
                    f"complaint-centre: {CENTRE_KEY.decode()}\n")
    spec = WorkerSpec(stack, extra_env={
        "JIANCHA_CLOCK_START": "2026-12-01T09:00:00+08:00",
        "JIANCHA_CLOCK_SPEED": "60",
        "JIANCHA_CLOCK_ANCHOR": str(time.time()),
        "JIANCHA_DEPARTMENT_KEYS_FILE": str(keys),
        "JIANCHA_UNSIGNED_DEPARTMENTS": '["gongan", "jianshe"]',
    })
    worker = spec.start_worker()
    yield spec, worker
    worker.stop()


def test_skipped_step_reaches_redis(running) -> None:  # type: ignore[no-untyped-def]
    spec, _ = running
    spec.send(case("SKIP-1", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                              ("decided", "2026-12-01 08:00")]))
    alerts = spec.wait_alerts(lambda a: _has(a, "SKIP-1", "process.skipped_step"))
    skipped = [a for a in alerts if a["case_id"] == "SKIP-1" and a["rule"] == "process.skipped_step"]
    assert len(skipped) == 1
    alert = skipped[0]
    assert alert["severity"] == "red" and alert["details"]["missing"] == "reviewed"
    assert alert["event_time"] == "2026-12-01T08:00:00+08:00"
    r = spec.redis()
    stored = r.hgetall(f"{spec.prefix}alert:{alert['alert_id']}")
    assert stored["status"] == "open" and stored["rule"] == "process.skipped_step"
    assert r.zscore(f"{spec.prefix}open", alert["alert_id"]) is not None
    assert r.zscore(f"{spec.prefix}open:gongan", alert["alert_id"]) is not None
    # the case's steps, for the alert's page
    steps = json.loads(r.get(f"{spec.prefix}case:SKIP-1"))["steps"]
    assert [s["step"] for s in steps] == ["submitted", "accepted", "decided"]
    assert steps[-1]["occurred_at"] == "2026-12-01T08:00:00+08:00"


def test_out_of_order_within_lateness_is_no_alarm(running) -> None:  # type: ignore[no-untyped-def]
    spec, _ = running
    env = spec.extra_env
    clock = SimulatedClock(datetime.fromisoformat(env["JIANCHA_CLOCK_START"]),
                           float(env["JIANCHA_CLOCK_SPEED"]), float(env["JIANCHA_CLOCK_ANCHOR"]))
    # the decision arrives before the review it depends on, both a minute or two old on the
    # worker's clock (however long its start took): well within the allowed lateness
    decided = clock.now() - timedelta(minutes=1)
    reviewed = decided - timedelta(minutes=1)
    events = case("ORDER-1", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                              ("decided", f"{decided:%Y-%m-%d %H:%M:%S}"),
                              ("reviewed", f"{reviewed:%Y-%m-%d %H:%M:%S}")])
    spec.send(events)
    spec.send(case("MARK-1", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                              ("decided", "2026-12-01 08:00")]))
    spec.wait_alerts(lambda a: _has(a, "MARK-1", "process.skipped_step"))
    # the worker's clock passes the end of the decision's allowed lateness (the default 10 min)
    time.sleep(max(0.0, clock.real_seconds_until(decided + timedelta(minutes=10))) + 2)
    assert not [a for a in spec.alerts()
                if a["case_id"] == "ORDER-1" and a["rule"] == "process.skipped_step"]


def _has(alerts: list[dict], case_id: str, rule: str) -> bool:
    return any(a["case_id"] == case_id and a["rule"] == rule for a in alerts)


def _dlq(spec, count: int, timeout: float = 30,  # type: ignore[no-untyped-def]
         topic: str | None = None) -> list[tuple[bytes, dict[str, bytes]]]:
    from aiokafka import AIOKafkaConsumer

    async def go() -> list[tuple[bytes, dict[str, bytes]]]:
        c = AIOKafkaConsumer(topic or spec.dlq_topic, bootstrap_servers=spec.stack.bootstrap,
                             auto_offset_reset="earliest", group_id=None)
        await c.start()
        out = []
        try:
            end = time.monotonic() + timeout
            while len(out) < count and time.monotonic() < end:
                batch = await c.getmany(timeout_ms=500)
                for msgs in batch.values():
                    out.extend((m.value, dict(m.headers)) for m in msgs)
        finally:
            await c.stop()
        return out

    return asyncio.run(go())


def test_bad_events_reach_the_dlq_with_reasons_and_the_worker_goes_on(running) -> None:  # type: ignore[no-untyped-def]
    spec, worker = running
    good = event("DLQ-OK", "submitted", "2026-11-30 09:00")
    forged = event("DLQ-F", "submitted", "2026-11-30 09:00", item="T-FEE", department="gongshang",
                   key=b"not-the-key")
    unsigned = event("DLQ-U", "submitted", "2026-11-30 09:00", item="T-FEE", department="gongshang")
    signed = event("DLQ-S", "submitted", "2026-11-30 09:00", item="T-FEE", department="gongshang",
                   key=GONGSHANG_KEY)
    unknown = event("DLQ-X", "submitted", "2026-11-30 09:00", item="NO-SUCH-ITEM")
    missing_field = event("DLQ-M", "decided", "2026-11-30 09:00")  # decided without outcome
    elsewhere = event("DLQ-D", "submitted", "2026-11-30 09:00", department="gongshang",
                      key=GONGSHANG_KEY)  # signed, but T-SHORT is gongan's
    spec.send([good, good, forged, unsigned, signed, unknown, missing_field, elsewhere],
              raw=[(b"DLQ-J", b"{not json"), (b"wrong-key", _bytes(event("DLQ-K", "submitted",
                                                                       "2026-11-30 09:00")))])
    dead = _dlq(spec, 8)
    reasons = sorted(h["jiancha-reason"].decode() for _, h in dead)
    assert reasons == sorted(["duplicate_event_id", "bad_signature", "missing_signature",
                              "unknown_item", "invalid_event", "invalid_json", "wrong_key",
                              "department_mismatch"])
    by_reason = {h["jiancha-reason"].decode(): (v, h) for v, h in dead}
    assert by_reason["invalid_json"][0] == b"{not json"  # the original bytes
    assert b"attributes.outcome" in by_reason["invalid_event"][1]["jiancha-error"]
    assert by_reason["bad_signature"][1]["jiancha-source"].startswith(spec.events_topic.encode())
    # the worker is still alive and still raises alerts
    spec.send(case("AFTER-DLQ", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                                 ("decided", "2026-12-01 08:00")]))
    spec.wait_alerts(lambda a: _has(a, "AFTER-DLQ", "process.skipped_step"))
    metrics = worker.metrics()
    assert samples(metrics, "jiancha_events_rejected_total", reason="invalid_json") == [1.0]
    assert samples(metrics, "jiancha_events_rejected_total", reason="bad_signature") == [1.0]


def test_a_record_over_the_producer_limit_is_dead_lettered_as_an_envelope(running) -> None:  # type: ignore[no-untyped-def]
    """A 1.5 MB record (over the worker's 1 MB producer limit) cannot go to the dead-letter
    topic as it is: an envelope stands for it (reason, size, source, hash, head), once,
    and the partition goes on."""
    import hashlib
    import json

    from aiokafka import AIOKafkaProducer

    spec, _ = running
    huge = b'{"schema_version": 1, "padding": "' + b"x" * 1_500_000 + b'"}'

    async def go() -> None:
        p = AIOKafkaProducer(bootstrap_servers=spec.stack.bootstrap, max_request_size=4_000_000)
        await p.start()
        try:
            await p.send_and_wait(spec.events_topic, huge, key=b"HUGE-1")
        finally:
            await p.stop()

    asyncio.run(go())
    spec.send(case("AFTER-HUGE", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                                  ("decided", "2026-12-01 08:00")]))
    spec.wait_alerts(lambda a: _has(a, "AFTER-HUGE", "process.skipped_step"))
    enveloped = [(v, h) for v, h in _dlq(spec, 100, timeout=5) if h.get("jiancha-envelope") == b"1"]
    assert len(enveloped) == 1
    value, headers = enveloped[0]
    letter = json.loads(value)
    assert headers["jiancha-reason"] == b"invalid_event" and letter["reason"] == "invalid_event"
    assert letter["size"] == len(huge) and letter["sha256"] == hashlib.sha256(huge).hexdigest()
    assert letter["source"].startswith(spec.events_topic + ":")
    assert len(value) < 10_000


def test_metrics_are_served(running) -> None:  # type: ignore[no-untyped-def]
    spec, worker = running
    spec.send(case("MET-1", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                             ("decided", "2026-12-01 08:00")]))
    spec.wait_alerts(lambda a: _has(a, "MET-1", "process.skipped_step"))

    def lag_and_open_alerts() -> str:
        text = worker.metrics()
        return text if samples(text, "jiancha_consumer_lag") and samples(text, "jiancha_open_alerts") else ""

    text = wait_for(lag_and_open_alerts, what="consumer lag and open alerts in /metrics")
    for name in ("jiancha_events_ingested_total", "jiancha_alerts_total",
                 "jiancha_event_to_alert_seconds_count", "jiancha_open_alerts",
                 "jiancha_events_rejected_total"):
        assert total(text, name) > 0, name
    assert samples(text, "jiancha_consumer_lag")  # a sample per partition, 0 when caught up
    assert total(text, "jiancha_alerts_total", department="gongan",
                 rule="process.skipped_step", severity="red") >= 1


def _bytes(e: dict) -> bytes:
    import json

    return json.dumps(e).encode()


def test_promise_deadline_fires_with_no_further_event_and_after_restart(stack) -> None:  # type: ignore[no-untyped-def]
    """T-SHORT promises 1 working day: accepted Mon 2026-11-30, the promise ends at 24:00 on
    Tue 2026-12-01. The simulated clock starts shortly before that instant; the worker is
    restarted before it, and the alert must still fire, once, when it is due (the deadline
    plus the allowed lateness), with no further event."""
    from tests.integration.conftest import WorkerSpec

    deadline = at("2026-12-02 00:00")
    lead = 30.0  # real seconds from now to the deadline
    lateness = 3.0  # deadlines are judged the allowed lateness after their instant
    anchor = time.time()
    spec = WorkerSpec(stack, extra_env={
        "JIANCHA_CLOCK_START": (deadline - timedelta(seconds=lead)).isoformat(),
        "JIANCHA_CLOCK_SPEED": "1",
        "JIANCHA_CLOCK_ANCHOR": str(anchor),
        "JIANCHA_ALLOWED_LATENESS_SECONDS": str(lateness),
    })
    worker = spec.start_worker("w1")
    spec.send(case("PROM-1", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                              ("reviewed", "2026-12-01 10:00")]))
    spec.send(case("PROM-OK", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                               ("reviewed", "2026-12-01 10:00"), ("decided", "2026-12-01 11:00")]))
    time.sleep(1.0)  # a second of the worker's clock, long before the deadline: nothing fires
    assert not [a for a in spec.alerts() if a["rule"] == "deadline.promise_broken"]
    worker.stop()  # restart: the new worker rebuilds the deadline index from the table
    assert time.time() < anchor + lead - 5, "the test machine is too slow for this timing"
    worker = spec.start_worker("w2")
    try:
        assert time.time() < anchor + lead, "restart took longer than the lead time"
        assert not [a for a in spec.alerts() if a["rule"] == "deadline.promise_broken"]
        alerts = spec.wait_alerts(
            lambda a: any(x["rule"] == "deadline.promise_broken" for x in a),
            timeout=lead + lateness + 20)
        fired_at = time.time()
        broken = [a for a in alerts if a["rule"] == "deadline.promise_broken"]
        assert [a["case_id"] for a in broken] == ["PROM-1"]
        assert broken[0]["event_time"] == "2026-12-02T00:00:00+08:00"
        assert broken[0]["detected_at"] >= "2026-12-02T00:00:00+08:00"
        assert fired_at >= anchor + lead + lateness - 0.5  # not before it is due
        assert fired_at <= anchor + lead + lateness + 5  # and promptly then
    finally:
        worker.stop()


def _send_complaints(spec, values: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        p = AIOKafkaProducer(bootstrap_servers=spec.stack.bootstrap)
        await p.start()
        try:
            for value in values:
                await p.send_and_wait(spec.complaints_topic, value, key=b"gongan")
        finally:
            await p.stop()

    asyncio.run(go())


def test_rejected_complaints_reach_their_dlq_with_reasons(running) -> None:  # type: ignore[no-untyped-def]
    from jiancha.producers.contract import sign_payload

    spec, worker = running

    def complaint(cid: str, **change: object) -> dict[str, object]:
        return {"schema_version": 1, "complaint_id": cid, "department": "gongan",
                "case_id": "CQ-1", "occurred_at": "2026-11-30T10:00:00+08:00", **change}

    def signed(c: dict[str, object], key: bytes = CENTRE_KEY) -> bytes:
        return orjson.dumps({**c, "signature": sign_payload(c, key)})

    _send_complaints(spec, [
        b"{not json",
        orjson.dumps(complaint("CQ-UNSIGNED")),  # the worker has a keyring: the centre signs
        signed(complaint("CQ-FORGED"), b"not-the-centre"),
        signed(complaint("CQ-NOWHERE", department="nowhere")),
        signed(complaint("CQ-FUTURE", occurred_at="2027-06-01T10:00:00+08:00")),
        signed(complaint("CQ-OK")),
    ])
    dead = _dlq(spec, 5, topic=spec.complaints_dlq_topic)
    by_reason = {h["jiancha-reason"].decode(): (v, h) for v, h in dead}
    assert sorted(by_reason) == sorted(["invalid_json", "missing_signature", "bad_signature",
                                        "unknown_department", "time_out_of_range"])
    assert len(dead) == 5
    assert by_reason["invalid_json"][0] == b"{not json"  # the original bytes
    assert b"nowhere" in by_reason["unknown_department"][1]["jiancha-error"]
    assert by_reason["bad_signature"][1]["jiancha-source"].startswith(
        spec.complaints_topic.encode() + b":")
    # the valid one is taken in
    spec.wait_alerts(lambda alerts: any(a["rule"] == "complaint.received"
                                        and a["details"].get("complaint_id") == "CQ-OK"
                                        for a in alerts))
    metrics = worker.metrics()
    for reason in by_reason:
        assert samples(metrics, "jiancha_complaints_rejected_total", reason=reason) == [1.0], reason
