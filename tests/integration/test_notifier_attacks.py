"""The notifier tried as an attacker and as an operator would, in
process against a real redis-server: the HTTP API through aiohttp's test server (real HTTP
on loopback) and the delivery loops of a :class:`Notifier` driven step by step.

- every API input is checked: 400 naming the field and its allowed range;
- an alert of another department is answered exactly as an absent one (404, same body);
- a per-token rate limit (429 with Retry-After), also for callers without a valid token;
- ``/health`` without a token says only whether the notifier is ready;
- a notification that can never be delivered goes to the dead-letter stream once, with its
  reason, and its lane goes on; a transient failure is retried and dead-lettered after
  ``max_attempts``;
- hypothesis fuzzing of the whole API: ≥ 10,000 generated requests, never a 5xx, every 400
  naming its field.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiancha.agents.sinks.redis import RedisAlertSink, redis_client
from jiancha.embedded import EmbeddedStack, free_port
from jiancha.notifier.api import MAX_LIMIT, MAX_OFFSET, create_api
from jiancha.notifier.queue import NotifyQueue
from jiancha.notifier.ratelimit import TokenBucket
from jiancha.notifier.routing import parse_routing
from jiancha.notifier.service import Notifier
from jiancha.notifier.store import AlertStore
from jiancha.notifier.tokens import parse_tokens
from jiancha.notifier.types import Notification, NotificationItem
from jiancha.producers.contract import Alert
from jiancha.settings import NotifierSettings

pytestmark = pytest.mark.integration
CST = timezone(timedelta(hours=8))
BUREAU, GONGAN = "bureau-token-attack", "gongan-token-attack"
PASSWORD = "pw-notifier-attacks"
TOKENS = {"tokens": [
    {"name": "bureau-duty", "role": "bureau", "token": BUREAU},
    {"name": "gongan-contact", "role": "department", "department": "gongan", "token": GONGAN},
]}


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    """A redis-server alone: the notifier needs no broker."""
    redis_only = EmbeddedStack(redis_password=PASSWORD)
    redis_only.start_redis()
    yield redis_only
    redis_only.stop()


def alert(alert_id: str, department: str, rule: str = "deadline.promise_broken",
          severity: str = "red") -> Alert:
    t = datetime(2026, 3, 4, 9, 0, tzinfo=CST)
    return Alert(alert_id=alert_id, rule=rule, severity=severity, case_id=f"case-{alert_id}",  # type: ignore[arg-type]
                 item_code="T-SIMPLE", department=department, actor="h1", detected_at=t,
                 event_time=t, message_zh="超过承诺时限", message_en="promise broken",
                 legal_basis="政务服务承诺时限", evidence=[f"ev-{alert_id}"])


class Api:
    """The notifier's API app on a loopback port, in this process, on its own event loop."""

    def __init__(self, stack: EmbeddedStack, rate_limit: TokenBucket | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.prefix = f"a{uuid.uuid4().hex[:8]}:"
        self.requests = 0

        async def health() -> dict[str, Any]:
            return {"ready": True, "consumer": "notifier-host-7", "group": "notifier",
                    "queued": {"handler@h1/email": 2}, "groups_waiting": 1}

        async def setup() -> TestClient:
            self.redis = redis_client(stack.redis_url, password=PASSWORD)
            self.store = AlertStore(self.redis, self.prefix)
            app = create_api(self.store, parse_tokens(TOKENS), health, None, rate_limit)
            client = TestClient(TestServer(app))
            await client.start_server()
            return client

        self.client = self.loop.run_until_complete(setup())

    def publish(self, *alerts: Alert) -> None:
        self.loop.run_until_complete(RedisAlertSink(self.redis, self.prefix).publish(list(alerts)))

    async def acall(self, method: str, path: str, token: str | None = None, body: Any = None,
                    raw: bytes | None = None) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        self.requests += 1
        async with self.client.request(method, path, headers=headers, data=data) as resp:
            payload = await resp.read()
            try:
                parsed = json.loads(payload)
            except ValueError:
                parsed = payload.decode(errors="replace")
            return resp.status, parsed, resp.headers

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             raw: bytes | None = None) -> tuple[int, Any, Any]:
        return self.loop.run_until_complete(self.acall(method, path, token, body, raw))

    def close(self) -> None:
        async def down() -> None:
            await self.client.close()
            await self.redis.aclose()

        self.loop.run_until_complete(down())
        self.loop.close()


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack) -> Iterator[Api]:
    a = Api(stack)
    a.publish(alert("own-1", "gongan"), alert("theirs-1", "gongshang"))
    yield a
    a.close()


