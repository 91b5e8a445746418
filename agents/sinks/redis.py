"""The Redis alert sink (contract.md): stream ``jc:alerts``, hash ``jc:alert:{id}``,
open-alert indexes ``jc:open`` and ``jc:open:{department}``.

Each alert is written by one Lua script, atomically and idempotently: a redelivered
alert (same id, same severity) changes nothing and reports ``known``; the same id with a
higher severity (escalation) updates the hash and appends the new version to the stream,
unless a person resolved the alert (or it was retracted) meanwhile: then it is ``known``
too, for what no later event corrects is corrected by resolving it.
Connection errors are retried with backoff until Redis answers: nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError
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
if cur and (status == 'resolved' or status == 'retracted') then return 0 end
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


class RedisConfigError(RuntimeError):
    """Redis refuses us for a reason that waiting will not fix (credentials, ACL)."""


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

    async def check(self) -> None:
        """Fail fast at start-up with a message that names the setting to fix."""
        try:
            await self.client.ping()
        except AuthenticationError as exc:
            raise RedisConfigError(
                f"Redis refused the credentials ({exc}); check JIANCHA_REDIS_USERNAME and "
                "JIANCHA_REDIS_PASSWORD") from None
        except ResponseError as exc:
            if "NOAUTH" in str(exc) or "NOPERM" in str(exc):
                raise RedisConfigError(
                    f"Redis needs a password or more permissions ({exc}); set "
                    "JIANCHA_REDIS_PASSWORD / JIANCHA_REDIS_USERNAME") from None
            raise

    async def publish(self, alerts: Sequence[Alert]) -> list[Outcome]:
        """Store alerts; while Redis is down (or refuses us) retry with backoff, never drop."""
        if not alerts:
            return []
        backoff = 0.1
        while True:
            try:
                return await self._write(alerts)
            except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
                if isinstance(exc, ResponseError) and not _is_auth(exc):
                    raise
                if self.on_error:
                    self.on_error(exc)
                if isinstance(exc, AuthenticationError) or _is_auth(exc):
                    log.error("Redis refuses jiancha's credentials (%s): fix JIANCHA_REDIS_PASSWORD"
                              "; %d alert(s) held and retried", exc, len(alerts))
                else:
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


def _is_auth(exc: Exception) -> bool:
    text = str(exc)
    return isinstance(exc, AuthenticationError) or "NOAUTH" in text or "NOPERM" in text
