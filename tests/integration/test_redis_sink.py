"""The Redis alert sink against a real, password-protected redis-server."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from agents.sinks.redis import RedisAlertSink, redis_client
from jiancha.embedded import EmbeddedStack
from producers.contract import Alert

pytestmark = pytest.mark.integration
CST = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def redis_stack():  # type: ignore[no-untyped-def]
    s = EmbeddedStack(redis_password="pw-123")
    s.start_redis()
    yield s
    s.stop()


def _alert(alert_id: str = "dea-1", severity: str = "red", dept: str = "gongan") -> Alert:
    t = datetime(2026, 12, 2, tzinfo=CST)
    return Alert(alert_id=alert_id, rule="deadline.promise_broken", severity=severity,  # type: ignore[arg-type]
                 case_id="C1", item_code="T-SHORT", department=dept, detected_at=t, event_time=t,
                 message_zh="超期", message_en="overdue", legal_basis="承诺时限", evidence=["e1"])


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


def test_a_resolved_alert_is_not_escalated(redis_stack) -> None:  # type: ignore[no-untyped-def]
    """A fee or a conflict is corrected only by a person resolving its alert: the engine
    escalates it after its days all the same, and the sink keeps the resolved alert."""
    from agents.notify.store import AlertStore

    async def go() -> None:
        client = redis_client(redis_stack.redis_url, password="pw-123")
        sink = RedisAlertSink(client, prefix="s4:")
        store = AlertStore(client, prefix="s4:")
        assert await sink.publish([_alert("fee-1"), _alert("fee-2")]) == ["new", "new"]
        await store.resolve("fee-1", by="supervisor-1", note="fee refunded")
        escalations = [_alert("fee-1", severity="escalated"), _alert("fee-2", severity="escalated")]
        assert await sink.publish(escalations) == ["known", "escalated"]
        assert await sink.publish(escalations) == ["known", "known"]  # redelivery
        resolved = await client.hgetall("s4:alert:fee-1")
        assert resolved[b"severity"] == b"red" and resolved[b"status"] == b"resolved"
        assert json.loads(resolved[b"alert"])["severity"] == "red"
        stream = [json.loads(fields[b"alert"]) for _, fields in await client.xrange("s4:alerts")]
        assert [(a["alert_id"], a["severity"]) for a in stream] == [
            ("fee-1", "red"), ("fee-2", "red"), ("fee-2", "escalated")]
        assert await client.zrange("s4:open", 0, -1) == [b"fee-2"]
        await sink.close()

    asyncio.run(go())


def test_wrong_or_missing_password_fails_fast_naming_the_setting(redis_stack) -> None:  # type: ignore[no-untyped-def]
    from agents.sinks.redis import RedisConfigError

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
        await asyncio.sleep(1.0)
        assert not task.done() and errors  # retrying, not failing
        stack.redis_port = port
        stack.start_redis()
        assert await asyncio.wait_for(task, 20) == ["new", "new"]
        assert await sink.client.xlen("s3:alerts") == 2
        await sink.close()

    try:
        asyncio.run(go())
    finally:
        stack.stop()