def assert_names(status: int, body: Any, field: str, *words: str) -> None:
    assert status == 400, body
    assert body["error"] == "bad_request" and body["field"] == field, body
    assert body["message"].startswith(f"{field}:"), body
    for word in words:
        assert word in body["message"], body


# --- every input validated ---------------------------------------------------------------------


def test_a_silence_longer_than_the_maximum_is_refused_naming_duration(api: Api) -> None:
    base = {"department": "gongan", "reason": "drill"}
    for duration in ("100000000d", "9" * 400, 1e300, "91d"):
        status, body, _ = api.call("POST", "/api/silences", BUREAU, {**base, "duration": duration})
        assert_names(status, body, "duration", "90 days")
    for duration in (True, [], "-1h", "0s", "soon"):
        status, body, _ = api.call("POST", "/api/silences", BUREAU, {**base, "duration": duration})
        assert_names(status, body, "duration")
    far = (datetime.now(CST) + timedelta(days=365)).isoformat()
    for ends_at in (far, "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "yesterday", 5):
        status, body, _ = api.call("POST", "/api/silences", BUREAU, {**base, "ends_at": ends_at})
        assert_names(status, body, "ends_at")
    status, body, _ = api.call("POST", "/api/silences", BUREAU, {**base, "duration": "2h"})
    assert status == 201 and body["department"] == "gongan", body


def test_pagination_out_of_range_is_refused_naming_the_parameter(api: Api) -> None:
    for query, field in (("limit=-5", "limit"), ("limit=abc", "limit"), ("limit=0", "limit"),
                         (f"limit={MAX_LIMIT + 1}", "limit"), ("limit=1e3", "limit"),
                         ("offset=-1", "offset"), (f"offset={MAX_OFFSET + 1}", "offset"),
                         ("offset=99999999999999999999", "offset")):
        status, body, _ = api.call("GET", f"/api/alerts?{query}", BUREAU)
        assert_names(status, body, field, "from", "to")
    status, body, _ = api.call("GET", f"/api/alerts?limit={MAX_LIMIT}&offset={MAX_OFFSET}", BUREAU)
    assert status == 200 and body["count"] == 0


def test_filters_unknown_fields_and_long_texts_are_refused_naming_them(api: Api) -> None:
    checks = [
        ("GET", "/api/alerts?status=everything", None, "status"),
        ("GET", "/api/alerts?severity=purple", None, "severity"),
        ("GET", "/api/alerts?stauts=open", None, "stauts"),
        ("GET", "/api/alerts?limit=5&limit=6", None, "limit"),
        ("GET", "/api/alerts?rule=" + "x" * 300, None, "rule"),
        ("GET", "/api/alerts?department=gong%00an", None, "department"),
        ("GET", "/api/silences?all=maybe", None, "all"),
        ("POST", "/api/alerts/own-1/ack", {"note": "x" * 5000}, "note"),
        ("POST", "/api/alerts/own-1/ack", {"note": 5}, "note"),
        ("POST", "/api/alerts/own-1/ack", {"by": "a\nb"}, "by"),
        ("POST", "/api/alerts/own-1/ack", {"note": "ok", "status": "resolved"}, "status"),
        ("POST", "/api/alerts/own-1/ack", [1, 2], "body"),
        ("POST", "/api/silences", {"department": "gongan", "duration": "1h", "reason": "r",
                                   "creator": "x"}, "creator"),
        ("POST", "/api/silences", {"duration": "1h", "reason": "r"}, "department"),
        ("POST", "/api/silences", {"department": "gongan", "duration": "1h"}, "reason"),
        ("POST", "/api/silences", {"severity": "green", "duration": "1h", "reason": "r"}, "severity"),
        ("DELETE", "/api/silences/not-a-silence", None, "silence_id"),
    ]
    for method, path, body, field in checks:
        status, answer, _ = api.call(method, path, BUREAU, body)
        assert_names(status, answer, field)
    status, body, _ = api.call("POST", "/api/alerts/own-1/ack", BUREAU, raw=b"{not json")
    assert_names(status, body, "body", "JSON")
    status, body, _ = api.call("POST", "/api/alerts/own-1/ack", BUREAU, raw=b"x" * (65 * 1024))
    assert status == 413 and body["field"] == "body"
    # nothing above changed the alert
    assert api.call("GET", "/api/alerts/own-1", BUREAU)[1]["status"] == "open"


# --- one answer for "absent or not yours" --------------------------------------------------------


def test_another_departments_alert_is_answered_as_an_absent_one(api: Api) -> None:
    def answer(method: str, alert_id: str) -> tuple[int, Any]:
        suffix = "" if method == "GET" else "/ack"
        status, body, _ = api.call(method, f"/api/alerts/{alert_id}{suffix}", GONGAN, {} if suffix else None)
        return status, body

    for method in ("GET", "POST"):
        theirs = answer(method, "theirs-1")
        absent = answer(method, "absent-1")
        assert theirs[0] == absent[0] == 404
        assert theirs[1] == {"error": "not_found", "message": "no alert 'theirs-1'"}
        assert absent[1] == {"error": "not_found", "message": "no alert 'absent-1'"}
    status, body, _ = api.call("POST", "/api/alerts/theirs-1/resolve", GONGAN, {})
    assert (status, body) == (404, {"error": "not_found", "message": "no alert 'theirs-1'"})
    # the bureau sees it; nothing was changed by the department's tries
    status, body, _ = api.call("GET", "/api/alerts/theirs-1", BUREAU)
    assert status == 200 and body["status"] == "open"


# --- health and rate limit -------------------------------------------------------------------


def test_health_without_a_token_says_only_ready(api: Api) -> None:
    status, body, _ = api.call("GET", "/health")
    assert (status, body) == (200, {"ready": True})
    status, body, _ = api.call("GET", "/api/health", BUREAU)
    assert status == 200 and body["queued"] == {"handler@h1/email": 2}
    assert api.call("GET", "/api/health", GONGAN)[0] == 403
    assert api.call("GET", "/api/health")[0] == 401


def test_rate_limit_per_token_answers_429_with_retry_after(stack: EmbeddedStack) -> None:
    limited = Api(stack, TokenBucket(rate=0.5, burst=3))
    try:
        answers = [limited.call("GET", "/api/whoami", GONGAN) for _ in range(4)]
        assert [a[0] for a in answers] == [200, 200, 200, 429]
        _, body, headers = answers[3]
        assert body["error"] == "rate_limited" and "per second" in body["message"]
        assert int(headers["Retry-After"]) == 2
        # another token has its own bucket
        assert limited.call("GET", "/api/whoami", BUREAU)[0] == 200
        # guessing tokens is limited too (per address)
        guesses = [limited.call("GET", "/api/whoami", f"guess-{i}")[0] for i in range(4)]
        assert guesses == [401, 401, 401, 429]
        assert limited.call("GET", "/health")[0] == 429  # the same address, no valid token
    finally:
        limited.close()


# --- fuzzing ---------------------------------------------------------------------------------

FIELDS = {"status", "department", "rule", "severity", "limit", "offset", "all", "note", "by",
          "duration", "ends_at", "reason", "case_id", "alert_id", "silence_id", "body"}
_text = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", "-5", "0", "1", "1000", "1001", "abc", "1e3", "99999999999999999999", " 7", "open", "all",
     "resolved", "red", "purple", "gongan", "gongshang", "deadline.*", "\x00", "\n", "é" * 200,
     "100000000d", "2h", "-1h", "1.5d", "2026-12-01T18:00:00+08:00", "0001-01-01T00:00:00+14:00"]))
