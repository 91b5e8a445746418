"""Alerts as people see and handle them, in Redis: list, show, acknowledge, resolve, history,
silences. The CLI (``jiancha alerts``), the notifier's HTTP API and the worker (auto-resolve)
share this one class.

Keys (prefix ``jc:``), besides the sink's (contract.md):

- ``jc:alert:{id}`` — the sink's hash; ``status`` is the authoritative status (the
  ``alert`` JSON keeps the version the engine wrote), plus ``acknowledged_by/_at`` and
  ``resolved_by/_at``;
- ``jc:alert:{id}:history`` — list of JSON entries ``{at, by, action, note, from, to, …}``
  (acknowledged, resolved, notified, silenced, unroutable, …), oldest first;
- ``jc:resolved`` / ``jc:resolved:{department}`` — resolved alerts (score = resolve time);
  ``jc:open*`` keeps open and acknowledged ones and loses the alert on resolve;
- ``jc:silences`` (hash id → JSON) and ``jc:silences:ends`` (sorted set id → end, epoch s).

Every status change is one Lua script: the check of the current status, the new status,
the history entry and the index updates happen together or not at all.
"""

from __future__ import annotations

import fnmatch
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from jiancha.rules.clock import Clock, WallClock
from jiancha.rules.lifecycle import TRANSITIONS, TransitionError

ListStatus = Literal["active", "open", "acknowledged", "resolved", "all"]
#: The longest a silence may last: a forgotten one mutes a department for a season, no more.
MAX_SILENCE = timedelta(days=90)

# KEYS: hash, history, open, open-dept, resolved, resolved-dept
# ARGV: allowed-from (comma separated), new status, history entry (flat JSON object without
#       'from'), score (epoch s), alert id, by, at
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {0, ''} end
if not string.find(',' .. ARGV[1] .. ',', ',' .. cur .. ',', 1, true) then return {-1, cur} end
local entry = cjson.decode(ARGV[3])
entry['from'] = cur
redis.call('HSET', KEYS[1], 'status', ARGV[2])
redis.call('RPUSH', KEYS[2], cjson.encode(entry))
if ARGV[2] == 'acknowledged' then
  redis.call('HSET', KEYS[1], 'acknowledged_by', ARGV[6], 'acknowledged_at', ARGV[7])
