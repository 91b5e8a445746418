"""The notifier's HTTP API for people (aiohttp), token-protected (``Authorization: Bearer``).

- ``GET /health`` (no token): ``{"ready": bool}`` and nothing else; ``GET /metrics`` (no
  token): Prometheus metrics (channel types and counts, no department or receiver names);
- ``GET /api/health`` (bureau): readiness with the consumer, the queues and the groups;
- ``GET /api/whoami``: the token's name, role and department;
- ``GET /api/alerts?status=&department=&rule=&severity=&limit=&offset=``: alerts, newest
  first (``status``: active (default), open, acknowledged, resolved, all; ``limit`` 1–1000,
  ``offset`` 0–100,000); a department token sees its own department only;
- ``GET /api/alerts/{id}``: one alert with its history;
- ``POST /api/alerts/{id}/ack`` ``{"note", "by"}``: acknowledge (bureau, or the alert's
  own department);
- ``POST /api/alerts/{id}/resolve`` ``{"note", "by"}``: resolve (bureau);
- ``GET /api/silences[?all=1]``, ``POST /api/silences`` ``{"department", "rule",
  "severity", "case_id", "alert_id", "duration": "2h" | "ends_at", "reason", "by"}``
  (at most 90 days), ``DELETE /api/silences/{id}``: silences (bureau).

Every input is checked: a query parameter or body field the endpoint does not know, a
repeated parameter, a value of the wrong type, out of its range or too long is refused
with 400 naming it. Errors are JSON ``{"error": code, "message": text}`` (400 adds
``"field"``): 401 without or with an unknown token, 403 outside the token's role or for
another department's list, 404 for an alert that is absent *or* another department's (the
same answer, so a department token learns nothing of other departments' alerts), 409 for
a status change the alert's status does not allow, 413 for a body over 64 KiB, 429 with
``Retry-After`` past the caller's rate limit (:mod:`jiancha.notifier.ratelimit`; every path,
``/health`` and ``/metrics`` included, per token or, without a valid one, per address).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from jiancha.rules.lifecycle import TransitionError

from .pages import AlertPages, OnResolved
from .ratelimit import TokenBucket, retry_after
from .routing import parse_duration
from .store import MAX_SILENCE, AlertNotFound, AlertStore
from .tokens import Principal, Tokens, bearer

#: who made a request, kept on the request (aiohttp 3.13 has keys for a request's storage;
#: before it, an application key served)
PRINCIPAL = getattr(web, "RequestKey", web.AppKey)("principal", Principal)
_STATUSES = ("active", "open", "acknowledged", "resolved", "all")
_SEVERITIES = ("yellow", "red", "escalated")
MAX_LIMIT = 1000
MAX_OFFSET = 100_000
MAX_BODY = 64 * 1024
MAX_NOTE = 2000
MAX_BY = 128
MAX_REASON = 500
MAX_NAME = 128  # department, rule glob, case and alert ids
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, code: str, message: str, field: str | None = None,
           **headers: str) -> web.Response:
    data = {"error": code, "message": message}
    if field is not None:
        data["field"] = field
    resp = _json(data, status)
    resp.headers.update(headers)
    return resp


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def bad(field: str, message: str) -> ApiError:
    """400 naming the field (query parameter, body field or path part) at fault."""
    return ApiError(400, "bad_request", f"{field}: {message}", field)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def text(data: Mapping[str, Any], field: str, max_length: int, *, multiline: bool = False,
         required: bool = False) -> str | None:
    """The string ``data[field]`` (None when absent or null), checked for type and length."""
    value = data.get(field)
    if value is None:
        if required:
            raise bad(field, "is required")
        return None
    if not isinstance(value, str):
        raise bad(field, f"expected a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise bad(field, f"at most {max_length} characters, got {len(value)}")
    if (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value):
        raise bad(field, "control characters are not allowed")
    if required and not value.strip():
        raise bad(field, "is required (not blank)")
    return value


def only(given: Iterable[str], allowed: Iterable[str], what: str) -> None:
    allowed = tuple(allowed)
    for name in given:
        if name not in allowed:
            known = ", ".join(allowed) if allowed else "none"
            raise bad(name, f"unknown {what} (known: {known})")


def query(request: web.Request, *allowed: str) -> dict[str, str]:
    """The query parameters, each at most once and all among ``allowed``."""
    q = request.query
    only(q.keys(), allowed, "query parameter")
    out: dict[str, str] = {}
    for name in q:
        if name in out or len(q.getall(name)) > 1:
            raise bad(name, "given more than once")
        out[name] = q[name]
        text(out, name, MAX_NAME)
    return out


def integer(q: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    raw = q.get(field)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,7}", raw.strip()) or not low <= int(raw) <= high:
        raise bad(field, f"expected an integer from {low} to {high}, got {_shown(raw)}")
    return int(raw)


def silence_end(data: Mapping[str, Any], now: datetime) -> datetime:
    """When a new silence ends: ``duration`` ('2h', seconds) or ``ends_at`` (RFC 3339 with an
    offset), in the future and at most :data:`MAX_SILENCE` ahead."""
    limit = f"at most {MAX_SILENCE.days} days"
    if data.get("ends_at") is not None:
        if data.get("duration") is not None:
            raise bad("duration", "give duration or ends_at, not both")
        raw = text(data, "ends_at", 64)
        try:
            ends_at = datetime.fromisoformat(str(raw))
            if ends_at.tzinfo is None:
                raise bad("ends_at", "needs an offset, e.g. 2026-12-01T18:00:00+08:00")
            ends_at = ends_at.astimezone(UTC)
        except (ValueError, OverflowError):
            raise bad("ends_at", f"expected an RFC 3339 time with offset, got {_shown(raw)}") from None
        if not now + timedelta(seconds=1) <= ends_at <= now + MAX_SILENCE:
            raise bad("ends_at", f"must be in the future and {limit} ahead")
        return ends_at
    value = data.get("duration")
    if value is None:
        raise bad("duration", f"is required (e.g. '2h', {limit}), or give ends_at")
    if not isinstance(value, str | int | float) or isinstance(value, bool) or (
            isinstance(value, str) and len(value) > 32):
        raise bad("duration", f"expected a duration such as '2h', '30m', '7d' ({limit})")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise bad("duration", f"{exc} ({limit})") from None
    if not math.isfinite(seconds) or not 1 <= seconds <= MAX_SILENCE.total_seconds():
        raise bad("duration", f"from 1 second to {MAX_SILENCE.days} days, got {_shown(value)}")
    return now + timedelta(seconds=seconds)


class AlertApi:
    """The API's handlers over its ports: ``store`` (alerts and silences), ``tokens``,
    ``health``: the full readiness report (bureau only); ``ready``: whether the notifier is
    ready, cheaply (no Redis round trip), for ``/health`` without a token; ``pages``: the
    alert pages; ``on_resolved``: told of each alert a person resolved."""

    def __init__(self, store: AlertStore, tokens: Tokens,
                 health: Callable[[], Awaitable[dict[str, Any]]],
                 registry: CollectorRegistry | None = None,
                 rate_limit: TokenBucket | None = None,
                 ready: Callable[[], bool] | None = None,
                 pages: AlertPages | None = None, on_resolved: OnResolved | None = None) -> None:
        self.store = store
        self.tokens = tokens
        self.health = health
        self.registry = registry
        self.rate_limit = rate_limit
        self.ready = ready
        self.pages = pages
        self.on_resolved = on_resolved

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self.auth], client_max_size=MAX_BODY)
        app.add_routes([
            web.get("/health", self.get_health),
            web.get("/metrics", self.get_metrics),
            web.get("/api/health", self.get_api_health),
            web.get("/api/whoami", self.whoami),
            web.get("/api/alerts", self.list_alerts),
            web.get("/api/alerts/{alert_id}", self.show_alert),
            web.post("/api/alerts/{alert_id}/ack", self.ack),
            web.post("/api/alerts/{alert_id}/resolve", self.resolve),
            web.get("/api/silences", self.list_silences),
            web.post("/api/silences", self.add_silence),
            web.delete("/api/silences/{silence_id}", self.delete_silence),
        ])
        if self.pages is not None:  # the HTML pages (notifier/pages.py), outside /api/
            app.add_routes(self.pages.routes())
        return app

    @web.middleware
    async def auth(self, request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        principal = bearer(self.tokens, header)
        rate_limit = self.rate_limit
        if rate_limit is not None:
            caller = f"token:{principal.name}" if principal else f"peer:{request.remote}"
            wait = rate_limit.take(caller)
            if wait > 0:
                return _error(429, "rate_limited",
                              f"too many requests; at most {rate_limit.rate:g} per second "
                              f"(bursts of {rate_limit.burst:g}) per token", None,
                              **{"Retry-After": retry_after(wait)})
        if not request.path.startswith("/api/"):
            return await handler(request)
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "unauthorized", "send the header 'Authorization: Bearer <token>'",
                          None, **{"WWW-Authenticate": 'Bearer realm="jiancha"'})
        if principal is None:
            return _error(401, "invalid_token", "the bearer token is not known to this notifier",
                          None, **{"WWW-Authenticate": 'Bearer realm="jiancha", error="invalid_token"'})
        request[PRINCIPAL] = principal  # type: ignore[index]
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message, exc.field)
        except AlertNotFound as exc:
            return _error(404, "not_found", str(exc))
        except TransitionError as exc:
            return _error(409, "conflict", str(exc))

    def who(self, request: web.Request) -> Principal:
        return request[PRINCIPAL]  # type: ignore[index,no-any-return]

    def bureau_only(self, request: web.Request, what: str) -> Principal:
        p = self.who(request)
        if not p.is_bureau:
            raise ApiError(403, "forbidden", f"only the supervision bureau may {what}; token "
                           f"{p.name!r} is a department token ({p.department})")
        return p

    def alert_id_of(self, request: web.Request) -> str:
        alert_id = request.match_info["alert_id"]
        text({"alert_id": alert_id}, "alert_id", 2 * MAX_NAME)
        return alert_id

    async def visible(self, request: web.Request, alert_id: str) -> Principal:
        """The caller, if the alert exists and is theirs to see; else 404, the same answer
        for an absent alert and for another department's."""
        p = self.who(request)
        department = await self.store.department_of(alert_id)
        if not p.can_see(department):
            raise AlertNotFound(alert_id)
        return p

    async def body(self, request: web.Request, *allowed: str) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "too_large", f"body: at most {MAX_BODY} bytes", "body") from None
        if not raw.strip():
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad("body", f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise bad("body", "must be a JSON object")
        only(data.keys(), allowed, "field")
        return data

    def actor(self, p: Principal, data: dict[str, Any]) -> str:
        by = text(data, "by", MAX_BY)
        return f"{p.name} ({by})" if by and by.strip() else p.name

    async def get_health(self, request: web.Request) -> web.Response:
        is_ready = self.ready() if self.ready is not None else (await self.health()).get("ready")
        return _json({"ready": bool(is_ready)})

    async def get_api_health(self, request: web.Request) -> web.Response:
        query(request)
        self.bureau_only(request, "see the notifier's queues")
        return _json(await self.health())

    async def get_metrics(self, request: web.Request) -> web.Response:
        data = generate_latest(self.registry) if self.registry is not None else b""
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def whoami(self, request: web.Request) -> web.Response:
        query(request)
        p = self.who(request)
        return _json({"name": p.name, "role": p.role, "department": p.department})

    async def list_alerts(self, request: web.Request) -> web.Response:
        p = self.who(request)
        q = query(request, "status", "department", "rule", "severity", "limit", "offset")
        status = q.get("status", "active")
        if status not in _STATUSES:
            raise bad("status", f"expected one of {', '.join(_STATUSES)}, got {_shown(status)}")
        severity = q.get("severity") or None
        if severity is not None and severity not in _SEVERITIES:
            raise bad("severity", f"expected one of {', '.join(_SEVERITIES)}, got {_shown(severity)}")
        limit = integer(q, "limit", 100, 1, MAX_LIMIT)
        offset = integer(q, "offset", 0, 0, MAX_OFFSET)
        department = q.get("department") or None
        if not p.is_bureau:
            if department and department != p.department:
                raise ApiError(403, "forbidden", f"token {p.name!r} may only see alerts of "
                               f"department {p.department}, not {department}")
            department = p.department
        alerts = await self.store.list(status, department, q.get("rule") or None, severity,  # type: ignore[arg-type]
                                  limit, offset)
        return _json({"alerts": alerts, "count": len(alerts)})

    async def show_alert(self, request: web.Request) -> web.Response:
        query(request)
        alert_id = self.alert_id_of(request)
        await self.visible(request, alert_id)
        return _json(await self.store.show(alert_id))

    async def ack(self, request: web.Request) -> web.Response:
        query(request)
        alert_id = self.alert_id_of(request)
        p = await self.visible(request, alert_id)
        data = await self.body(request, "note", "by")
        return _json(await self.store.acknowledge(alert_id, self.actor(p, data),
                                             text(data, "note", MAX_NOTE, multiline=True)))

    async def resolve(self, request: web.Request) -> web.Response:
        query(request)
        alert_id = self.alert_id_of(request)
        await self.visible(request, alert_id)
        p = self.bureau_only(request, "resolve alerts")
        data = await self.body(request, "note", "by")
        resolved = await self.store.resolve(alert_id, self.actor(p, data),
                                       text(data, "note", MAX_NOTE, multiline=True))
        if self.on_resolved is not None:  # the receivers who were told of it are told it is resolved
            await self.on_resolved(resolved)
        return _json(resolved)

    async def list_silences(self, request: web.Request) -> web.Response:
        q = query(request, "all")
        self.bureau_only(request, "see silences")
        flag = q.get("all", "0").lower()
        if flag not in _FLAGS:
            raise bad("all", f"expected one of {', '.join(_FLAGS)}, got {_shown(q['all'])}")
        silences = await self.store.silences(include_expired=_FLAGS[flag])
        return _json({"silences": [s.model_dump(mode="json") for s in silences]})

    async def add_silence(self, request: web.Request) -> web.Response:
        query(request)
        p = self.bureau_only(request, "create silences")
        matcher_fields = ("department", "rule", "severity", "case_id", "alert_id")
        data = await self.body(request, *matcher_fields, "duration", "ends_at", "reason", "by")
        reason = text(data, "reason", MAX_REASON, multiline=True, required=True)
        matchers = {k: text(data, k, MAX_NAME) or None for k in matcher_fields}
        if matchers["severity"] is not None and matchers["severity"] not in _SEVERITIES:
            raise bad("severity", f"expected one of {', '.join(_SEVERITIES)}")
        if not any(matchers.values()):
            raise bad("department", f"a silence needs at least one of {', '.join(matcher_fields)}")
        ends_at = silence_end(data, datetime.now(UTC))
        try:
            silence = await self.store.add_silence(created_by=self.actor(p, data), reason=str(reason),
                                              ends_at=ends_at, **matchers)
        except ValidationError as exc:  # checked above; kept so that a model rule still names its field
            e = exc.errors()[0]
            field = str(e["loc"][0]) if e["loc"] else "body"
            raise bad(field, e["msg"].removeprefix("Value error, ")) from None
        return _json(silence.model_dump(mode="json"), 201)

    async def delete_silence(self, request: web.Request) -> web.Response:
        query(request)
        p = self.bureau_only(request, "end silences")
        silence_id = request.match_info["silence_id"]
        if not re.fullmatch(r"sil-[0-9a-f]{1,32}", silence_id):
            raise bad("silence_id", "expected sil- and hex digits")
        try:
            silence = await self.store.expire_silence(silence_id, p.name)
        except KeyError:
            raise ApiError(404, "not_found", f"no silence {silence_id!r}") from None
        return _json(silence.model_dump(mode="json"))



def create_api(store: AlertStore, tokens: Tokens, health: Callable[[], Awaitable[dict[str, Any]]],
               registry: CollectorRegistry | None = None,
               rate_limit: TokenBucket | None = None,
               ready: Callable[[], bool] | None = None,
               pages: AlertPages | None = None, on_resolved: OnResolved | None = None
               ) -> web.Application:
    """The aiohttp application of an :class:`AlertApi` with these ports."""
    return AlertApi(store, tokens, health, registry, rate_limit, ready, pages,
                    on_resolved).application()