_json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
              st.floats(allow_nan=False, allow_infinity=False), _text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=6)
_keys = st.sampled_from([*sorted(FIELDS - {"body", "silence_id"}), "extra", "Status", ""])
_bodies = st.one_of(st.none(), st.dictionaries(_keys, _json_value, max_size=5),
                    _json_value, st.binary(max_size=40).map(lambda b: ("raw", b)))
_queries = st.lists(st.tuples(_keys, _text), max_size=4)
_ids = st.one_of(st.sampled_from(["own-1", "theirs-1", "absent", "sil-0123456789ab"]),
                 st.text(min_size=1, max_size=20))
_tokens = st.sampled_from([BUREAU, BUREAU, BUREAU, GONGAN, GONGAN, None, "wrong-token"])
_routes = st.sampled_from([
    ("GET", "/api/alerts"), ("GET", "/api/alerts/{id}"), ("POST", "/api/alerts/{id}/ack"),
    ("POST", "/api/alerts/{id}/resolve"), ("GET", "/api/silences"), ("POST", "/api/silences"),
    ("DELETE", "/api/silences/{id}"), ("GET", "/api/whoami"), ("GET", "/api/health"),
    ("GET", "/health"), ("PUT", "/api/alerts"), ("GET", "/api/nothing")])
_request = st.tuples(_routes, _ids, _queries, _bodies, _tokens)
BATCH = 25


