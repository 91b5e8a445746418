"""The Redis alert sink against a real, password-protected redis-server."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from jiancha.agents.sinks.redis import RedisAlertSink, redis_client
from jiancha.embedded import EmbeddedStack
from jiancha.producers.contract import Alert
from tests.wait import wait_for_async

pytestmark = pytest.mark.integration
CST = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def redis_stack():  # type: ignore[no-untyped-def]
    s = EmbeddedStack(redis_password="pw-123")
    s.start_redis()
    yield s
    s.stop()


def _alert(alert_id: str = "dea-1", severity: str = "red", dept: str = "gongan",
           status: str = "open") -> Alert:
    t = datetime(2026, 12, 2, tzinfo=CST)
    return Alert(alert_id=alert_id, rule="deadline.promise_broken", severity=severity,  # type: ignore[arg-type]
                 case_id="C1", item_code="T-SHORT", department=dept, detected_at=t, event_time=t,
                 message_zh="超期", message_en="overdue", legal_basis="承诺时限", evidence=["e1"],
                 status=status)  # type: ignore[arg-type]


def test_alerts_are_written_once_and_escalation_updates(redis_stack) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        sink = RedisAlertSink(client, prefix="s1:")
        assert await sink.publish([_alert()]) == ["new"]
        assert await sink.publish([_alert(), _alert()]) == ["known", "known"]  # redelivery
        assert await client.xlen("s1:alerts") == 1
        assert await sink.publish([_alert(severity="escalated")]) == ["escalated"]
        assert await sink.publish([_alert(severity="red")]) == ["known"]  # never downgraded
        assert await client.xlen("s1:alerts") == 2
        stored = await client.hgetall("s1:alert:dea-1")
        assert stored[b"severity"] == b"escalated" and stored[b"status"] == b"open"
        assert json.loads(stored[b"alert"])["severity"] == "escalated"
        assert await client.zcard("s1:open") == 1
        assert await client.zscore("s1:open:gongan", "dea-1") == _alert().detected_at.timestamp()
        await sink.close()

    asyncio.run(go())


def test_a_store_is_one_round_trip_and_survives_a_flushed_script_cache(redis_stack) -> None:  # type: ignore[no-untyped-def]
    """The script is run by its digest, without asking Redis first whether it has it (a
    pipeline of scripts does: a round trip more for every store); a Redis that lost it
    gets it again and the alerts are stored."""
    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        sink = RedisAlertSink(client, prefix="s7:")

        async def asked() -> int:  # SCRIPT commands run (Redis 7 counts each subcommand)
            stats = await client.info("commandstats")
            return sum(int(v["calls"]) for k, v in stats.items()
                       if k == "cmdstat_script" or k.startswith("cmdstat_script|"))

        assert await sink.publish([_alert("a-1")]) == ["new"]  # (loaded if Redis lacked it)
        before = await asked()
        assert await sink.publish([_alert("a-2"), _alert("a-3")]) == ["new", "new"]
        assert await asked() == before
        await client.script_flush()
        assert await sink.publish([_alert("a-3"), _alert("a-4")]) == ["known", "new"]
        assert await client.xlen("s7:alerts") == 4
        await sink.close()

    asyncio.run(go())


def test_a_retraction_leaves_the_open_indexes_once_and_a_new_raise_reopens(redis_stack) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        sink = RedisAlertSink(client, prefix="s4:")
        assert await sink.publish([_alert(severity="escalated")]) == ["new"]
        retraction = _alert(severity="escalated", status="retracted")
        assert await sink.publish([retraction]) == ["retracted"]
        assert await sink.publish([retraction]) == ["known"]  # redelivered: nothing more
        assert await sink.publish([_alert(severity="escalated")]) == ["new"]  # raised again
        assert await client.xlen("s4:alerts") == 3
        assert await client.zscore("s4:open:gongan", "dea-1") is not None
        assert await sink.publish([retraction]) == ["retracted"]
        stored = await client.hgetall("s4:alert:dea-1")
        assert stored[b"status"] == b"retracted"
        assert json.loads(stored[b"alert"])["status"] == "retracted"
        assert await client.zcard("s4:open") == 0 and await client.zcard("s4:open:gongan") == 0
        await sink.close()

    asyncio.run(go())


def test_a_resolved_alert_is_not_escalated(redis_stack) -> None:  # type: ignore[no-untyped-def]
    """A fee or a conflict is corrected only by a person resolving its alert: the engine
    escalates it after its days all the same, and the sink keeps the resolved alert."""
    from jiancha.notifier.store import AlertStore

    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        sink = RedisAlertSink(client, prefix="s8:")
        store = AlertStore(client, prefix="s8:")
        assert await sink.publish([_alert("fee-1"), _alert("fee-2")]) == ["new", "new"]
        await store.resolve("fee-1", by="supervisor-1", note="fee refunded")
        escalations = [_alert("fee-1", severity="escalated"), _alert("fee-2", severity="escalated")]
        assert await sink.publish(escalations) == ["known", "escalated"]
        assert await sink.publish(escalations) == ["known", "known"]  # redelivery
        resolved = await client.hgetall("s8:alert:fee-1")
        assert resolved[b"severity"] == b"red" and resolved[b"status"] == b"resolved"
        assert json.loads(resolved[b"alert"])["severity"] == "red"
        stream = [json.loads(fields[b"alert"]) for _, fields in await client.xrange("s8:alerts")]
        assert [(a["alert_id"], a["severity"]) for a in stream] == [
            ("fee-1", "red"), ("fee-2", "red"), ("fee-2", "escalated")]
        assert await client.zrange("s8:open", 0, -1) == [b"fee-2"]
        await sink.close()

    asyncio.run(go())


def test_wrong_or_missing_password_fails_fast_naming_the_setting(redis_stack) -> None:  # type: ignore[no-untyped-def]
    from jiancha.agents.sinks.redis import RedisConfigError

    async def go() -> None:
        for password in ("wrong", None):
            sink = RedisAlertSink(redis_client(redis_stack.redis_url, password=password))
            with pytest.raises(RedisConfigError, match="JIANCHA_REDIS_PASSWORD"):
                await sink.check()
            await sink.close()

    asyncio.run(go())


def test_redis_outage_is_retried_until_it_returns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Redis down while alerts arrive: publish waits and retries; nothing is lost."""
    stack = EmbeddedStack(workdir=tmp_path)
    stack.start_redis()
    port = stack.redis_port
    errors: list[Exception] = []

    async def go() -> None:
        sink = RedisAlertSink(redis_client(stack.redis_url), prefix="s3:", max_backoff=0.2,
                              on_error=errors.append)
        stack.process("redis").stop()
        stack.processes.clear()
        task = asyncio.create_task(sink.publish([_alert("a1"), _alert("a2")]))
        await wait_for_async(lambda: errors, what="a failed attempt to reach the stopped Redis")
        await wait_for_async(lambda: len(errors) >= 2, what="a second attempt")
        assert not task.done()  # retrying, not failing
        stack.redis_port = port
        stack.start_redis()
        assert await asyncio.wait_for(task, 20) == ["new", "new"]
        assert await sink.client.xlen("s3:alerts") == 2
        await sink.close()

    try:
        asyncio.run(go())
    finally:
        stack.stop()


