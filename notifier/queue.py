"""The notifier's durable state in Redis: groups waiting to be flushed, per-channel delivery
queues, dedup marks and repeat schedules. Every step is one Lua script, so a notifier
killed at any instant leaves Redis consistent, and a restarted one (or another replica)
carries on: nothing is lost, nothing is queued twice.

Keys (under ``{prefix}notify:``):

- ``dedup:{alert_id}|{transition}|{receiver}|{channel}`` — SET NX when a notification for
  that (alert, transition, receiver, channel) is first queued (TTL ``dedup_ttl``): a
  redelivered alert (stream entry read again after a crash) queues nothing again;
- ``group:{key}`` (hash item → JSON) and ``groupmeta:{key}``; ``groups`` (sorted set
  key → real time at which the group is flushed: after ``group_wait``, then at most every
  ``group_interval``; held to the next working hour for yellow alerts);
- ``q:{receiver}/{channel}`` (sorted set notification id → next attempt, real time) with the
  bodies in ``items`` and attempt counts in ``attempts``; ``queues`` indexes the queues by
  their earliest due item. A claimed item is leased (its score moves ``lease`` ahead): if
  the notifier dies while sending, the item is due again when the lease ends. It is removed
  only by the success script, which also writes ``delivered:{id}`` and the alerts' history
  (and, for the stream channel, the stream entry itself: exactly once);
- ``repeat`` (sorted set alert id → next reminder) and ``repeatn`` (hash alert id → count);
- ``dead`` (stream): notifications that can never be delivered, or still failed after
  ``max_attempts`` tries, one entry each (``notification_id``, ``queue``, ``reason``,
  ``permanent``, ``attempts``, ``at``, ``notification`` = the queued JSON, to resend by
  hand). The dead-letter script takes the notification off its queue in the same step:
  it is dead-lettered once, and never tried again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .types import Notification

_REFRESH = """
local function push_history(root, at)
  -- ARGV[at] = number of entries, then (alert id, entry JSON) each; returns the next index
  local i = at + 1
  for h = 1, tonumber(ARGV[at]) do
    redis.call('RPUSH', root .. 'alert:' .. ARGV[i] .. ':history', ARGV[i + 1])
    i = i + 2
  end
  return i
end
local function refresh(np, queue)
  local first = redis.call('ZRANGE', np .. 'q:' .. queue, 0, 0, 'WITHSCORES')
  if first[1] then
    redis.call('ZADD', np .. 'queues', first[2], queue)
  else
    redis.call('ZREM', np .. 'queues', queue)
  end
end
"""

# KEYS: notify prefix. ARGV: now, alert id, transition, dedup ttl, repeat op, repeat arg1,
# repeat arg2, repeat n, number of targets, then per target: group key, meta JSON,
# group_wait, group_interval, hold-until (0: none), receiver, number of channels, then per
# channel: channel name, item JSON.
# repeat op: 'none'; 'schedule' (ZADD NX arg1 = next); 'advance' (only if the score is still
# arg2: set next = arg1 (0: drop) and the count = n) — else nothing is done and -1 returned.
_INTAKE = """
local np = KEYS[1]
local now = tonumber(ARGV[1])
local alert, tr, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local op = ARGV[5]
if op == 'advance' then
  local cur = redis.call('ZSCORE', np .. 'repeat', alert)
  if (not cur) or math.abs(tonumber(cur) - tonumber(ARGV[7])) > 0.001 then return -1 end
end
local nt = tonumber(ARGV[9])
local i = 10
local added = 0
for t = 1, nt do
  local gkey, meta = ARGV[i], ARGV[i + 1]
  local gw, gi, hold = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local receiver, nc = ARGV[i + 5], tonumber(ARGV[i + 6])
  i = i + 7
  local any = false
  for c = 1, nc do
    local ch, item = ARGV[i], ARGV[i + 1]
    i = i + 2
    local dk = np .. 'dedup:' .. alert .. '|' .. tr .. '|' .. receiver .. '|' .. ch
    if redis.call('SET', dk, '1', 'NX', 'EX', ttl) then
      redis.call('HSET', np .. 'group:' .. gkey, alert .. '|' .. tr .. '|' .. ch, item)
      any = true
      added = added + 1
    end
  end
  if any then
    local mk = np .. 'groupmeta:' .. gkey
    redis.call('HSET', mk, 'meta', meta)
    redis.call('PERSIST', mk)
    if not redis.call('ZSCORE', np .. 'groups', gkey) then
      local last = redis.call('HGET', mk, 'last_flush')
      local at
      if last then at = math.max(now, tonumber(last) + gi) else at = now + gw end
      if hold > at then at = hold end
      redis.call('ZADD', np .. 'groups', at, gkey)
    end
  end
