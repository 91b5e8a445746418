"""The notifier's HTTP API for people (aiohttp), token-protected (``Authorization: Bearer``).

- ``GET /health``, ``GET /metrics`` (no token): readiness (JSON), Prometheus metrics;
- ``GET /api/whoami``: the token's name, role and department;
- ``GET /api/alerts?status=&department=&rule=&severity=&limit=&offset=``: alerts, newest
  first (``status``: active (default), open, acknowledged, resolved, all); a department
  token sees its own department only;
- ``GET /api/alerts/{id}``: one alert with its history;
- ``POST /api/alerts/{id}/ack`` ``{"note", "by"}``: acknowledge (bureau, or the alert's
  own department);
- ``POST /api/alerts/{id}/resolve`` ``{"note", "by"}``: resolve (bureau);
- ``GET /api/silences[?all=1]``, ``POST /api/silences`` ``{"department", "rule",
  "severity", "case_id", "alert_id", "duration": "2h" | "ends_at", "reason", "by"}``,
  ``DELETE /api/silences/{id}``: silences (bureau).

Errors are JSON ``{"error": code, "message": text}``: 401 without or with an unknown token,
403 outside the token's department or role, 404, 409 for a status change the alert's
status does not allow, 400 for a bad request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from agents.notify.pages import AlertPages, OnResolved
from agents.notify.routing import parse_duration
from agents.notify.store import AlertNotFound, AlertStore
from agents.notify.tokens import Principal, Tokens
from rules.lifecycle import TransitionError

PRINCIPAL = web.AppKey("principal", Principal)
_STATUSES = ("active", "open", "acknowledged", "resolved", "all")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    resp = _json({"error": code, "message": message}, status)
    resp.headers.update(headers)
    return resp


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def create_api(store: AlertStore, tokens: Tokens, health: Callable[[], Awaitable[dict[str, Any]]],
               registry: CollectorRegistry | None = None,
               pages: AlertPages | None = None, on_resolved: OnResolved | None = None
               ) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "unauthorized", "send the header 'Authorization: Bearer <token>'",
                          **{"WWW-Authenticate": 'Bearer realm="jiancha"'})
        principal = tokens.authenticate(token.strip())
        if principal is None:
            return _error(401, "invalid_token", "the bearer token is not known to this notifier",
                          **{"WWW-Authenticate": 'Bearer realm="jiancha", error="invalid_token"'})
        request[PRINCIPAL] = principal  # type: ignore[index]
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)
        except AlertNotFound as exc:
            return _error(404, "not_found", str(exc))
        except TransitionError as exc:
            return _error(409, "conflict", str(exc))

    def who(request: web.Request) -> Principal:
        return request[PRINCIPAL]  # type: ignore[index,no-any-return]

    def bureau_only(request: web.Request, what: str) -> Principal:
        p = who(request)
        if not p.is_bureau:
            raise ApiError(403, "forbidden", f"only the supervision bureau may {what}; token "
                           f"{p.name!r} is a department token ({p.department})")
        return p

    async def visible(request: web.Request, alert_id: str) -> Principal:
        p = who(request)
        department = await store.department_of(alert_id)
        if not p.can_see(department):
            raise ApiError(403, "forbidden", f"token {p.name!r} may only see alerts of department "
                           f"{p.department}; alert {alert_id} belongs to {department}")
        return p

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise ApiError(400, "bad_request", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object")
        return data

    def actor(p: Principal, data: dict[str, Any]) -> str:
        by = data.get("by")
        if by is not None and not isinstance(by, str):
            raise ApiError(400, "bad_request", "'by' must be a string (the person acting)")
        return f"{p.name} ({by})" if by else p.name

    def note(data: dict[str, Any]) -> str | None:
        value = data.get("note")
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "bad_request", "'note' must be a string")
        return value

    async def get_health(request: web.Request) -> web.Response:
        return _json(await health())

    async def get_metrics(request: web.Request) -> web.Response:
        data = generate_latest(registry) if registry is not None else b""
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def whoami(request: web.Request) -> web.Response:
        p = who(request)
        return _json({"name": p.name, "role": p.role, "department": p.department})

    async def list_alerts(request: web.Request) -> web.Response:
        p = who(request)
        q = request.query
        status = q.get("status", "active")
        if status not in _STATUSES:
            raise ApiError(400, "bad_request", f"status must be one of {', '.join(_STATUSES)}")
        department = q.get("department")
        if not p.is_bureau:
            if department and department != p.department:
                raise ApiError(403, "forbidden", f"token {p.name!r} may only see alerts of "
                               f"department {p.department}, not {department}")
            department = p.department
        try:
            limit = min(int(q.get("limit", "100")), 1000)
            offset = max(int(q.get("offset", "0")), 0)
        except ValueError:
            raise ApiError(400, "bad_request", "limit and offset must be integers") from None
        alerts = await store.list(status, department, q.get("rule"), q.get("severity"),  # type: ignore[arg-type]
                                  limit, offset)
        return _json({"alerts": alerts, "count": len(alerts)})

    async def show_alert(request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        await visible(request, alert_id)
        return _json(await store.show(alert_id))

    async def ack(request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        p = await visible(request, alert_id)
        data = await body(request)
        return _json(await store.acknowledge(alert_id, actor(p, data), note(data)))

    async def resolve(request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        await visible(request, alert_id)
        p = bureau_only(request, "resolve alerts")
        data = await body(request)
        resolved = await store.resolve(alert_id, actor(p, data), note(data))
        if on_resolved is not None:  # the receivers who were told of it are told it is resolved
            await on_resolved(resolved)
        return _json(resolved)

    async def list_silences(request: web.Request) -> web.Response:
        bureau_only(request, "see silences")
        include = request.query.get("all") in ("1", "true", "yes")
        silences = await store.silences(include_expired=include)
        return _json({"silences": [s.model_dump(mode="json") for s in silences]})

    async def add_silence(request: web.Request) -> web.Response:
        p = bureau_only(request, "create silences")
        data = await body(request)
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ApiError(400, "bad_request", "'reason' is required: why notifications are muted")
        duration = ends_at = None
        try:
            if data.get("ends_at"):
                ends_at = datetime.fromisoformat(str(data["ends_at"]))
                if ends_at.tzinfo is None:
                    raise ValueError("ends_at needs an offset, e.g. +08:00")
            else:
                duration = timedelta(seconds=parse_duration(data.get("duration", "")))
            matchers = {k: data.get(k) for k in ("department", "rule", "severity", "case_id", "alert_id")}
            silence = await store.add_silence(created_by=actor(p, data), reason=reason,
                                              duration=duration, ends_at=ends_at, **matchers)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'silence'}: "
                                 f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
            raise ApiError(400, "bad_request", problems) from None
        except ValueError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        return _json(silence.model_dump(mode="json"), 201)

    async def delete_silence(request: web.Request) -> web.Response:
        p = bureau_only(request, "end silences")
        try:
            silence = await store.expire_silence(request.match_info["silence_id"], p.name)
        except KeyError:
            raise ApiError(404, "not_found", f"no silence {request.match_info['silence_id']!r}") from None
        return _json(silence.model_dump(mode="json"))

    app = web.Application(middlewares=[auth])
    app.add_routes([
        web.get("/health", get_health),
        web.get("/metrics", get_metrics),
        web.get("/api/whoami", whoami),
        web.get("/api/alerts", list_alerts),
        web.get("/api/alerts/{alert_id}", show_alert),
        web.post("/api/alerts/{alert_id}/ack", ack),
        web.post("/api/alerts/{alert_id}/resolve", resolve),
        web.get("/api/silences", list_silences),
        web.post("/api/silences", add_silence),
        web.delete("/api/silences/{silence_id}", delete_silence),
    ])
    if pages is not None:  # the HTML pages (agents/notify/pages.py), outside /api/
        app.add_routes(pages.routes())
    return app
