"""The notifier (``jiancha notifier``) as a real process against a real redis-server, a real
local webhook server (``http.server`` in a thread, verifying the HMAC signature) and a real
SMTP server (aiosmtpd). Alerts are written by the worker's own Redis sink.

Covered: routing, grouping (a burst → one notification per receiver and channel),
escalation to the bureau (stream channel read through a consumer group), silences until
expiry, reminders for open red alerts until acknowledged, working-hours delivery of yellow
alerts, the HTTP API's tokens, the CLI, a webhook outage (500 then connection refused)
with every notification delivered exactly once after it, and a notifier killed (SIGKILL)
mid-way and restarted delivering the rest exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from typer.testing import CliRunner

from jiancha.agents.sinks.redis import RedisAlertSink, redis_client
from jiancha.embedded import EmbeddedStack, ManagedProcess, free_port, spawn
from jiancha.notifier.webhook import verify
from jiancha.producers.contract import Alert
from tests.metric_samples import total
from tests.wait import wait_for

pytestmark = pytest.mark.integration
CST = timezone(timedelta(hours=8))
PASSWORD = "pw-notifier"
HOOK_KEY = "test-hook-key-123"
BUREAU, GONGAN, GONGSHANG = "bureau-token-1", "gongan-token-1", "gongshang-token-1"


# --- fixtures: Redis, webhook server, SMTP server -------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    s = EmbeddedStack(redis_password=PASSWORD)
    s.start_redis()
    yield s
    s.stop()


class Hook:
    """A webhook receiver on a fixed port: answers 200 ('ok'), 500 ('fail'), or is not
    listening at all ('down': connection refused). Keeps what it accepted (signature checked)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.accepted: list[dict[str, Any]] = []
        self.failed = 0
        self.bad_signatures = 0
        self.mode = "ok"
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(HOOK_KEY.encode(), self.headers["X-Jiancha-Timestamp"], body,
                            self.headers.get("X-Jiancha-Signature", ""))
                with hook.lock:
                    if not ok:
                        hook.bad_signatures += 1
                        status = 401
                    elif hook.mode == "fail":
                        hook.failed += 1
                        status = 500
                    else:
                        payload = json.loads(body)
                        assert payload["notification_id"] == self.headers["Idempotency-Key"]
                        hook.accepted.append(payload)
                        status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.mode = "ok"

    def down(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def payloads(self, predicate: Callable[[dict[str, Any]], bool] = lambda p: True) -> list[dict]:
        with self.lock:
            return [p for p in self.accepted if predicate(p)]

    def alert_ids(self) -> Counter[str]:
        return Counter(a["alert_id"] for p in self.payloads() for a in p["alerts"])

    def close(self) -> None:
        if self._server is not None:
            self.down()


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


class Mailbox:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        box = self

        class Handler:
            async def handle_DATA(self, server: Any, smtp_session: Any, envelope: Any) -> str:
                msg = message_from_bytes(envelope.original_content, policy=policy.default)
                box.messages.append((list(envelope.rcpt_tos), msg))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def to(self, address: str) -> list[Any]:
        return [m for rcpt, m in self.messages if address in rcpt]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.controller.stop()


def redis_env(stack: EmbeddedStack) -> dict[str, str]:
    return {"JIANCHA_REDIS_URL": stack.redis_url, "JIANCHA_REDIS_PASSWORD": PASSWORD}


# --- the notifier process --------------------------------------------------------------------


class NotifierProcess:
    def __init__(self, stack: EmbeddedStack, workdir: Path, routing: dict[str, Any],
                 clock_start: str, clock_speed: float = 1.0, **env: str) -> None:
        self.stack = stack
        self.tag = uuid.uuid4().hex[:8]
        self.prefix = f"n{self.tag}:"
        self.api_port = free_port()
        routing_file = workdir / f"routing-{self.tag}.yaml"
        routing_file.write_text(yaml.safe_dump(routing, allow_unicode=True))
        tokens_file = workdir / f"tokens-{self.tag}.yaml"
        tokens_file.write_text(yaml.safe_dump({"tokens": [
            {"name": "bureau-duty", "role": "bureau", "token": BUREAU},
            {"name": "gongan-contact", "role": "department", "department": "gongan", "token": GONGAN},
            {"name": "gongshang-contact", "role": "department", "department": "gongshang",
             "token": GONGSHANG},
        ]}))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("JIANCHA_")}
        self.env.update(redis_env(stack))
        self.env.update({
            "JIANCHA_REDIS_PREFIX": self.prefix,
            "JIANCHA_NOTIFIER_ROUTING_FILE": str(routing_file),
            "JIANCHA_NOTIFIER_TOKENS_FILE": str(tokens_file),
            "JIANCHA_NOTIFIER_PORT": str(self.api_port),
            "JIANCHA_NOTIFIER_CONSUMER": f"notifier-{self.tag}",
            "JIANCHA_NOTIFIER_POLL_SECONDS": "0.05",
            "JIANCHA_NOTIFIER_RETRY_BASE_SECONDS": "0.2",
            "JIANCHA_NOTIFIER_RETRY_MAX_SECONDS": "1",
            "JIANCHA_NOTIFIER_LEASE_SECONDS": "3",
            "JIANCHA_CLOCK_START": clock_start,
            "JIANCHA_CLOCK_SPEED": str(clock_speed),
            "JC_TEST_HOOK_KEY": HOOK_KEY,
        })
        self.env.update(env)
        self.proc: ManagedProcess | None = None

    def start(self) -> NotifierProcess:
        self.env["JIANCHA_CLOCK_ANCHOR"] = str(time.time())  # the clock shows clock_start now
        self.proc = spawn(f"notifier-{self.tag}", [sys.executable, "-m", "jiancha.cli", "notifier"],
                          self.stack.workdir, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.proc.poll() is None, self.log()
            try:
                if self.call("GET", "/health")[1].get("ready"):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(self.log())

    def log(self) -> str:
        return self.proc.log_path.read_text()[-4000:] if self.proc else ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=15)

    def call(self, method: str, path: str, token: str | None = None,
             body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.stack.redis_port, password=PASSWORD, decode_responses=True)

    def publish(self, *alerts: Alert) -> None:
        """Write alerts as the worker does (its Redis sink)."""
        async def go() -> None:
            sink = RedisAlertSink(redis_client(self.stack.redis_url, password=PASSWORD), self.prefix)
            await sink.publish(list(alerts))
            await sink.close()

        asyncio.run(go())

    def history(self, alert_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.redis().lrange(f"{self.prefix}alert:{alert_id}:history", 0, -1)]


