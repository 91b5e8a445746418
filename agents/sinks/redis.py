"""The Redis alert sink (contract.md): stream ``jc:alerts``, hash ``jc:alert:{id}``,
open-alert indexes ``jc:open`` and ``jc:open:{department}``.

Each alert is written by a Lua script (many alerts per call, each in turn), atomically
and idempotently: a redelivered alert (same id, same severity) changes nothing and
reports ``known``; the same id with a higher severity (escalation) updates the hash and
appends the new version to the stream, unless a person resolved the alert meanwhile: then
it is ``known`` too, for what no later event corrects is corrected by resolving it. A
retracted version (``status: retracted``) is stored and leaves the open indexes.
Connection errors and Redis's "not now" replies (``OOM``, ``READONLY``, ...) are retried
with backoff until Redis answers, the sink reporting itself degraded meanwhile: nothing
is dropped. The stream is trimmed past ``stream_maxlen`` only where its readers (the
notifier's consumer group) have acknowledged it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import (
    AuthenticationError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jiancha.producers.contract import SEVERITY_RANK, Alert

from .types import Outcome

log = logging.getLogger(__name__)

# KEYS: stream, open-all, then for each alert: hash, open-dept, tally
# ARGV: for each alert: json, rank, severity, score, id, rule, department, case_id, status,
#   tally step, n, and n tally fields          -> each alert's outcome, in order
# An alert at a time, in order (a version and its escalation or retraction may share a call).
# A retracted version (status "retracted") takes the alert out of the open indexes; an
# alert raised again after its retraction is stored as new. Whatever the script stores, it
# also counts in the tally hash (the indicators' alert counts), in the same atomic step:
# a redelivered version is known and counted no more.
_WRITE_ALERTS = """
local stream, open_all = KEYS[1], KEYS[2]
local function write(hash, open_dept, tally_key, a)
  local json, rank, severity, score, id = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local rule, department, case_id = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
  local given, step, n = ARGV[a + 8], ARGV[a + 9], tonumber(ARGV[a + 10])
  local function tally(outcome)
    for i = a + 11, a + 10 + n do redis.call('HINCRBY', tally_key, ARGV[i], step) end
    return outcome
  end
  local got = redis.call('HMGET', hash, 'rank', 'status')
  local cur, stored = got[1], got[2]
  if given == 'retracted' then
    if stored == 'retracted' then return 0 end
    if cur then
      redis.call('HSET', hash, 'alert', json, 'rank', '0', 'severity', severity,
                 'rule', rule, 'department', department, 'case_id', case_id, 'status', 'retracted')
    else
      redis.call('HSET', hash, 'alert', json, 'rank', '0', 'severity', severity,
                 'rule', rule, 'department', department, 'case_id', case_id, 'status', 'retracted',
                 'detected_at', score)
    end
    redis.call('XADD', stream, '*', 'alert', json)
    redis.call('ZREM', open_all, id)
    redis.call('ZREM', open_dept, id)
    return tally(3)
  end
  if stored == 'retracted' then
    cur = false
    stored = false
  end
  if cur and tonumber(cur) >= tonumber(rank) then return 0 end
  local status = stored or given
  if cur and status == 'resolved' then return 0 end
  if cur then
    redis.call('HSET', hash, 'alert', json, 'rank', rank, 'severity', severity,
               'rule', rule, 'department', department, 'case_id', case_id, 'status', status)
  else
    redis.call('HSET', hash, 'alert', json, 'rank', rank, 'severity', severity,
               'rule', rule, 'department', department, 'case_id', case_id, 'status', status,
               'detected_at', score)
  end
  redis.call('XADD', stream, '*', 'alert', json)
  if status == 'open' then
    redis.call('ZADD', open_all, 'NX', score, id)
    redis.call('ZADD', open_dept, 'NX', score, id)
  end
  if cur then return tally(2) end
  return tally(1)