end
if op == 'schedule' then
  redis.call('ZADD', np .. 'repeat', 'NX', ARGV[6], alert)
elseif op == 'advance' then
  if tonumber(ARGV[6]) > 0 then
    redis.call('ZADD', np .. 'repeat', ARGV[6], alert)
  else
    redis.call('ZREM', np .. 'repeat', alert)
  end
  redis.call('HSET', np .. 'repeatn', alert, ARGV[8])
end
return added
"""

# KEYS: notify prefix, root prefix. ARGV: now, group key, group_interval, meta ttl,
# number of item fields, fields…, number of notifications, (id, queue, body)…,
# number of history entries, (alert id, entry)…
_FLUSH = _REFRESH + """
local np, root = KEYS[1], KEYS[2]
local now, gkey, gi, mttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local gk = np .. 'group:' .. gkey
local nf = tonumber(ARGV[5])
local i = 6
for f = 1, nf do
  if redis.call('HEXISTS', gk, ARGV[i + f - 1]) == 0 then return 0 end
end
for f = 1, nf do redis.call('HDEL', gk, ARGV[i + f - 1]) end
i = i + nf
local nn = tonumber(ARGV[i])
i = i + 1
for n = 1, nn do
  local id, queue, body = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  if redis.call('HSETNX', np .. 'items', id, body) == 1 then
    redis.call('ZADD', np .. 'q:' .. queue, now, id)
    refresh(np, queue)
  end
end
local nh = tonumber(ARGV[i])
i = i + 1
for h = 1, nh do
  redis.call('RPUSH', root .. 'alert:' .. ARGV[i] .. ':history', ARGV[i + 1])
  i = i + 2
end
local mk = np .. 'groupmeta:' .. gkey
if nn > 0 then redis.call('HSET', mk, 'last_flush', now) end
if redis.call('HLEN', gk) > 0 then
  redis.call('ZADD', np .. 'groups', now + gi, gkey)
else
  redis.call('ZREM', np .. 'groups', gkey)
  redis.call('EXPIRE', mk, mttl)