def _check(request: tuple[Any, ...], status: int, body: Any) -> None:
    assert status < 500, (request, status, body)
    if status >= 400 and isinstance(body, dict):
        assert body.get("error") and body.get("message"), (request, body)
    if status == 400:
        assert body["field"] in FIELDS | {k for k, _ in request[2]} | (
            set(request[3]) if isinstance(request[3], dict) else set()), (request, body)
        assert body["message"].startswith(body["field"] + ":"), (request, body)
    elif status >= 400 and status not in (404, 405):  # aiohttp's own 404/405: plain text
        assert isinstance(body, dict), (request, status, body)


def test_fuzz_the_api_no_crash_every_rejection_names_its_field(api: Api) -> None:
    from urllib.parse import quote, urlencode

    start = api.requests
    statuses: dict[int, int] = {}

    @settings(max_examples=410, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(_request, min_size=BATCH, max_size=BATCH))
    def fuzz(batch: list[tuple[Any, ...]]) -> None:
        async def one(request: tuple[Any, ...]) -> None:
            (method, template), ident, query, body, token = request
            path = template.replace("{id}", quote(ident, safe=""))
            if query:
                path += "?" + urlencode(query)
            raw = body[1] if isinstance(body, tuple) else None
            status, answer, _ = await api.acall(method, path, token, None if raw is not None else body,
                                                raw)
            statuses[status] = statuses.get(status, 0) + 1
            _check(request, status, answer)

        async def run() -> None:
            for request in batch:
                await one(request)

        api.loop.run_until_complete(run())

    fuzz()
    sent = api.requests - start
    print(f"fuzzed the notifier API with {sent} requests: statuses {dict(sorted(statuses.items()))}")
    assert sent >= 10_000
    assert statuses.get(400, 0) > 1000 and statuses.get(200, 0) > 100


# --- dead letters ----------------------------------------------------------------------------