def alert(alert_id: str, department: str, rule: str = "deadline.promise_broken",
          severity: str = "red", actor: str | None = "h1") -> Alert:
    t = datetime(2026, 3, 4, 9, 0, tzinfo=CST)
    return Alert(alert_id=alert_id, rule=rule, severity=severity, case_id=f"case-{alert_id}",  # type: ignore[arg-type]
                 item_code="T-SIMPLE", department=department, actor=actor, detected_at=t, event_time=t,
                 message_zh=f"办件 case-{alert_id} 超过承诺时限",
                 message_en=f"case-{alert_id}: promise broken",
                 legal_basis="政务服务承诺时限", evidence=[f"ev-{alert_id}"])


# --- scenario A: one notifier on a Wednesday morning -----------------------------------------


def routing_a(hook: Hook) -> dict[str, Any]:
    return {
        "defaults": {"group_wait": "1s", "group_interval": "2s", "repeat_interval": 0},
        "contacts": {d: {"hook": hook.url + f"?d={d}", "email": f"lianluo@{d}.test"}
                     for d in ("gongan", "gongshang", "minzheng")},
        "handlers": {"h1": {"email": "h1@gongan.test"}},
        "receivers": {
            "bureau": {"channels": [{"type": "stream", "stream": "notifications:bureau", "group": "bureau"}]},
            "department": {"channels": [
                {"type": "webhook", "url": "{contact.hook}", "secret_env": "JC_TEST_HOOK_KEY"},
                {"type": "email", "to": ["{contact.email}"]}]},
            "handler": {"channels": [{"type": "email", "to": ["{handler.email}"], "language": "zh"}]},
        },
        "routes": [
            {"match": {"escalated": True}, "receivers": ["bureau"], "continue": True},
            {"match": {"rule": "fee.*"}, "receivers": ["department"], "repeat_interval": "1.5s",
             "group_wait": "0.2s", "group_interval": "0.2s"},
            {"match": {"severity": ["red", "escalated"]}, "receivers": ["handler", "department"]},
            {"match": {"severity": "yellow"}, "receivers": ["department"]},
        ],
    }