elseif ARGV[2] == 'resolved' then
  redis.call('HSET', KEYS[1], 'resolved_by', ARGV[6], 'resolved_at', ARGV[7])
  redis.call('ZREM', KEYS[3], ARGV[5])
  redis.call('ZREM', KEYS[4], ARGV[5])
  redis.call('ZADD', KEYS[5], ARGV[4], ARGV[5])
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[5])
end
return {1, cur}
"""


class AlertNotFound(KeyError):
    def __init__(self, alert_id: str) -> None:
        super().__init__(alert_id)
        self.alert_id = alert_id

    def __str__(self) -> str:
        return f"no alert {self.alert_id!r}"


class Silence(BaseModel):
    """Mutes notifications of matching alerts until ``ends_at`` (wall-clock time).

    Matchers: ``department``, ``rule`` (glob), ``severity``, ``case_id``, ``alert_id``;
    all given ones must match, at least one is required. Alerts stay visible and open.
    """

    model_config = ConfigDict(extra="forbid")

    silence_id: str = Field(default_factory=lambda: "sil-" + secrets.token_hex(6))
    department: str | None = None
    rule: str | None = None
    severity: Literal["yellow", "red", "escalated"] | None = None
    case_id: str | None = None
    alert_id: str | None = None
    starts_at: datetime
    ends_at: datetime
    created_by: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    expired_by: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Silence:
        if not any((self.department, self.rule, self.severity, self.case_id, self.alert_id)):
            raise ValueError("a silence needs at least one of department, rule, severity, "
                             "case_id, alert_id")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, alert: Mapping[str, Any]) -> bool:
        checks = (
            (self.department, alert.get("department")),
            (self.severity, alert.get("severity")),
            (self.case_id, alert.get("case_id")),
            (self.alert_id, alert.get("alert_id")),
        )
        if any(want is not None and want != got for want, got in checks):
            return False
        return self.rule is None or fnmatch.fnmatchcase(str(alert.get("rule") or ""), self.rule)


class AlertStore:
    def __init__(self, client: Any, prefix: str = "jc:", clock: Clock | None = None) -> None:
        self.r = client
        self.p = prefix
        self.clock = clock or WallClock()
        self._transition = client.register_script(_TRANSITION)

    # --- keys ---------------------------------------------------------------------------------

    def alert_key(self, alert_id: str) -> str:
        return f"{self.p}alert:{alert_id}"

    def history_key(self, alert_id: str) -> str:
        return f"{self.p}alert:{alert_id}:history"

    # --- reading ------------------------------------------------------------------------------

    async def get(self, alert_id: str) -> dict[str, Any]:
        """The alert JSON with the current status (and who acknowledged/resolved it)."""
        raw = await self.r.hgetall(self.alert_key(alert_id))
        if not raw:
            raise AlertNotFound(alert_id)
        return merge_alert(raw)

    async def history(self, alert_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(x) for x in await self.r.lrange(self.history_key(alert_id), 0, -1)]

    async def show(self, alert_id: str) -> dict[str, Any]:
        alert = await self.get(alert_id)
        alert["history"] = await self.history(alert_id)
        return alert

    async def department_of(self, alert_id: str) -> str | None:
        raw = await self.r.hmget(self.alert_key(alert_id), ["department", "status"])
        if raw[1] is None:
            raise AlertNotFound(alert_id)
        return _s(raw[0]) or None

    async def list(self, status: ListStatus = "active", department: str | None = None,
                   rule: str | None = None, severity: str | None = None, limit: int = 100,
                   offset: int = 0) -> list[dict[str, Any]]:
        """Newest first. ``active`` = open or acknowledged (the ``jc:open*`` indexes)."""
        suffix = f":{department}" if department else ""
        sources = []
        if status in ("active", "open", "acknowledged", "all"):
            sources.append(f"{self.p}open{suffix}")
        if status in ("resolved", "all"):
            sources.append(f"{self.p}resolved{suffix}")
        out: list[dict[str, Any]] = []
        skipped = 0
        async for chunk in self._newest_first(sources):
            async with self.r.pipeline(transaction=False) as pipe:
                for alert_id in chunk:
                    pipe.hgetall(self.alert_key(alert_id))
                rows = await pipe.execute()
            for raw in rows:
                if not raw:
                    continue
                alert = merge_alert(raw)
                if status in ("open", "acknowledged") and alert["status"] != status:
                    continue
                if rule and not fnmatch.fnmatchcase(alert.get("rule", ""), rule):
                    continue
                if severity and alert.get("severity") != severity:
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(alert)
                if len(out) >= limit:
                    return out
        return out

    async def _newest_first(self, keys: Sequence[str], batch: int = 200) -> AsyncIterator[list[str]]:
        """Members of the sorted sets ``keys``, highest score first, in chunks (read page by
        page, so a short list over millions of alerts reads little)."""
        pages: list[list[tuple[float, str]]] = [[] for _ in keys]
        offsets = [0] * len(keys)
        done = [False] * len(keys)

        async def fill(i: int) -> None:
            if not pages[i] and not done[i]:
                raw = await self.r.zrevrange(keys[i], offsets[i], offsets[i] + batch - 1, withscores=True)
                offsets[i] += len(raw)
                done[i] = len(raw) < batch
                pages[i] = [(score, _s(member)) for member, score in raw]

        while True:
            chunk: list[str] = []
            while len(chunk) < batch:
                for i in range(len(keys)):
                    await fill(i)
                live = [i for i in range(len(keys)) if pages[i]]
                if not live:
                    break
                best = max(live, key=lambda i: pages[i][0][0])
                chunk.append(pages[best].pop(0)[1])
            if not chunk:
                return
            yield chunk

    # --- lifecycle ----------------------------------------------------------------------------

    async def acknowledge(self, alert_id: str, by: str, note: str | None = None) -> dict[str, Any]:
        return await self._apply(alert_id, "acknowledge", by, note)

    async def resolve(self, alert_id: str, by: str, note: str | None = None,
                      auto: bool = False) -> dict[str, Any]:
        """Resolve (``auto``: jiancha itself, e.g. with :func:`rules.lifecycle.auto_resolvable`'s
        reason as the note)."""
        return await self._apply(alert_id, "resolve", by, note, auto=auto)

    async def _apply(self, alert_id: str, action: str, by: str, note: str | None,
                     auto: bool = False) -> dict[str, Any]:
        if not by or not by.strip():
            raise ValueError("who acts must be given (by)")
        sources, target = TRANSITIONS[action]
        department = await self.department_of(alert_id)
        now = self.clock.now()
        entry: dict[str, Any] = {"at": now.isoformat(), "by": by, "action": target, "to": target}
        if note:
            entry["note"] = note
        if auto:
            entry["auto"] = True
        dept = department or "-"
        keys = [self.alert_key(alert_id), self.history_key(alert_id), f"{self.p}open",
                f"{self.p}open:{dept}", f"{self.p}resolved", f"{self.p}resolved:{dept}"]
        code, current = await self._transition(
            keys=keys, args=[",".join(sorted(sources)), target, orjson.dumps(entry),
                             time.time(), alert_id, by, now.isoformat()])
        if int(code) == 0:
            raise AlertNotFound(alert_id)
        if int(code) < 0:
            raise TransitionError(action, _s(current))
        return await self.get(alert_id)

    async def add_history(self, alert_id: str, entry: Mapping[str, Any]) -> None:
        record = {"at": self.clock.now().isoformat(), **entry}
        await self.r.rpush(self.history_key(alert_id), orjson.dumps(record))

    # --- silences -----------------------------------------------------------------------------

    async def add_silence(self, *, created_by: str, reason: str, duration: timedelta | None = None,
                          ends_at: datetime | None = None, **matchers: Any) -> Silence:
        now = datetime.now(UTC)
        if ends_at is None:
            if duration is None or duration.total_seconds() <= 0:
                raise ValueError("give a positive duration or ends_at")
            if duration > MAX_SILENCE:
                raise ValueError(f"a silence lasts at most {MAX_SILENCE.days} days")
            ends_at = now + duration
        if ends_at - now > MAX_SILENCE:
            raise ValueError(f"a silence lasts at most {MAX_SILENCE.days} days")
        silence = Silence(starts_at=now, ends_at=ends_at, created_by=created_by, reason=reason,
                          **{k: v for k, v in matchers.items() if v is not None})
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(f"{self.p}silences", silence.silence_id, silence.model_dump_json())
            pipe.zadd(f"{self.p}silences:ends", {silence.silence_id: silence.ends_at.timestamp()})
            await pipe.execute()
        return silence

    async def silences(self, include_expired: bool = False) -> list[Silence]:
        raw = await self.r.hgetall(f"{self.p}silences")
        now = datetime.now(UTC)
        out = [Silence.model_validate_json(v) for v in raw.values()]
        if not include_expired:
            out = [s for s in out if s.active(now)]
        return sorted(out, key=lambda s: s.starts_at)

    async def expire_silence(self, silence_id: str, by: str) -> Silence:
        raw = await self.r.hget(f"{self.p}silences", silence_id)
        if raw is None:
            raise KeyError(silence_id)
        silence = Silence.model_validate_json(raw)
        now = datetime.now(UTC)
        if silence.ends_at > now:
            silence = silence.model_copy(update={"ends_at": max(now, silence.starts_at + timedelta(
                microseconds=1)), "expired_by": by})
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.hset(f"{self.p}silences", silence_id, silence.model_dump_json())
                pipe.zadd(f"{self.p}silences:ends", {silence_id: silence.ends_at.timestamp()})
                await pipe.execute()
        return silence

    async def active_silences(self) -> list[Silence]:
        """Silences in force now (read via the end index, so expired ones cost nothing)."""
        ids = await self.r.zrangebyscore(f"{self.p}silences:ends", time.time(), "+inf")
        if not ids:
            return []
        raw = await self.r.hmget(f"{self.p}silences", ids)
        now = datetime.now(UTC)
        return [s for s in (Silence.model_validate_json(v) for v in raw if v) if s.active(now)]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


def merge_alert(raw: Mapping[Any, Any]) -> dict[str, Any]:
    fields = {_s(k): v for k, v in raw.items()}
    alert: dict[str, Any] = orjson.loads(fields["alert"]) if "alert" in fields else {}
    alert["status"] = _s(fields.get("status")) or alert.get("status", "open")
    for key in ("acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at"):
        if key in fields:
            alert[key] = _s(fields[key])
    return alert


def matching_silence(silences: Sequence[Silence], alert: Mapping[str, Any]) -> Silence | None:
    return next((s for s in silences if s.matches(alert)), None)
