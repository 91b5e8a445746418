"""The notifier process (``jiancha notifier``).

Three loops and an HTTP server share one asyncio loop; none waits for a channel:

- **intake**: reads ``jc:alerts`` through the consumer group (own pending entries first,
  then entries idle at dead consumers, then new ones), routes each alert version to its
  receivers and adds it to their groups in Redis (one Lua script with the dedup marks),
  then XACKs. A crash before the XACK re-reads the entry; the dedup marks make that harmless.
- **schedule**: flushes due groups into one notification per channel (dropping alerts
  resolved or silenced meanwhile; holding yellow ones to working hours) and queues
  reminders for still-open red alerts every ``repeat_interval``.
- **dispatch**: one lane (task) per channel queue with something due; a lane sends its
  notifications one by one and, on a failure, puts the queue back with exponential backoff.
  A slow or dead channel only holds up its own lane. A notification that can never be
  delivered (its channel config does not validate once rendered, e.g. a department that
  makes an invalid stream name; a malformed webhook URL; an HTTP 4xx; refused recipients)
  goes to the dead-letter stream ``jc:notify:dead`` at once, with its reason, and the lane
  goes on; one that keeps failing goes there after ``JIANCHA_NOTIFIER_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jiancha.rules.clock import Clock, SimulatedClock, make_clock
from jiancha.settings import NotifierSettings

from .api import create_api
from .mail import EmailChannel, SmtpServer
from .queue import NotifyQueue, notification_id
from .ratelimit import TokenBucket
from .render import render
from .routing import (
    DEFAULT_ROUTING_FILE,
    Routing,
    WorkingHoursClock,
    channel_config,
    load_routing,
)
from .store import AlertNotFound, AlertStore, Silence, matching_silence, merge_alert
from .stream import StreamChannel
from .tokens import Tokens, load_tokens
from .types import DeliveryError, Notification, NotificationItem
from .webhook import WebhookChannel

log = logging.getLogger("jiancha.notifier")
T = TypeVar("T")
_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
_REPEATING = ("red", "escalated")


class NotifierMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.alerts_read = Counter("jiancha_notifier_alerts_read", "Alert versions read from the stream",
                                   ["transition"], registry=r)
        self.queued = Counter("jiancha_notifier_items_queued",
                              "(alert, receiver, channel) items added to a group", registry=r)
        self.delivered = Counter("jiancha_notifier_delivered", "Notifications delivered",
                                 ["channel_type"], registry=r)
        self.failures = Counter("jiancha_notifier_delivery_failures",
                                "Failed delivery attempts (retried with backoff)",
                                ["channel_type"], registry=r)
        self.suppressed = Counter("jiancha_notifier_suppressed",
                                  "Items not sent: silenced, or resolved before sending",
                                  ["reason"], registry=r)
        self.unroutable = Counter("jiancha_notifier_unroutable",
                                  "Receivers that could not be reached (missing contact, …)",
                                  registry=r)
        self.queue_depth = Gauge("jiancha_notifier_queued",
                                 "Notifications waiting for delivery (all channels)", registry=r)
        self.redis_errors = Counter("jiancha_notifier_redis_errors", "Redis errors (retried)",
                                    registry=r)
        self.dead_lettered = Counter(
            "jiancha_notifier_dead_lettered",
            "Notifications moved to the dead-letter stream: never deliverable (permanent), "
            "failing after the last attempt (attempts); alert stream entries that are not "
            "alerts (unreadable)", ["channel_type", "cause"], registry=r)


class Notifier:
    def __init__(self, settings: NotifierSettings, routing: Routing, tokens: Tokens, client: Any,
                 clock: Clock | None = None, hours: WorkingHoursClock | None = None) -> None:
        from jiancha.rules.calendar import OfficialCalendar

        self.settings = settings
        self.routing = routing
        self.tokens = tokens
        self.r = client
        self.prefix = settings.redis_prefix
        self.clock = clock or make_clock(settings.clock_start, settings.clock_speed, settings.clock_anchor)
        self.hours = hours or WorkingHoursClock(
            routing.working_hours, OfficialCalendar.from_file(settings.calendar_file), settings.tz)
        self.store = AlertStore(client, self.prefix, self.clock)
        self.queue = NotifyQueue(client, self.prefix, settings.notifier_dedup_days * 86400)
        self.metrics = NotifierMetrics()
        self.stream = f"{self.prefix}alerts"
        self.group = settings.notifier_group
        self.consumer = settings.notifier_consumer or _default_consumer()
        smtp_password = (settings.notifier_smtp_password.get_secret_value()
                         if settings.notifier_smtp_password else None)
        self.smtp = SmtpServer(
            settings.notifier_smtp_host, settings.notifier_smtp_port, settings.notifier_smtp_from,
            settings.notifier_smtp_username, smtp_password, settings.notifier_smtp_starttls,
            settings.notifier_smtp_ssl) if settings.notifier_smtp_host else None
        self.ready = False
        self._stop = asyncio.Event()
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._channels: dict[bytes, Any] = {}
        self._stream_groups: set[str] = set()
        self._silences: tuple[float, list[Silence]] = (0.0, [])
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.max_lanes = 64

    # --- running ------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self._check_redis()
        await self._ensure_group()
        await self._ensure_stream_groups()
        self._session = aiohttp.ClientSession()
        await self.start_api()
        loops = [asyncio.create_task(self._forever(name, fn)) for name, fn in (
            ("intake", self.intake_once), ("schedule", self.schedule_once),
            ("dispatch", self.dispatch_once), ("gauges", self.gauges_once))]
        self.ready = True
        log.info("notifier %s ready: stream %s, group %s, API on %s:%s", self.consumer,
                 self.stream, self.group, self.settings.notifier_host, self.settings.notifier_port)
        try:
            await self._stop.wait()
        finally:
            self.ready = False
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            lanes = [t for t in self._lanes.values() if not t.done()]
            if lanes:  # let sends in progress finish and be recorded, rather than resent
                await asyncio.wait(lanes, timeout=10)
                for t in lanes:
                    t.cancel()
            if self._runner is not None:
                await self._runner.cleanup()
            await self._session.close()

    @property
    def public_url(self) -> str:
        """Where people reach the notifier's pages (links in notifications)."""
        s = self.settings
        return s.notifier_public_url or f"http://{s.notifier_host}:{s.notifier_port}"

    async def start_api(self) -> None:
        from jiancha.rules.counted_time import WorkingTime
        from jiancha.rules.rulebook import DEFAULT_RULES_DIR, load_ruleset

        from .pages import AlertPages

        s = self.settings
        pages = AlertPages(self.store, self.tokens, WorkingTime(self.hours.calendar, s.tz),
                           self.notify_resolved, s.notifier_public_url,
                           load_ruleset(s.rules_dir or DEFAULT_RULES_DIR))
        app = create_api(self.store, self.tokens, self.health, self.metrics.registry,
                         TokenBucket(s.notifier_rate_per_second, s.notifier_rate_burst),
                         ready=lambda: self.ready, pages=pages, on_resolved=self.notify_resolved)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.notifier_host, self.settings.notifier_port)
        await site.start()

    async def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {"ready": self.ready, "consumer": self.consumer, "group": self.group}
        with contextlib.suppress(*_REDIS_ERRORS):
            info["queued"] = await self.queue.depth()
            info["groups_waiting"] = await self.queue.pending_groups()
        return info

    async def _forever(self, name: str, step: Callable[[], Awaitable[bool]]) -> None:
        """Run ``step`` until stopped; sleep a poll interval when it found nothing to do;
        back off on Redis errors (never give up: Redis comes back, the work is still there)."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                busy = await step()
                backoff = 0.1
                if not busy:
                    await asyncio.sleep(self.settings.notifier_poll_seconds)
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                self.metrics.redis_errors.inc()
                log.warning("%s: Redis unavailable (%s); retrying in %.1fs", name, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("%s failed; retrying", name)
                await asyncio.sleep(1.0)

    async def _check_redis(self) -> None:
        """Wait for Redis (it may start after us); fail at once on credentials or ACLs, with a
        message naming the setting."""
        from jiancha.agents.sinks.redis import RedisAlertSink

        backoff = 0.2
        while True:
            try:
                await RedisAlertSink(self.r, self.prefix).check()
                return
            except _REDIS_ERRORS as exc:
                log.warning("Redis not reachable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _ensure_group(self) -> None:
        try:
            await self.r.xgroup_create(self.stream, self.group, id=self.settings.notifier_group_start_id,
                                       mkstream=True)
            log.info("created consumer group %s on %s from %s", self.group, self.stream,
                     self.settings.notifier_group_start_id)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _ensure_stream_groups(self) -> None:
        """Create the consumer groups of the stream channels now, so that in-house readers can
        wait on them before the first notification (templated streams: at first delivery)."""
        from .types import StreamConfig

        for receiver in self.routing.receivers.values():
            for config in receiver.channels:
                if isinstance(config, StreamConfig) and "{" not in config.stream:
                    channel = StreamChannel(config, self.prefix)
                    await channel.ensure_group(self.r)
                    self._stream_groups.add(channel.key)

    # --- intake -------------------------------------------------------------------------------

    _pending_from: str | None = "0"
    _last_claim: float = 0.0

    async def intake_once(self) -> bool:
        if self._pending_from is not None:  # our own entries read but not acknowledged before
            resp = await self.r.xreadgroup(self.group, self.consumer, {self.stream: self._pending_from},
                                           count=100)
            entries = resp[0][1] if resp else []
            if not entries:
                self._pending_from = None
                return True
            for entry_id, fields in entries:
                await self.handle_entry(entry_id, fields)
            self._pending_from = _s(entries[-1][0])
            return True
        if time.monotonic() - self._last_claim > self.settings.notifier_claim_idle_seconds / 2:
            self._last_claim = time.monotonic()
            idle_ms = int(self.settings.notifier_claim_idle_seconds * 1000)
            start = "0-0"
            while True:  # entries a dead consumer had read and not acknowledged
                claimed = await self.r.xautoclaim(self.stream, self.group, self.consumer, idle_ms,
                                                  start_id=start, count=100)
                for entry_id, fields in claimed[1]:
                    await self.handle_entry(entry_id, fields)
                start = _s(claimed[0])
                if start == "0-0":
                    break
        resp = await self.r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=100,
                                       block=500)
        entries = resp[0][1] if resp else []
        for entry_id, fields in entries:
            await self.handle_entry(entry_id, fields)
        return bool(entries)

    async def handle_entry(self, entry_id: Any, fields: Mapping[Any, Any] | None) -> None:
        raw = (fields or {}).get(b"alert") or (fields or {}).get("alert")
        alert: dict[str, Any] | None = None
        try:
            if raw is None:
                raise ValueError("no field 'alert'")
            alert = orjson.loads(raw)
            if not all(isinstance(alert.get(k), str) for k in ("alert_id", "rule", "severity")):
                raise ValueError("alert_id, rule and severity are required")
            if not all(isinstance(alert.get(k), str | None) for k in ("department", "actor", "status")):
                raise ValueError("department, actor and status must be strings")
        except (orjson.JSONDecodeError, ValueError, AttributeError) as exc:
            log.error("alert stream entry %s is not an alert (%s); dead-lettered", _s(entry_id), exc)
            await self.queue.dead_entry(_s(entry_id), f"not an alert: {exc}", raw or b"")
            self.metrics.dead_lettered.labels("none", "unreadable").inc()
            alert = None
        if alert is not None:
            transition = ("retracted" if alert.get("status") == "retracted"
                          else "escalated" if alert["severity"] == "escalated" else "open")
            self.metrics.alerts_read.labels(transition).inc()
            await self.route(alert, transition, transition)
        await self.r.xack(self.stream, self.group, entry_id)

    async def route(self, alert: Mapping[str, Any], kind: str, transition: str,
                    repeat: tuple[str, float, float, int] | None = None) -> int:
        """Queue ``alert`` for its receivers. ``kind`` is the group's transition (open,
        escalated, repeat), ``transition`` the dedup name (open, escalated, repeat-N)."""
        alert_id = alert["alert_id"]
        status = _s(await self.r.hget(self.store.alert_key(alert_id), "status")) or "open"
        if kind == "open" and status == "resolved":
            return 0  # resolved before we got to it: nothing to tell
        severity, department, rule = alert["severity"], alert.get("department"), alert["rule"]
        targets, problems = self.routing.targets(department, rule, severity, alert.get("actor"))
        if kind in ("retracted", "resolved") and severity == "escalated":
            # the correction goes to whoever got a version: the red one's receivers too
            red, more = self.routing.targets(department, rule, "red", alert.get("actor"))
            known = {t.receiver for t in targets}
            targets = [*targets, *(t for t in red if t.receiver not in known)]
            problems = [*problems, *(p for p in more if p not in problems)]
        for problem in problems:
            self.metrics.unroutable.inc()
            log.warning("alert %s (%s, %s): %s", alert_id, rule, department, problem)
        if repeat is not None:
            targets = [t for t in targets if t.repeat_interval > 0]
        now = time.time()
        hold_until = 0.0
        if any(t.hold for t in targets):
            clock_now = self.clock.now()
            if not self.hours.is_open(clock_now):
                hold_until = self.real_time_of(self.hours.next_open(clock_now))
        specs = []
        for t in targets:
            specs.append({
                "group_key": f"{department or '-'}|{rule}|{t.receiver}|{kind}",
                "meta": {"receiver": t.receiver, "receiver_name": t.receiver_name,
                         "department": department, "rule": rule, "severity": severity,
                         "transition": kind, "channels": dict(t.channels),
                         "group_interval": t.group_interval, "hold": t.hold},
                "group_wait": t.group_wait, "group_interval": t.group_interval,
                "hold_until": hold_until if t.hold else 0, "receiver": t.receiver,
                "channels": [name for name, _ in t.channels],
            })
        if repeat is None:
            intervals = [t.repeat_interval for t in targets if t.repeat_interval > 0]
            if severity in _REPEATING and status == "open" and intervals:
                repeat = ("schedule", now + min(intervals), 0, 0)
            else:
                repeat = ("none", 0, 0, 0)
        added = await self.queue.enqueue(alert_id, transition, specs, now, repeat)
        if added > 0:
            self.metrics.queued.inc(added)
        if problems and added >= 0:
            await self.store.add_history(alert_id, {"by": "notifier", "action": "unroutable",
                                                    "transition": transition,
                                                    "note": "; ".join(problems)})
        return added

    async def notify_resolved(self, alert: Mapping[str, Any]) -> None:
        """A person resolved ``alert``: whoever was told of it is told so (transition
        ``resolved``), with the resolve's note in the alert's history."""
        await self.route(alert, "resolved", "resolved")

    def real_time_of(self, instant: Any) -> float:
        if isinstance(self.clock, SimulatedClock):
            return self.clock.real_time_of(instant)
        return float(instant.timestamp())

    # --- groups and repeats -------------------------------------------------------------------

    async def schedule_once(self) -> bool:
        now = time.time()
        groups = await self.queue.due_groups(now)
        for gkey in groups:
            await self.flush_group(gkey, now)
        repeats = await self.queue.due_repeats(now)
        for alert_id, score in repeats:
            await self.remind(alert_id, score, now)
        return len(groups) >= 100 or len(repeats) >= 100

    async def silences(self) -> list[Silence]:
        at, cached = self._silences
        if time.monotonic() - at > 1.0:
            cached = await self.store.active_silences()
            self._silences = (time.monotonic(), cached)
        return cached

    async def load_alerts(self, alert_ids: list[str]) -> dict[str, dict[str, Any]]:
        async with self.r.pipeline(transaction=False) as pipe:
            for alert_id in alert_ids:
                pipe.hgetall(self.store.alert_key(alert_id))
            rows = await pipe.execute()
        return {aid: merge_alert(raw) for aid, raw in zip(alert_ids, rows, strict=True) if raw}

    async def flush_group(self, gkey: str, now: float) -> None:
        meta, items = await self.queue.group(gkey)
        if not items:
            await self.queue.drop_empty_group(gkey)
            return
        if meta is None:
            log.error("group %s has no metadata; its %d item(s) wait", gkey, len(items))
            await self.queue.postpone_group(gkey, now + 60)
            return
        if meta.get("hold"):
            clock_now = self.clock.now()
            if not self.hours.is_open(clock_now):
                await self.queue.postpone_group(gkey, self.real_time_of(self.hours.next_open(clock_now)))
                return
        alerts = await self.load_alerts(sorted({i.alert_id for i in items}))
        silences = await self.silences()
        kind = meta["transition"]
        by_channel: dict[str, list[NotificationItem]] = defaultdict(list)
        fields_by_channel: dict[str, list[str]] = defaultdict(list)
        history: list[tuple[str, dict[str, Any]]] = []
        at = self.clock.now().isoformat()
        for item in items:
            alert = alerts.get(item.alert_id)
            base = {"at": at, "by": "notifier", "receiver": meta["receiver"], "channel": item.channel,
                    "transition": item.transition}
            reason = None
            if alert is None:
                reason = "alert not found"
            elif alert["status"] == "resolved" and kind not in ("escalated", "resolved"):
                reason = "resolved before the notification was sent"
            elif alert["status"] == "retracted" and kind != "retracted":
                reason = "retracted before the notification was sent"
            elif kind in ("retracted", "resolved") and not await self._was_notified(
                    item.alert_id, meta["receiver"]):
                reason = f"{kind}: this receiver was never told of the alert"
            elif kind == "repeat" and alert["status"] != "open":
                reason = f"{alert['status']}: no reminder"
            elif item.channel not in meta["channels"]:
                reason = "the receiver has no such channel any more"
            if reason is not None:
                self.metrics.suppressed.labels("resolved").inc()
                history.append((item.alert_id, {**base, "action": "not_notified", "note": reason}))
                continue
            assert alert is not None
            silence = matching_silence(silences, alert)
            if silence is not None:
                self.metrics.suppressed.labels("silenced").inc()
                history.append((item.alert_id, {**base, "action": "silenced",
                                                "silence_id": silence.silence_id,
                                                "note": f"{silence.reason} ({silence.created_by})"}))
                continue
            by_channel[item.channel].append(NotificationItem(alert_id=item.alert_id,
                                                             transition=item.transition))
            fields_by_channel[item.channel].append(item.field)
        notifications = [
            Notification(
                notification_id=notification_id(gkey, channel, fields_by_channel[channel]),
                group_key=gkey, receiver=meta["receiver"], channel=channel,
                channel_config=meta["channels"][channel], transition=kind,
                department=meta.get("department"), rule=meta["rule"], severity=meta["severity"],
                items=sorted(chosen, key=lambda i: i.alert_id), created_at=now)
            for channel, chosen in sorted(by_channel.items())
        ]
        done = await self.queue.flush(gkey, [i.field for i in items], notifications, history,
                                      float(meta.get("group_interval", 0)), now)
        if done and notifications:
            log.info("group %s: %d notification(s), %d alert(s)", gkey, len(notifications),
                     sum(len(n.items) for n in notifications))

    async def _was_notified(self, alert_id: str, receiver: str) -> bool:
        """Whether a version of the alert reached ``receiver`` (its history says so)."""
        return any(h.get("action") == "notified" and h.get("receiver") == receiver
                   for h in await self.store.history(alert_id))

    async def remind(self, alert_id: str, score: float, now: float) -> None:
        try:
            alert = await self.store.get(alert_id)
        except AlertNotFound:
            await self.queue.drop_repeat(alert_id, score)
            return
        if alert["status"] != "open" or alert.get("severity") not in _REPEATING:
            await self.queue.drop_repeat(alert_id, score)
            return
        targets, _ = self.routing.targets(alert.get("department"), alert["rule"], alert["severity"],
                                          alert.get("actor"))
        intervals = [t.repeat_interval for t in targets if t.repeat_interval > 0]
        if not intervals:
            await self.queue.drop_repeat(alert_id, score)
            return
        n = await self.queue.repeat_count(alert_id) + 1
        await self.route(alert, "repeat", f"repeat-{n}",
                         repeat=("advance", now + min(intervals), score, n))

    # --- delivery -----------------------------------------------------------------------------

    async def dispatch_once(self) -> bool:
        for queue, task in list(self._lanes.items()):
            if task.done():
                del self._lanes[queue]
                if not task.cancelled() and task.exception() is not None:
                    log.error("lane %s failed: %r", queue, task.exception())
        now = time.time()
        for queue in await self.queue.due_queues(now):
            if queue in self._lanes:
                continue
            if len(self._lanes) >= self.max_lanes:
                break
            self._lanes[queue] = asyncio.create_task(self.lane(queue))
        return False

    def channel_for(self, n: Notification) -> Any:
        key = orjson.dumps(n.channel_config, option=orjson.OPT_SORT_KEYS)
        channel = self._channels.get(key)
        if channel is None:
            config = channel_config(n.channel_config)
            if config.type == "webhook":
                assert self._session is not None
                channel = WebhookChannel(config, self._session)
            elif config.type == "email":
                channel = EmailChannel(config, self.smtp)
            else:
                channel = StreamChannel(config, self.prefix)
            self._channels[key] = channel
        return channel

    async def lane(self, queue: str) -> None:
        s = self.settings
        claimed = await self.queue.claim(queue, time.time(), s.notifier_lease_seconds)
        for index, c in enumerate(claimed):
            others = [x.notification_id for x in claimed[index + 1:]]
            try:
                n = Notification.model_validate_json(c.body)
            except ValidationError as exc:
                await self._dead(queue, c, None, f"the queued notification is unreadable: {exc}")
                continue
            try:
                channel = self.channel_for(n)
            except (ValidationError, DeliveryError) as exc:
                await self._dead(queue, c, n, f"channel {n.channel!r} of {n.receiver} cannot be "
                                 f"used: {_problem(exc)}")
                continue
            try:
                await self._deliver(queue, c, n, channel)
                self.metrics.delivered.labels(channel.type).inc()
            except DeliveryError as exc:
                if exc.permanent:
                    await self._dead(queue, c, n, str(exc))
                    continue
                await self._failed(queue, c, n, others, str(exc), loud=False)
                return
            except _REDIS_ERRORS:
                raise  # the lease brings the rest back
            except Exception as exc:
                log.exception("delivering %s to %s failed", c.notification_id, queue)
                await self._failed(queue, c, n, others, repr(exc), loud=True)
                return

    async def _deliver(self, queue: str, c: Any, n: Notification, channel: Any) -> None:
        alerts = await self.load_alerts([i.alert_id for i in n.items])
        message = render(n, [alerts.get(i.alert_id, {"alert_id": i.alert_id}) for i in n.items],
                         self.clock.now(), self.public_url)
        history = self._history(n, "notified")
        if isinstance(channel, StreamChannel):
            if channel.key not in self._stream_groups:
                await channel.ensure_group(self.r)
                self._stream_groups.add(channel.key)
            await self._persist(functools.partial(
                self.queue.delivered, queue, c.notification_id, history,
                channel.stream_write(message)))
        else:
            await channel.send(message)
            await self._persist(functools.partial(
                self.queue.delivered, queue, c.notification_id, history))

    def _history(self, n: Notification, action: str, **more: Any) -> list[tuple[str, dict[str, Any]]]:
        at = self.clock.now().isoformat()
        return [(i.alert_id, {"at": at, "by": "notifier", "action": action, "receiver": n.receiver,
                              "channel": n.channel, "transition": i.transition,
                              "notification_id": n.notification_id, **more})
                for i in n.items]

    async def _failed(self, queue: str, c: Any, n: Notification, others: list[str], error: str,
                      loud: bool) -> None:
        """A transient failure: retry with backoff, or dead-letter after the last attempt."""
        s = self.settings
        attempts = c.attempts + 1
        delay = min(s.notifier_retry_base_seconds * 2 ** (attempts - 1), s.notifier_retry_max_seconds)
        self.metrics.failures.labels(_channel_type(n.channel_config)).inc()
        if attempts >= s.notifier_max_attempts:
            await self._dead(queue, c, n, f"failed {attempts} times (JIANCHA_NOTIFIER_MAX_ATTEMPTS), "
                             f"last: {error}", permanent=False)
            await self._persist(lambda: self.queue.retry(queue, "", others, time.time() + delay))
            return
        (log.error if loud else log.warning)(
            "%s: delivery of %s failed (attempt %d of %d): %s; retrying in %.1fs", queue,
            c.notification_id, attempts, s.notifier_max_attempts, error, delay)
        await self._persist(lambda: self.queue.retry(queue, c.notification_id, others, time.time() + delay))

    async def _dead(self, queue: str, c: Any, n: Notification | None, reason: str,
                    permanent: bool = True) -> None:
        """Move a notification that will never be delivered to the dead-letter stream, with
        its reason, once; its alerts' history says so. The lane goes on with the next."""
        reason = reason[:2000]
        attempts = c.attempts + (0 if permanent else 1)
        history = self._history(n, "dead_lettered", note=reason) if n is not None else []
        done = await self._persist(functools.partial(
            self.queue.dead_letter, queue, c.notification_id, reason, permanent, attempts,
            self.clock.now().isoformat(), history))
        if done:
            channel_type = _channel_type(n.channel_config) if n is not None else "invalid"
            self.metrics.dead_lettered.labels(channel_type, "permanent" if permanent else "attempts").inc()
            log.error("%s: notification %s dead-lettered (%s): %s", queue, c.notification_id,
                      self.queue.dead_stream, reason)

    async def _persist(self, op: Callable[[], Awaitable[T]]) -> T:
        """A Redis write that records a delivery: retried while Redis is away (up to half the
        lease), so that a sent notification is not sent again for want of its record."""
        deadline = time.monotonic() + self.settings.notifier_lease_seconds / 2
        backoff = 0.05
        while True:
            try:
                return await op()
            except _REDIS_ERRORS:
                if time.monotonic() > deadline:
                    raise
                self.metrics.redis_errors.inc()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def gauges_once(self) -> bool:
        depth = await self.queue.depth()
        self.metrics.queue_depth.set(sum(depth.values()))
        await asyncio.sleep(5)
        return True


def _channel_type(config: Mapping[str, Any]) -> str:
    """The channel type as a metric label: one of the known types, else ``invalid``."""
    kind = config.get("type")
    return kind if kind in ("webhook", "email", "stream") else "invalid"


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
    return str(exc)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


def _default_consumer() -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return name or f"notifier-{os.getpid()}"


def run_notifier(settings: NotifierSettings, loglevel: str = "INFO") -> None:
    """Load routing and tokens (failing fast with the file and key), then run until SIGTERM."""
    from jiancha.agents.sinks.redis import redis_client

    logging.basicConfig(level=loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    routing = load_routing(settings.notifier_routing_file or DEFAULT_ROUTING_FILE)
    tokens = load_tokens(settings.notifier_tokens_file) if settings.notifier_tokens_file else Tokens([])
    if not len(tokens):
        log.warning("no API tokens (JIANCHA_NOTIFIER_TOKENS_FILE): every /api request gets 401")

    async def main() -> None:
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        client = redis_client(settings.redis_url, settings.redis_username, password)
        notifier = Notifier(settings, routing, tokens, client)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, notifier.stop)
        try:
            await notifier.run()
        finally:
            await client.aclose()

    asyncio.run(main())