@pytest.mark.parametrize("refusal", ["oom", "readonly"])
def test_out_of_memory_and_read_only_are_retried_with_the_sink_degraded(tmp_path, refusal: str) -> None:  # type: ignore[no-untyped-def]
    """Redis refusing writes ("OOM", or "READONLY" after a failover made it a replica) is
    a wait, not a crash: the alerts are held, retried, and stored once it writes again."""
    stack = EmbeddedStack(workdir=tmp_path)
    stack.start_redis()
    errors: list[Exception] = []

    async def go() -> None:
        admin = redis_client(stack.redis_url)
        sink = RedisAlertSink(redis_client(stack.redis_url), prefix="s5:", max_backoff=0.1,
                              on_error=errors.append)
        if refusal == "oom":
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")
        else:  # a replica of a master that is not there: read-only
            await admin.execute_command("REPLICAOF", "127.0.0.1", "1")
        task = asyncio.create_task(sink.publish([_alert("o1"), _alert("o2")]))
        await wait_for_async(lambda: len(errors) >= 2, what="two refused writes")
        assert not task.done() and sink.degraded
        if refusal == "oom":
            await admin.config_set("maxmemory", "0")
        else:
            await admin.execute_command("REPLICAOF", "NO", "ONE")
        assert await asyncio.wait_for(task, 10) == ["new", "new"]
        assert sink.degraded is None
        await sink.close()
        await admin.aclose()

    try:
        asyncio.run(go())
    finally:
        stack.stop()