@pytest.fixture(scope="module")
def notifier_a(stack: EmbeddedStack, hook: Hook, mailbox: Mailbox,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifierProcess]:
    n = NotifierProcess(stack, tmp_path_factory.mktemp("a"), routing_a(hook), "2026-03-04T10:00:00+08:00",
                        JIANCHA_NOTIFIER_SMTP_HOST="127.0.0.1",
                        JIANCHA_NOTIFIER_SMTP_PORT=str(mailbox.port),
                        JIANCHA_NOTIFIER_SMTP_FROM="jiancha@bureau.test").start()
    yield n
    n.stop()


def _for(department: str, transition: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda p: (p["group"]["department"] == department
                      and (transition is None or p["transition"] == transition))


def test_burst_is_grouped_and_escalation_reaches_the_bureau(notifier_a: NotifierProcess, hook: Hook,
                                                            mailbox: Mailbox) -> None:
    n = notifier_a
    burst = [alert(f"ga-{i}", "gongan") for i in range(8)]
    n.publish(*burst[:4])
    n.publish(*burst[4:], alert("gs-1", "gongshang", actor=None), alert("gs-2", "gongshang", actor=None))
    wait_for(lambda: hook.payloads(_for("gongan")) and hook.payloads(_for("gongshang"))
             and mailbox.to("h1@gongan.test"), what="grouped notifications")
    time.sleep(1.5)  # anything else would come within the group interval
    (ga,) = hook.payloads(_for("gongan"))
    assert ga["count"] == 8 and ga["transition"] == "open" and ga["receiver"] == "department@gongan"
    assert sorted(a["alert_id"] for a in ga["alerts"]) == sorted(a.alert_id for a in burst)
    (gs,) = hook.payloads(_for("gongshang"))
    assert gs["count"] == 2
    assert hook.bad_signatures == 0
    # email: one mail per receiver, in both languages for the department, Chinese for the handler
    (contact_mail,) = mailbox.to("lianluo@gongan.test")
    body = contact_mail.get_content()
    assert "【行政审批电子监察】gongan deadline.promise_broken 红色告警 8 条" in str(contact_mail["Subject"])
    assert "超过承诺时限" in body and "promise broken" in body
    (handler_mail,) = mailbox.to("h1@gongan.test")
    assert "promise broken" not in handler_mail.get_content()
    assert len(wait_for(lambda: mailbox.to("lianluo@gongshang.test"), what="gongshang mail")) == 1
    # red alerts are not the bureau's (only escalations are, in this routing)
    r = n.redis()
    assert r.xlen(f"{n.prefix}notifications:bureau") == 0

    # escalation (督办): the same alert id, severity escalated -> the bureau's stream
    n.publish(alert("ga-3", "gongan", severity="escalated"))
    entries = wait_for(lambda: r.xreadgroup("bureau", "oa-system", {f"{n.prefix}notifications:bureau": ">"},
                                            count=10, block=100), what="escalation on the bureau stream")
    ((_, messages),) = entries
    (entry_id, fields), = messages
    note = json.loads(fields["notification"])
    assert note["transition"] == "escalated" and note["receiver"] == "bureau"
    assert [a["alert_id"] for a in note["alerts"]] == ["ga-3"]
    assert note["alerts"][0]["severity"] == "escalated"
    r.xack(f"{n.prefix}notifications:bureau", "bureau", entry_id)
    wait_for(lambda: hook.payloads(_for("gongan", "escalated")), what="escalation to the department")
    actions = [(h["action"], h.get("receiver"), h.get("transition")) for h in n.history("ga-3")]
    assert ("notified", "bureau", "escalated") in actions
    assert ("notified", "department@gongan", "open") in actions


def test_a_retraction_reaches_whoever_got_the_alert(notifier_a: NotifierProcess, hook: Hook) -> None:
    n = notifier_a
    legal = lambda p: p["group"]["rule"] == "deadline.legal_broken"  # noqa: E731
    raised = alert("rt-1", "gongshang", rule="deadline.legal_broken", actor=None)
    n.publish(raised)
    wait_for(lambda: hook.payloads(legal), what="the red alert's notification")
    n.publish(raised.model_copy(update={"status": "retracted"}))
    (p,) = wait_for(lambda: [p for p in hook.payloads(legal) if p["transition"] == "retracted"],
                    what="the retraction's notification")
    assert [(a["alert_id"], a["status"]) for a in p["alerts"]] == [("rt-1", "retracted")]
    assert p["receiver"] == "department@gongshang"
    # raised and retracted before its notification went out: nobody is told either
    quick = alert("rt-2", "gongshang", rule="deadline.legal_broken", actor=None)
    n.publish(quick, quick.model_copy(update={"status": "retracted"}))
    # (the department's two channels, each for the two versions)
    wait_for(lambda: len([h for h in n.history("rt-2") if h["action"] == "not_notified"]) >= 4,
             what="both versions judged")
    notes = {(h["transition"], h["note"]) for h in n.history("rt-2") if h["action"] == "not_notified"}
    assert notes == {("open", "retracted before the notification was sent"),
                     ("retracted", "retracted: this receiver was never told of the alert")}
    assert not [a for p in hook.payloads(legal) for a in p["alerts"] if a["alert_id"] == "rt-2"]


def test_silence_until_expiry(notifier_a: NotifierProcess, hook: Hook) -> None:
    n = notifier_a
    status, body = n.call("POST", "/api/silences", BUREAU, {
        "department": "minzheng", "duration": "2.5s", "reason": "系统演练 drill", "by": "王科长"})
    assert status == 201, body
    assert body["created_by"] == "bureau-duty (王科长)" and body["reason"] == "系统演练 drill"
    n.publish(alert("mz-1", "minzheng", actor=None))
    wait_for(lambda: any(h["action"] == "silenced" for h in n.history("mz-1")), what="silenced")
    assert not hook.payloads(_for("minzheng"))
    entry = next(h for h in n.history("mz-1") if h["action"] == "silenced")
    assert entry["silence_id"] == body["silence_id"] and "drill" in entry["note"]
    time.sleep(max(0.0, datetime.fromisoformat(body["ends_at"]).timestamp() - time.time()) + 0.2)
    n.publish(alert("mz-2", "minzheng", actor=None))
    wait_for(lambda: hook.payloads(_for("minzheng")), what="notification after the silence")
    (p,) = hook.payloads(_for("minzheng"))
    assert [a["alert_id"] for a in p["alerts"]] == ["mz-2"]
    status, listed = n.call("GET", "/api/silences?all=1", BUREAU)
    assert status == 200 and body["silence_id"] in [s["silence_id"] for s in listed["silences"]]


def test_open_red_alert_is_repeated_until_acknowledged(notifier_a: NotifierProcess, hook: Hook) -> None:
    n = notifier_a
    n.publish(alert("fee-1", "gongshang", rule="fee.unauthorized", actor=None))
    fee = lambda p: p["group"]["rule"] == "fee.unauthorized"  # noqa: E731
    wait_for(lambda: [p for p in hook.payloads(fee) if p["transition"] == "repeat"], timeout=8,
             what="a reminder")
    status, body = n.call("POST", "/api/alerts/fee-1/ack", GONGSHANG, {"note": "正在核查 checking"})
    assert status == 200 and body["status"] == "acknowledged", body
    seen = len(hook.payloads(fee))
    time.sleep(2.5)  # more than the repeat interval: no reminder for an acknowledged alert
    assert len(hook.payloads(fee)) == seen
    transitions = [a["transition"] for p in hook.payloads(fee) for a in p["alerts"]]
    assert transitions[0] == "open" and transitions[1] == "repeat-1"


def test_api_tokens_limit_departments(notifier_a: NotifierProcess) -> None:
    n = notifier_a
    n.publish(alert("api-ga", "gongan", rule="actor.conflict"),
              alert("api-gs", "gongshang", rule="actor.conflict"))
    status, body = n.call("GET", "/api/alerts")
    assert status == 401 and body["error"] == "unauthorized" and "Bearer" in body["message"]
    status, body = n.call("GET", "/api/alerts", "not-a-token")
    assert status == 401 and body["error"] == "invalid_token"
    status, body = n.call("GET", "/api/alerts?limit=1000", GONGAN)
    assert status == 200 and body["count"] > 0
    assert {a["department"] for a in body["alerts"]} == {"gongan"}
    assert "api-gs" not in [a["alert_id"] for a in body["alerts"]]
    # another department's alert: the same answer as an absent one
    status, body = n.call("GET", "/api/alerts/api-gs", GONGAN)
    assert (status, body) == (404, {"error": "not_found", "message": "no alert 'api-gs'"})
    status, body = n.call("GET", "/api/alerts?department=gongshang", GONGAN)
    assert status == 403
    status, body = n.call("POST", "/api/alerts/api-gs/ack", GONGAN, {})
    assert status == 404
    status, body = n.call("GET", "/api/alerts/no-such-alert", BUREAU)
    assert status == 404
    status, body = n.call("GET", "/api/alerts?limit=1000", BUREAU)
    assert {"gongan", "gongshang"} <= {a["department"] for a in body["alerts"]}
    # the department acknowledges its own; only the bureau resolves
    status, body = n.call("POST", "/api/alerts/api-ga/ack", GONGAN, {"by": "张三", "note": "在办"})
    assert status == 200 and body["status"] == "acknowledged"
    assert body["acknowledged_by"] == "gongan-contact (张三)"
    status, body = n.call("POST", "/api/alerts/api-ga/ack", GONGAN, {})
    assert status == 409 and "acknowledged" in body["message"]
    status, body = n.call("POST", "/api/alerts/api-ga/resolve", GONGAN, {})
    assert status == 403 and "bureau" in body["message"]
    status, body = n.call("POST", "/api/silences", GONGAN, {"department": "gongan", "duration": "1h",
                                                           "reason": "x"})
    assert status == 403
    status, body = n.call("POST", "/api/alerts/api-ga/resolve", BUREAU, {"note": "已纠正 corrected"})
    assert status == 200 and body["status"] == "resolved"
    r = n.redis()
    assert r.zscore(f"{n.prefix}open", "api-ga") is None
    assert r.zscore(f"{n.prefix}open:gongan", "api-ga") is None
    assert r.zscore(f"{n.prefix}open:gongshang", "api-gs") is not None
    assert r.hget(f"{n.prefix}alert:api-ga", "status") == "resolved"
    status, body = n.call("GET", "/api/alerts/api-ga", GONGAN)
    history = [(h["action"], h["by"], h.get("note"), h.get("from")) for h in body["history"]
               if h["action"] in ("acknowledged", "resolved")]
    assert history == [("acknowledged", "gongan-contact (张三)", "在办", "open"),
                       ("resolved", "bureau-duty", "已纠正 corrected", "acknowledged")]
    status, body = n.call("GET", "/api/alerts?status=resolved", GONGAN)
    assert [a["alert_id"] for a in body["alerts"]] == ["api-ga"]
    status, body = n.call("GET", "/api/whoami", GONGAN)
    assert body == {"name": "gongan-contact", "role": "department", "department": "gongan"}
    def read() -> float:  # the alerts this test published, read from the stream
        with urllib.request.urlopen(f"http://127.0.0.1:{n.api_port}/metrics", timeout=5) as resp:
            return total(resp.read(), "jiancha_notifier_alerts_read_total")

    wait_for(lambda: read() > 0, what="alert versions read, counted in /metrics")


def test_cli(notifier_a: NotifierProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from jiancha.cli import app

    n = notifier_a
    for key, value in {**redis_env(n.stack), "JIANCHA_REDIS_PREFIX": n.prefix}.items():
        monkeypatch.setenv(key, value)
    n.publish(alert("cli-1", "gongan", rule="decision.no_reason"))
    runner = CliRunner()
    done = runner.invoke(app, ["alerts", "list", "--rule", "decision.*", "--json"])
    assert done.exit_code == 0, done.output
    assert [a["alert_id"] for a in json.loads(done.stdout)] == ["cli-1"]
    done = runner.invoke(app, ["alerts", "ack", "cli-1", "--by", "li", "--note", "seen"])
    assert done.exit_code == 0 and "acknowledged by li" in done.output
    done = runner.invoke(app, ["alerts", "ack", "cli-1", "--by", "li"])
    assert done.exit_code == 2 and "cannot acknowledge an alert that is acknowledged" in done.output
    done = runner.invoke(app, ["alerts", "resolve", "cli-1", "--by", "wang", "--note", "fixed"])
    assert done.exit_code == 0 and "resolved by wang" in done.output
    done = runner.invoke(app, ["alerts", "show", "cli-1"])
    assert done.exit_code == 0 and "acknowledged" in done.output and "fixed" in done.output
    done = runner.invoke(app, ["alerts", "list", "--status", "resolved", "--rule", "decision.*"])
    assert "cli-1" in done.stdout
    done = runner.invoke(app, ["alerts", "silence", "--rule", "process.*", "--for", "1h",
                               "--reason", "maintenance", "--by", "ops"])
    assert done.exit_code == 0 and "silenced until" in done.output
    silence_id = done.output.split(":")[0]
    done = runner.invoke(app, ["alerts", "silence", "--list"])
    assert silence_id in done.stdout and "maintenance" in done.stdout
    done = runner.invoke(app, ["alerts", "silence", "--expire", silence_id, "--by", "ops"])
    assert done.exit_code == 0
    done = runner.invoke(app, ["alerts", "silence", "--list"])
    assert silence_id not in done.stdout
    done = runner.invoke(app, ["alerts", "show", "no-such"])
    assert done.exit_code == 2 and "no alert 'no-such'" in done.output


# --- scenario B: working hours (a fast clock from Sunday morning) -----------------------------


def test_yellow_waits_for_working_hours_red_does_not(stack: EmbeddedStack, hook: Hook,
                                                     tmp_path: Path) -> None:
    routing = {"defaults": {"group_wait": "0.2s", "group_interval": "0.2s", "repeat_interval": 0},
               "receivers": {"ops": {"channels": [{"type": "webhook", "url": hook.url + "?wh=1",
                                                   "secret_env": "JC_TEST_HOOK_KEY"}]}},
               "default_receivers": ["ops"]}
    # Sunday 2026-03-08 09:00, 12,000x: Monday 09:00 comes 7.2 s after the start
    n = NotifierProcess(stack, tmp_path, routing, "2026-03-08T09:00:00+08:00", clock_speed=12_000).start()
    try:
        n.publish(alert("wh-yellow", "huanbao", rule="deadline.approaching", severity="yellow"),
                  alert("wh-red", "huanbao"))
        mine = lambda p: p["group"]["department"] == "huanbao"  # noqa: E731
        (red,) = wait_for(lambda: hook.payloads(mine), what="the red alert")
        assert red["group"]["severity"] == "red"
        assert datetime.fromisoformat(red["sent_at"]) < datetime(2026, 3, 9, 9, 0, tzinfo=CST)
        payloads = wait_for(lambda: len(hook.payloads(mine)) == 2 and hook.payloads(mine), timeout=15,
                            what="the yellow alert on Monday")
        yellow = payloads[1]
        assert yellow["group"]["severity"] == "yellow"
        sent = datetime.fromisoformat(yellow["sent_at"])
        assert sent >= datetime(2026, 3, 9, 9, 0, tzinfo=CST) and sent.weekday() == 0, sent
    finally:
        n.stop()


# --- scenario C: a webhook outage -------------------------------------------------------------


def routing_ops(hook: Hook, tag: str) -> dict[str, Any]:
    return {"defaults": {"group_wait": 0, "group_interval": 0, "repeat_interval": 0},
            "receivers": {"ops": {"channels": [{"type": "webhook", "url": f"{hook.url}?{tag}",
                                                "secret_env": "JC_TEST_HOOK_KEY",
                                                "timeout_seconds": 2}]}},
            "default_receivers": ["ops"]}


def test_webhook_outage_every_notification_exactly_once(stack: EmbeddedStack, tmp_path: Path) -> None:
    hook = Hook()
    n = NotifierProcess(stack, tmp_path, routing_ops(hook, "outage"), "2026-03-04T10:00:00+08:00").start()
    try:
        batch = lambda k: [alert(f"out-{k}-{i}", "jiaotong", rule=f"test.r{k}{i}") for i in range(10)]  # noqa: E731
        n.publish(*batch(1))
        wait_for(lambda: len(hook.payloads()) == 10, what="first batch")
        hook.mode = "fail"  # 500 for 3 s …
        n.publish(*batch(2))
        time.sleep(3)  # the outage lasts: the notifier retries into it
        hook.down()  # … then connection refused for 3 s
        n.publish(*batch(3))
        time.sleep(3)
        failed_during_outage = hook.failed
        hook.up()
        wait_for(lambda: len(hook.payloads()) >= 30, timeout=10, what="delivery after the outage")
        time.sleep(1.5)  # a duplicate would come now
        ids = Counter(p["notification_id"] for p in hook.payloads())
        assert len(ids) == 30 and set(ids.values()) == {1}, ids
        assert hook.alert_ids() == Counter({f"out-{k}-{i}": 1 for k in (1, 2, 3) for i in range(10)})
        assert failed_during_outage >= 2  # it did retry (with backoff) while the hook answered 500
        assert n.redis().zcard(f"{n.prefix}notify:queues") == 0
        print(f"outage: {failed_during_outage} failed attempts (500), 20 notifications held and "
              f"delivered exactly once after recovery, 30 in all")
    finally:
        n.stop()
        hook.close()


# --- scenario D: killed and restarted ---------------------------------------------------------


def test_notifier_killed_and_restarted_delivers_the_rest_exactly_once(stack: EmbeddedStack,
                                                                     tmp_path: Path) -> None:
    hook = Hook()
    n = NotifierProcess(stack, tmp_path, routing_ops(hook, "kill"), "2026-03-04T10:00:00+08:00",
                        JIANCHA_NOTIFIER_CLAIM_IDLE_SECONDS="2")
    n.start()
    try:
        batch = lambda k: [alert(f"kill-{k}-{i}", "weisheng", rule=f"test.k{k}{i}") for i in range(8)]  # noqa: E731
        n.publish(*batch(1))
        wait_for(lambda: len(hook.payloads()) == 8, what="first batch")
        hook.mode = "fail"
        n.publish(*batch(2))
        wait_for(lambda: hook.failed >= 1, what="a failed attempt")
        n.kill()  # SIGKILL: queued notifications, and maybe unacknowledged stream entries
        n.publish(*batch(3))  # while no notifier runs
        hook.mode = "ok"
        n.start()  # same consumer name: it reads its own pending entries first
        wait_for(lambda: len(hook.payloads()) >= 24, timeout=15, what="the rest after the restart")
        time.sleep(1.5)  # a duplicate would come now
        ids = Counter(p["notification_id"] for p in hook.payloads())
        assert len(ids) == 24 and set(ids.values()) == {1}, ids
        assert hook.alert_ids() == Counter({f"kill-{k}-{i}": 1 for k in (1, 2, 3) for i in range(8)})
        r = n.redis()
        assert r.xpending(f"{n.prefix}alerts", "notifier")["pending"] == 0

        # killed while delivering at full speed: nothing lost; at most the one notification in
        # flight (the queue sends one at a time) may reach the receiver again, with the same
        # Idempotency-Key, which a receiver uses to drop it
        before = len(hook.payloads())
        n.publish(*[alert(f"busy-{i}", "weisheng", rule=f"test.b{i}") for i in range(60)])
        wait_for(lambda: len(hook.payloads()) >= before + 15, what="some of the burst")
        n.kill()
        n.start()
        busy = lambda: {p["notification_id"] for p in hook.payloads()  # noqa: E731
                        if p["alerts"][0]["alert_id"].startswith("busy-")}
        wait_for(lambda: len(busy()) == 60, timeout=15, what="the whole burst after the restart")
        time.sleep(1.0)  # a second copy would come now
        sent = Counter(a["alert_id"] for p in hook.payloads() for a in p["alerts"]
                       if a["alert_id"].startswith("busy-"))
        assert set(sent) == {f"busy-{i}" for i in range(60)}
        assert sum(sent.values()) - 60 <= 1, sent
        print(f"killed mid-burst: 60 notifications delivered, {sum(sent.values()) - 60} resent "
              "with the same Idempotency-Key")
    finally:
        n.stop()
        hook.close()