end
local out = {}
local a = 1
for k = 3, #KEYS, 3 do
  out[#out + 1] = write(KEYS[k], KEYS[k + 1], KEYS[k + 2], a)
  a = a + 11 + tonumber(ARGV[a + 10])
end
return out
"""

#: alerts written by one script call (a call holds Redis for its whole length; the calls of
#: one store still go in one round trip)
ALERTS_PER_CALL = 100

# The stream is trimmed only below what every reader named in ARGV (consumer groups that
# must see each alert, e.g. the notifier's) has acknowledged: the oldest entry pending in
# the group, or past its last delivered entry. A reader whose group is missing keeps
# everything. KEYS: stream   ARGV: maxlen, reader, reader, ...   -> entries removed, or -1
_TRIM = """
local function older(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
if redis.call('XLEN', KEYS[1]) <= tonumber(ARGV[1]) then return 0 end
if #ARGV == 1 then return redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[1]) end
local delivered = {}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  delivered[name] = last
end
local floor
for i = 2, #ARGV do
  local safe = delivered[ARGV[i]]
  if not safe then return -1 end
  local pending = redis.call('XPENDING', KEYS[1], ARGV[i])
  if tonumber(pending[1]) > 0 then safe = pending[2] end
  if not floor or older(safe, floor) then floor = safe end
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', floor)
"""

#: Redis answers that mean "not now" (out of memory, a read-only replica after a
#: failover, loading its data, busy with a script): retried like a lost connection.
TRANSIENT_REPLIES = ("OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN",
                     "NOREPLICAS", "CLUSTERDOWN")

_TRANSIENT_CLASSES = (OutOfMemoryError, ReadOnlyError, TryAgainError, MasterDownError)
_TRANSIENT_CODE = re.compile(rf"(?:^|[\s:-])(?:{'|'.join(TRANSIENT_REPLIES)}) ")

_OUTCOMES: dict[int, Outcome] = {0: "known", 1: "new", 2: "escalated", 3: "retracted"}


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
        readers: Sequence[str] = ("notifier",),
        trim_every: int = 1000,
        tally: Callable[[Alert], tuple[str, list[str], int]] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.stream_maxlen = stream_maxlen
        self.on_error = on_error
        self.max_backoff = max_backoff
        #: consumer groups that must acknowledge an alert before the stream may drop it
        self.readers = tuple(readers)
        self.trim_every = trim_every
        #: why the last write failed while it is being retried (None: writes succeed)
        self.degraded: str | None = None
        self._written = 0
        #: an alert version's (month, fields, step) in the indicators' alert counts
        #: (``rules.indicators.alert_tally``), counted in ``{prefix}ind-alerts:{month}``
        self.tally = tally
        self._script = client.register_script(_WRITE_ALERTS)
        self._trim = client.register_script(_TRIM)

    async def check(self) -> None:
        """Fail fast at start-up with a message that names the setting to fix; create the
        readers' consumer groups (from the stream's start) so that no alert written before
        a reader first starts is trimmed before it has read it."""
        try:
            await self.client.ping()
            for group in self.readers:
                try:
                    await self.client.xgroup_create(f"{self.prefix}alerts", group, id="0",
                                                    mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
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
                outcomes = await self._write(alerts)
            except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
                if isinstance(exc, ResponseError) and not (_is_auth(exc) or _is_transient(exc)):
                    raise
                self.degraded = f"{type(exc).__name__}: {exc}"
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
                continue
            self.degraded = None
            self._written += len(alerts)
            if self._written >= self.trim_every:
                self._written = 0
                await self.trim()
            return outcomes

    async def trim(self) -> int:
        """Drop the stream's oldest entries beyond ``stream_maxlen`` that every reader has
        acknowledged (-1: a reader's group is missing, nothing dropped). A failure only
        postpones it to the next call."""
        try:
            return int(await self._trim(keys=[f"{self.prefix}alerts"],
                                        args=[self.stream_maxlen, *self.readers]))
        except Exception as exc:  # trimming is housekeeping: the alerts are stored
            log.warning("alert stream not trimmed (%s); tried again later", exc)
            return 0

    async def _write(self, alerts: Sequence[Alert]) -> list[Outcome]:
        """The script by its digest, in one round trip: a pipeline of scripts would first
        ask Redis whether it has them (a round trip more for every store). A Redis that
        lost it (restarted, flushed) answers NOSCRIPT to all: it is loaded, and the
        alerts written again (the script is idempotent)."""
        try:
            return await self._write_once(alerts)
        except NoScriptError:
            await self.client.script_load(_WRITE_ALERTS)
            return await self._write_once(alerts)

    async def _write_once(self, alerts: Sequence[Alert]) -> list[Outcome]:
        """Up to :data:`ALERTS_PER_CALL` alerts per script call, the calls pipelined: the
        client's cost is per command and per argument (the alert's JSON is sent as a
        view, not copied into the command)."""
        sha, p = self._script.sha, self.prefix
        shared = (f"{p}alerts", f"{p}open")
        async with self.client.pipeline(transaction=False) as pipe:
            for i in range(0, len(alerts), ALERTS_PER_CALL):
                keys: list[str] = []
                args: list[Any] = []
                for a in alerts[i:i + ALERTS_PER_CALL]:
                    month, fields, step = self.tally(a) if self.tally is not None else ("-", [], 0)
                    keys += (f"{p}alert:{a.alert_id}", f"{p}open:{a.department or '-'}",
                             f"{p}ind-alerts:{month}")
                    args += (memoryview(a.to_json()), SEVERITY_RANK[a.severity], a.severity,
                             a.detected_at.timestamp(), a.alert_id, a.rule, a.department or "",
                             a.case_id or "", a.status, step, len(fields), *fields)
                pipe.evalsha(sha, len(keys) + 2, *shared, *keys, *args)
            results = await pipe.execute()
        return [_OUTCOMES[int(r)] for call in results for r in call]

    async def close(self) -> None:
        await self.client.aclose()


def _is_transient(exc: Exception) -> bool:
    # redis-py turns some replies into classes (dropping their code from the message), and
    # a pipeline wraps a script's error as "... of pipeline caused error: ...: -OOM ..."
    return isinstance(exc, _TRANSIENT_CLASSES) or _TRANSIENT_CODE.search(str(exc)) is not None


def _is_auth(exc: Exception) -> bool:
    text = str(exc)
    return isinstance(exc, AuthenticationError) or "NOAUTH" in text or "NOPERM" in text