end
return 1
"""

# KEYS: notify prefix. ARGV: queue, now, lease-until, limit. Returns id, body, attempts, …
_CLAIM = _REFRESH + """
local np, queue = KEYS[1], ARGV[1]
local q = np .. 'q:' .. queue
local ids = redis.call('ZRANGEBYSCORE', q, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', np .. 'items', id)
  if body then
    redis.call('ZADD', q, ARGV[3], id)
    out[#out + 1] = id
    out[#out + 1] = body
    out[#out + 1] = redis.call('HGET', np .. 'attempts', id) or '0'
  else
    redis.call('ZREM', q, id)
  end
end
refresh(np, queue)
return out
"""

# KEYS: notify prefix, root prefix. ARGV: queue, id, delivered ttl, now, number of history
# entries, (alert id, entry)…, then optionally stream key, maxlen, value.
_SUCCESS = _REFRESH + """
local np, root = KEYS[1], KEYS[2]
local queue, id = ARGV[1], ARGV[2]
local q = np .. 'q:' .. queue
if not redis.call('ZSCORE', q, id) then return 0 end
redis.call('ZREM', q, id)
redis.call('HDEL', np .. 'items', id)
redis.call('HDEL', np .. 'attempts', id)
redis.call('SET', np .. 'delivered:' .. id, ARGV[4], 'EX', tonumber(ARGV[3]))
local i = push_history(root, 5)
if ARGV[i] then
  redis.call('XADD', ARGV[i], 'MAXLEN', '~', ARGV[i + 1], '*', 'notification', ARGV[i + 2])
end
refresh(np, queue)
return 1
"""

# KEYS: notify prefix. ARGV: queue, retry-at, failed id (counts an attempt), other ids…
_RETRY = _REFRESH + """
local np, queue = KEYS[1], ARGV[1]
local q = np .. 'q:' .. queue
local n = 0
if redis.call('ZSCORE', q, ARGV[3]) then
  n = redis.call('HINCRBY', np .. 'attempts', ARGV[3], 1)
  redis.call('ZADD', q, 'XX', ARGV[2], ARGV[3])
end
for k = 4, #ARGV do redis.call('ZADD', q, 'XX', ARGV[2], ARGV[k]) end
refresh(np, queue)
return n
"""


# KEYS: notify prefix, root prefix. ARGV: queue, id, reason, permanent (0/1), attempts, at,
# stream maxlen, number of history entries, (alert id, entry)…
_DEAD = _REFRESH + """
local np, root = KEYS[1], KEYS[2]
local queue, id = ARGV[1], ARGV[2]
local q = np .. 'q:' .. queue
if not redis.call('ZSCORE', q, id) then return 0 end
local body = redis.call('HGET', np .. 'items', id) or ''
redis.call('ZREM', q, id)
redis.call('HDEL', np .. 'items', id)
redis.call('HDEL', np .. 'attempts', id)
redis.call('XADD', np .. 'dead', 'MAXLEN', '~', ARGV[7], '*', 'notification_id', id,
           'queue', queue, 'reason', ARGV[3], 'permanent', ARGV[4], 'attempts', ARGV[5],
           'at', ARGV[6], 'notification', body)
push_history(root, 8)
refresh(np, queue)
return 1
"""

#: Dead letters kept (approximately, ``XADD MAXLEN ~``): far more than any outage makes.
DEAD_LETTER_MAXLEN = 1_000_000


@dataclass(frozen=True)
class Claimed:
    notification_id: str
    body: bytes
    attempts: int


@dataclass
class GroupItem:
    field: str
    alert_id: str
    transition: str
    channel: str


class NotifyQueue:
    def __init__(self, client: Any, prefix: str = "jc:", dedup_ttl: float = 30 * 86400,
                 delivered_ttl: float = 30 * 86400) -> None:
        self.r = client
        self.root = prefix
        self.np = f"{prefix}notify:"
        self.dedup_ttl = int(dedup_ttl)
        self.delivered_ttl = int(delivered_ttl)
        self._intake = client.register_script(_INTAKE)
        self._flush = client.register_script(_FLUSH)
        self._claim = client.register_script(_CLAIM)
        self._success = client.register_script(_SUCCESS)
        self._retry = client.register_script(_RETRY)
        self._dead = client.register_script(_DEAD)
        self.dead_stream = f"{self.np}dead"

    # --- intake -------------------------------------------------------------------------------

    async def enqueue(self, alert_id: str, transition: str, targets: Sequence[Mapping[str, Any]],
                      now: float, repeat: tuple[str, float, float, int] = ("none", 0, 0, 0)) -> int:
        """Add the alert to the groups of its targets (deduplicated); returns how many
        (receiver, channel) items were added, or -1 when a repeat was already advanced.

        A target: ``group_key``, ``meta`` (dict), ``group_wait``, ``group_interval``,
        ``hold_until`` (real time, 0), ``receiver``, ``channels`` (names)."""
        args: list[Any] = [now, alert_id, transition, self.dedup_ttl, repeat[0], repeat[1],
                           repeat[2], repeat[3], len(targets)]
        for t in targets:
            args += [t["group_key"], orjson.dumps(t["meta"]), t["group_wait"], t["group_interval"],
                     t["hold_until"], t["receiver"], len(t["channels"])]
            for channel in t["channels"]:
                args += [channel, orjson.dumps({"alert_id": alert_id, "transition": transition,
                                                "channel": channel})]
        return int(await self._intake(keys=[self.np], args=args))

    # --- groups -------------------------------------------------------------------------------

    async def due_groups(self, now: float, limit: int = 100) -> list[str]:
        raw = await self.r.zrangebyscore(f"{self.np}groups", "-inf", now, start=0, num=limit)
        return [_s(x) for x in raw]

    async def group(self, group_key: str) -> tuple[dict[str, Any] | None, list[GroupItem]]:
        meta_raw = await self.r.hget(f"{self.np}groupmeta:{group_key}", "meta")
        items_raw = await self.r.hgetall(f"{self.np}group:{group_key}")
        items = []
        for field, value in items_raw.items():
            v = orjson.loads(value)
            items.append(GroupItem(_s(field), v["alert_id"], v["transition"], v["channel"]))
        return (orjson.loads(meta_raw) if meta_raw else None), items

    async def postpone_group(self, group_key: str, at: float) -> None:
        await self.r.zadd(f"{self.np}groups", {group_key: at}, xx=True)

    async def drop_empty_group(self, group_key: str) -> None:
        if not await self.r.hlen(f"{self.np}group:{group_key}"):
            await self.r.zrem(f"{self.np}groups", group_key)

    async def flush(self, group_key: str, fields: Sequence[str], notifications: Sequence[Notification],
                    history: Sequence[tuple[str, Mapping[str, Any]]], group_interval: float,
                    now: float) -> bool:
        """Atomically: take ``fields`` out of the group, queue the notifications, write the
        history entries, reschedule (or drop) the group. False if the group changed under us."""
        args: list[Any] = [now, group_key, group_interval, int(max(group_interval * 2, 3600)),
                           len(fields), *fields, len(notifications)]
        for n in notifications:
            args += [n.notification_id, n.queue, n.to_json()]
        args.append(len(history))
        for alert_id, entry in history:
            args += [alert_id, orjson.dumps(entry)]
        return bool(await self._flush(keys=[self.np, self.root], args=args))

    # --- delivery -----------------------------------------------------------------------------

    async def due_queues(self, now: float, limit: int = 1000) -> list[str]:
        raw = await self.r.zrangebyscore(f"{self.np}queues", "-inf", now, start=0, num=limit)
        return [_s(x) for x in raw]

    async def claim(self, queue: str, now: float, lease: float, limit: int = 20) -> list[Claimed]:
        raw = await self._claim(keys=[self.np], args=[queue, now, now + lease, limit])
        return [Claimed(_s(raw[i]), raw[i + 1], int(raw[i + 2])) for i in range(0, len(raw), 3)]

    async def delivered(self, queue: str, notification_id: str,
                        history: Sequence[tuple[str, Mapping[str, Any]]],
                        stream: tuple[str, int, bytes] | None = None) -> bool:
        args: list[Any] = [queue, notification_id, self.delivered_ttl, time.time(), len(history)]
        for alert_id, entry in history:
            args += [alert_id, orjson.dumps(entry)]
        if stream is not None:
            args += list(stream)
        return bool(await self._success(keys=[self.np, self.root], args=args))

    async def retry(self, queue: str, failed_id: str, others: Sequence[str], at: float) -> int:
        return int(await self._retry(keys=[self.np], args=[queue, at, failed_id, *others]))

    async def dead_letter(self, queue: str, notification_id: str, reason: str, permanent: bool,
                          attempts: int, at: str,
                          history: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> bool:
        """Move the notification from its queue to the dead-letter stream (with the history
        entries); False if it was no longer queued (delivered or dead-lettered meanwhile)."""
        args: list[Any] = [queue, notification_id, reason, int(permanent), attempts, at,
                           DEAD_LETTER_MAXLEN, len(history)]
        for alert_id, entry in history:
            args += [alert_id, orjson.dumps(entry)]
        return bool(await self._dead(keys=[self.np, self.root], args=args))

    async def dead_entry(self, entry_id: str, reason: str, raw: bytes | str) -> None:
        """An alert stream entry that is not an alert: kept in the dead-letter stream."""
        await self.r.xadd(self.dead_stream, {"alert_entry": entry_id, "reason": reason[:2000],
                                             "alert": raw, "at": time.time()},
                          maxlen=DEAD_LETTER_MAXLEN, approximate=True)

    # --- repeats ------------------------------------------------------------------------------

    async def due_repeats(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        raw = await self.r.zrangebyscore(f"{self.np}repeat", "-inf", now, start=0, num=limit,
                                         withscores=True)
        return [(_s(m), float(s)) for m, s in raw]

    async def repeat_count(self, alert_id: str) -> int:
        return int(await self.r.hget(f"{self.np}repeatn", alert_id) or 0)

    async def drop_repeat(self, alert_id: str, score: float) -> None:
        await self._intake(keys=[self.np], args=[time.time(), alert_id, "-", self.dedup_ttl,
                                                 "advance", 0, score, await self.repeat_count(alert_id),
                                                 0])

    # --- inspection ---------------------------------------------------------------------------

    async def depth(self) -> dict[str, int]:
        """Queued (undelivered) notifications per queue."""
        out = {}
        for queue in await self.r.zrange(f"{self.np}queues", 0, -1):
            out[_s(queue)] = int(await self.r.zcard(f"{self.np}q:{_s(queue)}"))
        return out

    async def pending_groups(self) -> int:
        return int(await self.r.zcard(f"{self.np}groups"))


def notification_id(group_key: str, channel: str, fields: Sequence[str]) -> str:
    """Deterministic: the same group content flushed again gets the same id (never queued twice)."""
    raw = "\x1f".join((group_key, channel, *sorted(fields))).encode()
    return "ntf-" + hashlib.sha256(raw).hexdigest()[:24]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
