"""The Redis alert sink (contract.md): stream ``jc:alerts``, hash ``jc:alert:{id}``,
open-alert indexes ``jc:open`` and ``jc:open:{department}``.

Each alert is written by one Lua script, atomically and idempotently: a redelivered
alert (same id, same severity) changes nothing and reports ``known``; the same id with a
higher severity (escalation) updates the hash and appends the new version to the stream.
Connection errors are retried with backoff until Redis answers: nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agents.sinks.types import Outcome
from producers.contract import SEVERITY_RANK, Alert

log = logging.getLogger(__name__)

# KEYS: hash, stream, open-all, open-dept   ARGV: json, rank, severity, score, id, maxlen,
#                                                  rule, department, case_id, status
_WRITE_ALERT = """
local cur = redis.call('HGET', KEYS[1], 'rank')
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
local status = redis.call('HGET', KEYS[1], 'status') or ARGV[10]
redis.call('HSET', KEYS[1], 'alert', ARGV[1], 'rank', ARGV[2], 'severity', ARGV[3],
           'rule', ARGV[7], 'department', ARGV[8], 'case_id', ARGV[9], 'status', status)
if not cur then redis.call('HSET', KEYS[1], 'detected_at', ARGV[4]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'alert', ARGV[1])
if status == 'open' then
  redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[5])
  redis.call('ZADD', KEYS[4], 'NX', ARGV[4], ARGV[5])
end
if cur then return 2 end
return 1
"""

_OUTCOMES: dict[int, Outcome] = {0: "known", 1: "new", 2: "escalated"}


def redis_client(url: str, username: str | None = None, password: str | None = None) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, username=username, password=password,
                                   socket_timeout=5, socket_connect_timeout=5)


class RedisAlertSink:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "jc:",
        stream_maxlen: int = 1_000_000,
        on_error: Callable[[Exception], None] | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.stream_maxlen = stream_maxlen
        self.on_error = on_error
        self.max_backoff = max_backoff
        self._script = client.register_script(_WRITE_ALERT)

    def _keys(self, alert: Alert) -> list[str]:
        p = self.prefix
        return [f"{p}alert:{alert.alert_id}", f"{p}alerts", f"{p}open",
                f"{p}open:{alert.department or '-'}"]

    async def publish(self, alerts: Sequence[Alert]) -> list[Outcome]:
        if not alerts:
            return []
        backoff = 0.1
        while True:
            try:
                return await self._write(alerts)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if self.on_error:
                    self.on_error(exc)
                log.warning("Redis unavailable (%s); retrying %d alert(s) in %.1fs",
                            exc, len(alerts), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    async def _write(self, alerts: Sequence[Alert]) -> list[Outcome]:
        async with self.client.pipeline(transaction=False) as pipe:
            for a in alerts:
                await self._script(
                    keys=self._keys(a),
                    args=[a.to_json(), SEVERITY_RANK[a.severity], a.severity,
                          a.detected_at.timestamp(), a.alert_id, self.stream_maxlen, a.rule,
                          a.department or "", a.case_id or "", a.status],
                    client=pipe,
                )
            results = await pipe.execute()
        return [_OUTCOMES[int(r)] for r in results]

    async def close(self) -> None:
        await self.client.aclose()