class Receiver:
    """A webhook receiver: answers ``status`` (200, 404, …) and counts the posts."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts += 1
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Driven:
    """A :class:`Notifier` whose loops are run step by step."""

    def __init__(self, stack: EmbeddedStack, routing: dict[str, Any], **settings: Any) -> None:
        self.prefix = f"d{uuid.uuid4().hex[:8]}:"
        self.settings = NotifierSettings.load(redis_url=stack.redis_url, redis_password=PASSWORD,
                                      redis_prefix=self.prefix, notifier_consumer="driven",
                                      notifier_retry_base_seconds=0.01,
                                      notifier_retry_max_seconds=0.02, notifier_lease_seconds=1,
                                      **settings)
        self.routing = parse_routing(routing)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self.redis = redis_client(self.settings.redis_url, password=PASSWORD)
        self.notifier = Notifier(self.settings, self.routing, parse_tokens(TOKENS), self.redis)
        self.notifier._session = aiohttp.ClientSession()
        await self.notifier._ensure_group()

    def publish(self, *alerts: Alert) -> None:
        self.loop.run_until_complete(RedisAlertSink(self.redis, self.prefix).publish(list(alerts)))

    def step(self, rounds: int = 1) -> None:
        """Read the stream, flush due groups, run every due lane to its end."""
        async def go() -> None:
            n = self.notifier
            await n.intake_once()  # its own pending entries (none) …
            await n.intake_once()  # … then the new ones
            for _ in range(rounds):
                await n.schedule_once()
                await n.dispatch_once()
                await asyncio.gather(*n._lanes.values())
                await asyncio.sleep(0.03)  # past the lanes' retry backoff, for the next round

        self.loop.run_until_complete(go())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def dead(self) -> list[dict[str, str]]:
        entries = self.run(self.redis.xrange(f"{self.prefix}notify:dead"))
        return [{k.decode(): v.decode(errors="replace") for k, v in fields.items()} for _, fields in entries]

    def history(self, alert_id: str) -> list[dict[str, Any]]:
        return self.run(self.notifier.store.history(alert_id))

    def queued(self) -> int:
        return int(self.run(self.redis.zcard(f"{self.prefix}notify:queues")))

    def close(self) -> None:
        async def down() -> None:
            assert self.notifier._session is not None
            await self.notifier._session.close()
            await self.redis.aclose()

        self.run(down())
        self.loop.close()


def _routing(channels: list[dict[str, Any]], **contacts: dict[str, str]) -> dict[str, Any]:
    return {"defaults": {"group_wait": 0, "group_interval": 0, "repeat_interval": 0},
            "contacts": contacts, "receivers": {"dept": {"channels": channels}},
            "default_receivers": ["dept"]}


def test_an_undeliverable_notification_is_dead_lettered_once_with_its_reason(stack: EmbeddedStack) -> None:
    hook = Receiver(404)
    routing = _routing([{"type": "stream", "stream": "notifications:{department}", "group": "oa"},
                        {"type": "webhook", "url": "{contact.hook}"}],
                       gongan={"hook": hook.url}, **{"gong an": {"hook": "http://"}})
    d = Driven(stack, routing)
    try:
        d.publish(alert("bad-dept", "gong an"), alert("good-dept", "gongan"))
        d.step(3)
        dead = d.dead()
        reasons = {(e["queue"], e["permanent"]): e["reason"] for e in dead}
        assert len(dead) == 3, dead
        assert "stream" in reasons[("dept@gong an/stream", "1")]  # the rendered stream name
        assert "not a valid http(s) URL" in reasons[("dept@gong an/webhook", "1")]
        assert "answered 404" in reasons[("dept@gongan/webhook", "1")]
        assert hook.posts == 1  # a 4xx is not tried again
        # the good department's stream got its notification; nothing is left queued
        assert d.run(d.redis.xlen(f"{d.prefix}notifications:gongan")) == 1
        assert d.queued() == 0
        stream_entry = next(e for e in dead if e["queue"] == "dept@gong an/stream")
        items = json.loads(stream_entry["notification"])["items"]
        assert items == [{"alert_id": "bad-dept", "transition": "open"}]
        actions = [(h["action"], h["channel"]) for h in d.history("bad-dept") if h.get("channel")]
        assert sorted(actions) == [("dead_lettered", "stream"), ("dead_lettered", "webhook")]
        # once: later rounds (past the lease) add nothing
        d.run(asyncio.sleep(1.1))
        d.step(2)
        assert len(d.dead()) == 3 and hook.posts == 1
    finally:
        d.close()
        hook.close()


def test_a_broken_notification_does_not_hold_up_its_lane(stack: EmbeddedStack) -> None:
    d = Driven(stack, _routing([{"type": "stream", "stream": "notifications:ops"}]))
    try:
        good = {"type": "stream", "stream": "notifications:ops"}
        bad = {"type": "stream", "stream": "notifications:bad name"}
        notes = [Notification(notification_id=f"ntf-{k}", group_key="g", receiver="ops", channel="stream",
                              channel_config=config, transition="open", rule="r", severity="red",
                              items=[NotificationItem(alert_id=f"a-{k}", transition="open")],
                              created_at=0.0)
                 for k, config in (("0-bad", bad), ("1-good", good))]
        queue: NotifyQueue = d.notifier.queue
        assert d.run(queue.flush("g", [], notes, [], 0, 0.0))
        d.step()  # one pass of the lane: the broken one dead-lettered, the next one delivered
        assert [e["notification_id"] for e in d.dead()] == ["ntf-0-bad"]
        assert d.run(d.redis.xlen(f"{d.prefix}notifications:ops")) == 1
        assert d.queued() == 0
    finally:
        d.close()


def test_a_transient_failure_is_retried_then_dead_lettered_after_max_attempts(stack: EmbeddedStack) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: connection refused
    d = Driven(stack, _routing([{"type": "webhook", "url": down, "timeout_seconds": 1}]),
               notifier_max_attempts=3)
    try:
        d.publish(alert("down-1", "gongan"))
        d.step(12)
        (entry,) = d.dead()
        assert entry["permanent"] == "0" and entry["attempts"] == "3"
        assert entry["reason"].startswith("failed 3 times") and "ClientConnectorError" in entry["reason"]
        assert d.queued() == 0
        assert [h["action"] for h in d.history("down-1")].count("dead_lettered") == 1
    finally:
        d.close()


def test_a_stream_entry_that_is_not_an_alert_is_dead_lettered_not_retried(stack: EmbeddedStack) -> None:
    d = Driven(stack, _routing([{"type": "stream", "stream": "notifications:ops"}]))
    try:
        good = alert("fine-1", "gongan").model_dump(mode="json")
        for fields in ({"alert": json.dumps({**good, "alert_id": "odd-1", "department": 7})},
                       {"alert": b"\xff not json"}, {"something": "else"}):
            d.run(d.redis.xadd(f"{d.prefix}alerts", fields))
        d.publish(alert("fine-1", "gongan"))
        d.step()
        dead = d.dead()
        assert [e["reason"].split(":")[0] for e in dead] == ["not an alert"] * 3
        assert "department, actor and status must be strings" in dead[0]["reason"]
        assert d.run(d.redis.xpending(f"{d.prefix}alerts", "notifier"))["pending"] == 0
        assert d.run(d.redis.xlen(f"{d.prefix}notifications:ops")) == 1  # the real alert went out
        d.step()
        assert len(d.dead()) == 3
    finally:
        d.close()
