"""The Redis alert sink (contract.md): stream ``jc:alerts``, hash ``jc:alert:{id}``,
open-alert indexes ``jc:open`` and ``jc:open:{department}``.

Alerts are written by a Lua script, a batch in one run, atomically and idempotently: a
redelivered alert (same id, same severity) changes nothing and reports ``known``; the
same id with a higher severity (escalation) updates the hash and appends the new version to the stream,
unless a person resolved the alert meanwhile: then it is ``known`` too, for what no later
event corrects is corrected by resolving it. A retracted version (``status: retracted``)
is stored and leaves the open indexes. Connection errors and Redis's "not now" replies
(``OOM``, ``READONLY``, ...) are retried with backoff until Redis answers, the sink
reporting itself degraded meanwhile: nothing is dropped. The stream is trimmed past
``stream_maxlen`` only where its readers (the notifier's consumer group) have
acknowledged it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import (
    AuthenticationError,
    MasterDownError,
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

# One call stores a batch of alerts: the client's cost per command and per argument (the
# worker's, on the event path) is paid once per batch, an alert's fields beside its JSON
# travel as one JSON array. KEYS: stream, open-all, then for each alert: hash, open-dept,
# tally. ARGV: for each alert its JSON, then the JSON array [rank, severity, score, id,
# rule, department, case_id, status, tally step, tally field, tally field, ...] (all
# strings). Returns each alert's outcome. A retracted version (status "retracted") takes the alert out of the
# open indexes; an alert raised again after its retraction is stored as new. Whatever the
# script stores, it also counts in the tally hash (the indicators' alert counts), in the
# same atomic step: a redelivered version is known and counted no more.
_WRITE_ALERTS = """
local stream, open_all = KEYS[1], KEYS[2]
local function write(hash, open_dept, tally_key, a)
  local function tally(outcome)
    for i = 11, #a do redis.call('HINCRBY', tally_key, a[i], a[10]) end
    return outcome
  end
  local known = redis.call('HMGET', hash, 'rank', 'status')
  local cur, stored = known[1], known[2]
  if a[9] == 'retracted' then
    if stored == 'retracted' then return 0 end
    if cur then
      redis.call('HSET', hash, 'alert', a[1], 'rank', '0', 'severity', a[3], 'rule', a[6],
                 'department', a[7], 'case_id', a[8], 'status', 'retracted')
    else
      redis.call('HSET', hash, 'alert', a[1], 'rank', '0', 'severity', a[3], 'rule', a[6],
                 'department', a[7], 'case_id', a[8], 'status', 'retracted',
                 'detected_at', a[4])
    end
    redis.call('XADD', stream, '*', 'alert', a[1])
    redis.call('ZREM', open_all, a[5])
    redis.call('ZREM', open_dept, a[5])
    return tally(3)
  end
  if stored == 'retracted' then
    cur = false
    stored = false
  end
  if cur and tonumber(cur) >= tonumber(a[2]) then return 0 end
  local status = stored or a[9]
  if cur and status == 'resolved' then return 0 end
  if cur then
    redis.call('HSET', hash, 'alert', a[1], 'rank', a[2], 'severity', a[3], 'rule', a[6],
               'department', a[7], 'case_id', a[8], 'status', status)
  else
    redis.call('HSET', hash, 'alert', a[1], 'rank', a[2], 'severity', a[3], 'rule', a[6],
               'department', a[7], 'case_id', a[8], 'status', status, 'detected_at', a[4])
  end
  redis.call('XADD', stream, '*', 'alert', a[1])
  if status == 'open' then
    redis.call('ZADD', open_all, 'NX', a[4], a[5])
    redis.call('ZADD', open_dept, 'NX', a[4], a[5])
  end
  if cur then return tally(2) end
  return tally(1)
end
local out = {}
for i = 1, #ARGV / 2 do
  local k = 3 * i
  local a = cjson.decode(ARGV[2 * i])
  table.insert(a, 1, ARGV[2 * i - 1])
  out[i] = write(KEYS[k], KEYS[k + 1], KEYS[k + 2], a)
end
return out
"""

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

#: Alerts stored by one run of the script: Redis runs nothing else meanwhile (a few
#: milliseconds for this many).
WRITE_BATCH = 500


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

    def prepare(self, alert: Alert) -> tuple[tuple[str, str, str], tuple[bytes, bytes]]:
        """An alert's keys (hash, open-dept, tally) and arguments (its JSON, its fields) in
        the script's call."""
        month, fields, step = self.tally(alert) if self.tally is not None else ("-", [], 0)
        p = self.prefix
        # the fields as strings, as Redis would have received them one by one
        return ((f"{p}alert:{alert.alert_id}", f"{p}open:{alert.department or '-'}",
                 f"{p}ind-alerts:{month}"),
                (alert.to_json(), orjson.dumps([
                    str(SEVERITY_RANK[alert.severity]), alert.severity,
                    repr(alert.detected_at.timestamp()), alert.alert_id, alert.rule,
                    alert.department or "", alert.case_id or "", alert.status, str(step),
                    *fields])))

    async def publish(self, alerts: Sequence[Alert],
                      prepared: Sequence[Any | None] | None = None) -> list[Outcome]:
        """Store alerts; while Redis is down (or refuses us) retry with backoff, never drop.
        ``prepared``: :meth:`prepare`'s result for each alert, where made ahead."""
        if not alerts:
            return []
        calls = [p if p is not None else self.prepare(a)
                 for a, p in zip(alerts, prepared or [None] * len(alerts), strict=True)]
        backoff = 0.1
        while True:
            try:
                outcomes = await self._write(calls)
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

    async def _write(self, calls: Sequence[tuple[tuple[str, str, str], tuple[bytes, bytes]]]
                     ) -> list[Outcome]:
        """The script by its digest, one call per :data:`WRITE_BATCH` alerts (loaded again
        if Redis lost it: restarted, flushed)."""
        outcomes: list[Outcome] = []
        p = self.prefix
        for start in range(0, len(calls), WRITE_BATCH):
            keys, args = [f"{p}alerts", f"{p}open"], []
            for alert_keys, alert_args in calls[start:start + WRITE_BATCH]:
                keys += alert_keys
                args += alert_args
            results = await self._script(keys=keys, args=args)
            outcomes += (_OUTCOMES[int(r)] for r in results)
        return outcomes

    async def close(self) -> None:
        await self.client.aclose()


def _is_transient(exc: Exception) -> bool:
    # redis-py turns some replies into classes (dropping their code from the message), and
    # a pipeline wraps a script's error as "... of pipeline caused error: ...: -OOM ..."
    return isinstance(exc, _TRANSIENT_CLASSES) or _TRANSIENT_CODE.search(str(exc)) is not None


def _is_auth(exc: Exception) -> bool:
    text = str(exc)
    return isinstance(exc, AuthenticationError) or "NOAUTH" in text or "NOPERM" in text