def test_the_stream_keeps_what_the_notifier_has_not_acknowledged(redis_stack) -> None:  # type: ignore[no-untyped-def]
    """With the notifier stopped, far more alerts than ``stream_maxlen`` are written and
    none is trimmed; once it acknowledges some, only those go."""
    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        sink = RedisAlertSink(client, prefix="s6:", stream_maxlen=50, trim_every=10)
        await sink.check()  # creates the notifier's group (from the stream's start)
        for i in range(0, 600, 20):
            await sink.publish([_alert(f"t{i + k}") for k in range(20)])
        assert await client.xlen("s6:alerts") == 600
        # the notifier comes back, reads 500 and acknowledges 400
        read = await client.xreadgroup("notifier", "n1", {"s6:alerts": ">"}, count=500)
        ids = [entry_id for entry_id, _ in read[0][1]]
        await client.xack("s6:alerts", "notifier", *ids[:400])
        await sink.publish([_alert(f"u{k}") for k in range(10)])
        left = [entry_id for entry_id, _ in await client.xrange("s6:alerts")]
        assert set(ids[400:]) <= set(left)  # read but not acknowledged: kept
        assert len(left) >= 610 - 400 and len(left) < 610  # acknowledged ones (mostly) gone
        assert await sink.trim() >= 0
        # a reader whose group is missing: nothing is trimmed at all
        other = RedisAlertSink(client, prefix="s6:", stream_maxlen=50, readers=("archive",))
        assert await other.trim() == -1
        await sink.close()

    asyncio.run(go())


def test_each_alert_version_counts_once_in_the_indicators(redis_stack) -> None:  # type: ignore[no-untyped-def]
    """A worker that crashed after storing alerts judges their events again: the versions
    are known and counted no more; a retraction takes back both versions it had."""
    from jiancha.rules.indicators import alert_tally, merge_tally

    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        sink = RedisAlertSink(client, prefix="s7:", tally=lambda a: alert_tally(a, CST))
        red, escalated = _alert("c1"), _alert("c1", severity="escalated")
        for _ in range(3):  # delivered again and again
            await sink.publish([red, escalated])

        async def counts() -> dict[str, int]:
            accs = merge_tally("2026-12", await client.hgetall("s7:ind-alerts:2026-12"), {})
            return accs[("2026-12", "department", "gongan")].alerts["deadline.promise_broken"]

        assert await counts() == {"red": 1, "escalated": 1}
        retracted = _alert("c1", severity="escalated", status="retracted")
        await sink.publish([retracted, retracted])
        assert await counts() == {"red": 0, "escalated": 0}
        await sink.close()

    asyncio.run(go())


def test_the_embedded_redis_password_is_not_on_its_command_line(redis_stack) -> None:  # type: ignore[no-untyped-def]
    proc = redis_stack.process("redis").proc
    with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
        argv = f.read()
    assert b"pw-123" not in argv and b"requirepass" not in argv


def test_a_store_larger_than_one_script_run_keeps_each_alerts_outcome(redis_stack) -> None:  # type: ignore[no-untyped-def]
    """Alerts beyond :data:`WRITE_BATCH` go in further runs of the script; the outcomes
    come back in the alerts' order, across the runs."""
    from jiancha.agents.sinks import redis as sink_module

    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        sink = RedisAlertSink(client, prefix="s20:")
        n = sink_module.WRITE_BATCH + 3
        assert await sink.publish([_alert(f"b-{i}") for i in range(0, n, 2)]) == ["new"] * (
            (n + 1) // 2)
        outcomes = await sink.publish([_alert(f"b-{i}") for i in range(n)])
        assert outcomes == ["known" if i % 2 == 0 else "new" for i in range(n)]
        assert await client.xlen("s20:alerts") == n
        assert await client.zcard("s20:open:gongan") == n
        await sink.close()

    asyncio.run(go())


def test_the_case_mirror_writes_every_case_in_one_call_with_its_time_to_live(redis_stack) -> None:  # type: ignore[no-untyped-def]
    from jiancha.agents.sinks.cases import CaseMirror
    from jiancha.rules.case import CaseState, Fact

    def state(case_id: str) -> CaseState:
        at = datetime(2026, 12, 2, 9, tzinfo=CST).timestamp()
        return CaseState(case_id, "GA-0002", facts=[
            Fact(f"{case_id}-1", "submitted", at, "applicant", "gongan", {}, at + 1.5),  # type: ignore[arg-type]
            Fact(f"{case_id}-2", "accepted", at + 60, "gongan-h1", "gongan", {}, at + 61)])  # type: ignore[arg-type]

    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        mirror = CaseMirror(client, prefix="m1:", tz=CST, ttl_seconds=3600)
        await client.script_flush()  # a Redis that lost the script gets it again
        await mirror([state("K1"), state("K2"), state("K1")])
        for case_id in ("K1", "K2"):
            stored = json.loads(await client.get(f"m1:case:{case_id}"))
            assert stored["case_id"] == case_id and stored["item_code"] == "GA-0002"
            assert [s["step"] for s in stored["steps"]] == ["submitted", "accepted"]
            assert stored["steps"][1]["occurred_at"] == "2026-12-02T09:01:00+08:00"
            assert stored["steps"][0]["received_at"] == "2026-12-02T09:00:01.500000+08:00"
            assert 3590 < await client.ttl(f"m1:case:{case_id}") <= 3600
        await client.aclose()

    asyncio.run(go())


def test_alerts_prepared_ahead_are_stored_as_those_prepared_when_stored(redis_stack) -> None:  # type: ignore[no-untyped-def]
    """The deadline timer has the sink prepare what it sends for the alerts of cases judged
    ahead of their instant; stored with those, the alerts are stored as without."""
    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        stored = []
        for prefix, ahead in (("p1:", False), ("p2:", True)):
            sink = RedisAlertSink(client, prefix=prefix)
            alerts = [_alert(f"a-{i}", dept="gongan" if i % 2 else "minzheng") for i in range(5)]
            prepared = [sink.prepare(a) if ahead and i != 2 else None
                        for i, a in enumerate(alerts)]
            assert await sink.publish(alerts, prepared) == ["new"] * 5
            assert await sink.publish(alerts[:2], prepared[:2]) == ["known"] * 2
            keys = sorted(k.decode()[len(prefix):] for k in await client.keys(f"{prefix}*"))
            stored.append((keys, [await client.hgetall(f"{prefix}alert:a-{i}") for i in range(5)],
                           [f for _, f in await client.xrange(f"{prefix}alerts")],
                           await client.zrange(f"{prefix}open:minzheng", 0, -1, withscores=True)))
        assert stored[0] == stored[1] and len(stored[0][0]) == 5 + 4
        await client.aclose()

    asyncio.run(go())
