"""The alert pages people open: server-rendered HTML from the notifier's HTTP server.

- ``GET /alerts?department=&rule=&severity=&status=&since=&until=``: the alert list,
  newest first, each row a link to its alert's page;
- ``GET /alerts/{id}``: the alert and its case — the messages, the law, the counted-time
  arithmetic drawn (:mod:`jiancha.notifier.casechart`), the time line, the evidence, the
  history — with forms to acknowledge, resolve (a note is required) and silence;
- ``POST /alerts/{id}/ack|resolve|silence``: the forms' actions (HTML form fields), the
  same store operations and the same permissions as the JSON API;
- ``GET /login?token=…`` (a login link) and ``POST /login``: check the token, set it as a
  cookie and redirect to a URL without it; ``POST /logout`` drops the cookie.

Who may see what is the JSON API's rule (:mod:`jiancha.notifier.tokens`): a department token
sees its own department's alerts, and an alert that is absent and one that is another
department's get the same 404. A page takes the token from ``Authorization: Bearer`` or
from the cookie ``jiancha_token`` (HttpOnly, SameSite=Lax: sent when a person follows a link
from a mail, never with a form posted from another site). A form post is accepted only
from the notifier's own pages: a browser's ``Origin`` (and ``Sec-Fetch-Site``) must name
this site, so another site cannot make a logged-in browser act (CSRF).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
from aiohttp import web

from jiancha.producers.contract import Step
from jiancha.rules.checks.process import STEP_EN, STEP_ZH
from jiancha.rules.counted_time import WorkingTime
from jiancha.rules.lifecycle import TransitionError
from jiancha.rules.rulebook import RuleSet

from .casechart import counted_span, counted_time_svg
from .routing import parse_duration
from .store import AlertNotFound, AlertStore
from .tokens import Principal, Tokens

COOKIE = "jiancha_token"
COOKIE_MAX_AGE = 12 * 3600
LIST_LIMIT = 300
STATUSES = ("active", "open", "acknowledged", "resolved", "all")
SEVERITY = {"yellow": ("黄色预警", "yellow"), "red": ("红色告警", "red"),
            "escalated": ("督办", "escalated")}
STATUS = {"open": ("未处理", "open"), "acknowledged": ("已确认", "acknowledged"),
          "resolved": ("已解决", "resolved"), "retracted": ("已撤销", "retracted"),
          "active": ("未解决", "active"), "all": ("全部", "all")}
ACTION = {"acknowledged": ("确认", "acknowledged"), "resolved": ("解决", "resolved"),
          "notified": ("已通知", "notified"), "not_notified": ("未通知", "not notified"),
          "silenced": ("静默", "silenced"), "unroutable": ("无法送达", "unroutable")}

#: called after a person resolved an alert from a page (the notifier tells its receivers)
OnResolved = Callable[[Mapping[str, Any]], Awaitable[None]]


def alert_page_url(base: str, alert_id: str) -> str:
    """The address of an alert's page under the notifier's public URL."""
    return f"{base.rstrip('/')}/alerts/{quote(alert_id, safe='')}"


class PageError(Exception):
    def __init__(self, status: int, zh: str, en: str) -> None:
        super().__init__(en)
        self.status, self.zh, self.en = status, zh, en


class AlertPages:
    def __init__(self, store: AlertStore, tokens: Tokens, wt: WorkingTime,
                 on_resolved: OnResolved | None = None, public_url: str | None = None,
                 ruleset: RuleSet | None = None) -> None:
        self.store = store
        self.tokens = tokens
        self.wt = wt
        self.ruleset = ruleset
        self.on_resolved = on_resolved
        self.public_url = public_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.home),
            web.get("/login", self.login_link),
            web.post("/login", self.login_form),
            web.post("/logout", self.logout),
            web.get("/alerts", self.wrap(self.alert_list)),
            web.get("/alerts/{alert_id}", self.wrap(self.alert_page)),
            web.post("/alerts/{alert_id}/ack", self.wrap(self.ack, form=True)),
            web.post("/alerts/{alert_id}/resolve", self.wrap(self.resolve, form=True)),
            web.post("/alerts/{alert_id}/silence", self.wrap(self.silence, form=True)),
        ]

    # --- who is asking ------------------------------------------------------------------------

    def principal(self, request: web.Request) -> Principal | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self.tokens.authenticate(token.strip())
        cookie = request.cookies.get(COOKIE)
        return self.tokens.authenticate(cookie) if cookie else None

    def same_site(self, request: web.Request) -> bool:
        """Whether a form post comes from this site's own pages (CSRF check)."""
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser, or one that sends neither: the cookie is Lax
            return True
        own = {f"{request.scheme}://{request.host}"}
        if self.public_url:
            parts = urlsplit(self.public_url)
            own.add(f"{parts.scheme}://{parts.netloc}")
        return origin in own

    def wrap(self, handler: Callable[[web.Request, Principal], Awaitable[web.StreamResponse]],
             form: bool = False) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            p = self.principal(request)
            if p is None:
                return _page("登录 Log in", _login_box(request.path_qs), 401)
            if form and not self.same_site(request):
                return _message(403, "请求不是来自本站页面", "the form was not posted from this site's pages")
            try:
                return await handler(request, p)
            except PageError as exc:
                return _message(exc.status, exc.zh, exc.en)
            except AlertNotFound:
                return _not_found()
            except TransitionError as exc:
                return _message(409, "告警当前状态不允许此操作", str(exc))
        return run

    async def visible_alert(self, p: Principal, alert_id: str) -> dict[str, Any]:
        """The alert with its history; absent and not-yours answer alike (404)."""
        alert = await self.store.show(alert_id)
        if not p.can_see(alert.get("department")):
            raise AlertNotFound(alert_id)
        return alert

    # --- login --------------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/alerts")

    async def login_link(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token", "")
        if not token:
            return _page("登录 Log in", _login_box(_next(request.query.get("next"))))
        return self._login(request, token, _next(request.query.get("next")))

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if not self.same_site(request):
            return _message(403, "请求不是来自本站页面", "the form was not posted from this site's pages")
        form = await request.post()
        return self._login(request, str(form.get("token", "")), _next(str(form.get("next", ""))))

    def _login(self, request: web.Request, token: str, target: str) -> web.StreamResponse:
        if self.tokens.authenticate(token.strip()) is None:
            return _page("登录 Log in", '<p class="error">令牌无效 The token is not known.</p>'
                         + _login_box(target), 401)
        resp = web.Response(status=303, headers={"Location": target})
        secure = request.secure or (self.public_url or "").startswith("https:")
        resp.set_cookie(COOKIE, token.strip(), max_age=COOKIE_MAX_AGE, path="/", httponly=True,
                        samesite="Lax", secure=secure)
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        resp = web.Response(status=303, headers={"Location": "/login"})
        resp.del_cookie(COOKIE, path="/")
        return resp

    # --- the list -----------------------------------------------------------------------------

    async def alert_list(self, request: web.Request, p: Principal) -> web.StreamResponse:
        q = request.query
        status = q.get("status", "active")
        if status not in STATUSES:
            raise PageError(400, "状态无效", f"status must be one of {', '.join(STATUSES)}")
        department = q.get("department") or None
        if not p.is_bureau:
            department = p.department  # a department token sees its own department only
        severity = q.get("severity") or None
        if severity is not None and severity not in SEVERITY:
            raise PageError(400, "级别无效", f"severity must be one of {', '.join(SEVERITY)}")
        since, until = _day(q.get("since"), "since"), _day(q.get("until"), "until")
        alerts = await self.store.list(status, department, q.get("rule") or None,  # type: ignore[arg-type]
                                       severity, LIST_LIMIT * 4 if since or until else LIST_LIMIT)
        shown = [a for a in alerts if _in_period(a, since, until, self.wt)][:LIST_LIMIT]
        filters = _filters(p, status, department, q.get("rule", ""), severity, since, until)
        rows = "".join(_row(a, self.wt) for a in shown)
        more = (f'<p class="note">只显示最新 {LIST_LIMIT} 条 only the newest {LIST_LIMIT} are shown</p>'
                if len(shown) >= LIST_LIMIT else "")
        table = (f'<table class="alerts"><thead><tr><th>时间 Time</th><th>级别 Severity</th>'
                 f'<th>规则 Rule</th><th>部门 Dept.</th><th>办件 Case</th><th>告警 Alert</th>'
                 f'<th>状态 Status</th></tr></thead><tbody>{rows}</tbody></table>'
                 if shown else '<p class="empty">没有符合条件的告警 No alerts match.</p>')
        body = (f'{_header(p)}<h1>告警 <span class="en">Alerts</span></h1>{filters}'
                f'<p class="count" data-count="{len(shown)}">共 {len(shown)} 条 {len(shown)} '
                f'alert{"s" if len(shown) != 1 else ""}</p>{table}{more}')
        return _page("告警 Alerts", body)

    # --- one alert and its case ---------------------------------------------------------------

    async def alert_page(self, request: web.Request, p: Principal) -> web.StreamResponse:
        alert = await self.visible_alert(p, request.match_info["alert_id"])
        alert = {**alert, "case_steps": await self.case_steps(alert.get("case_id"))}
        done = request.query.get("done")
        flash = (f'<p class="flash">已{escape(ACTION.get(done, (done, done))[0])} '
                 f'{escape(ACTION.get(done, (done, done))[1])}</p>' if done in ACTION else "")
        return _page(f"告警 {alert['alert_id']}", _header(p) + flash + self.render_alert(alert, p))

    async def case_steps(self, case_id: Any) -> list[dict[str, Any]] | None:
        """The case's steps as the worker mirrors them (``agents.sinks.cases``), or None."""
        if not isinstance(case_id, str):
            return None
        raw = await self.store.r.get(f"{self.store.p}case:{case_id}")
        if raw is None:
            return None
        try:
            return list(orjson.loads(raw)["steps"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None

    def render_alert(self, a: Mapping[str, Any], p: Principal) -> str:
        d = a.get("details") or {}
        sev_zh, sev_en = SEVERITY.get(str(a.get("severity")), (a.get("severity"), a.get("severity")))
        st_zh, st_en = STATUS.get(str(a.get("status")), (a.get("status"), a.get("status")))
        facts = [("告警编号 Alert", a.get("alert_id")), ("规则 Rule", a.get("rule")),
                 ("办件 Case", a.get("case_id")), ("事项 Item", a.get("item_code")),
                 ("部门 Department", a.get("department")), ("经办人 Handler", a.get("actor")),
                 ("发生 Happened", _when(a.get("event_time"))),
                 ("发现 Detected", _when(a.get("detected_at")))]
        dl = "".join(f"<dt>{k}</dt><dd>{escape(str(v)) if v else '-'}</dd>" for k, v in facts)
        svg = counted_time_svg(a, self.wt)
        chart = (f'<section class="chart"><h2>计时 <span class="en">Counted time</span></h2>{svg}'
                 f'{_arithmetic(a, self.wt)}</section>' if svg else
                 '<p class="note">此规则不计时限 This rule counts no time limit.</p>')
        evidence = "".join(f"<li><code>{escape(e)}</code></li>" for e in a.get("evidence") or [])
        details = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_text(v))}</td></tr>"
                          for k, v in sorted(d.items()) if not str(k).endswith(("_zh", "_en")))
        return (
            f'<article class="alert" data-alert-id="{escape(str(a["alert_id"]))}" '
            f'data-status="{escape(str(a.get("status")))}">'
            f'<h1><span class="badge {escape(str(a.get("severity")))}">{sev_zh} {sev_en}</span> '
            f'{escape(str(a.get("rule")))} <span class="status {escape(str(a.get("status")))}">'
            f'{st_zh} {st_en}</span></h1>'
            f'<p class="msg zh">{escape(str(a.get("message_zh", "")))}</p>'
            f'<p class="msg en">{escape(str(a.get("message_en", "")))}</p>'
            f'<p class="law">依据 <span class="en">Legal basis</span>：'
            f'{escape(str(a.get("legal_basis", "-")))}</p>'
            f'<dl class="facts">{dl}</dl>{chart}'
            f'{_correction(a, self.ruleset)}'
            f'<section><h2>时间线 <span class="en">Time line</span></h2>{_timeline(a)}</section>'
            f'<section><h2>证据事件 <span class="en">Evidence events</span></h2><ul>{evidence}</ul>'
            f'{_steps_note(a)}</section>'
            f'<section class="actions">{_forms(a, p)}</section>'
            f'<section><h2>明细 <span class="en">Details</span></h2>'
            f'<table class="details">{details}</table></section>'
            f'</article>')

    # --- actions ------------------------------------------------------------------------------

    async def _form(self, request: web.Request, p: Principal) -> tuple[str, dict[str, str]]:
        alert_id = request.match_info["alert_id"]
        await self.visible_alert(p, alert_id)
        form = await request.post()
        return alert_id, {k: str(v).strip() for k, v in form.items()}

    async def ack(self, request: web.Request, p: Principal) -> web.StreamResponse:
        alert_id, form = await self._form(request, p)
        await self.store.acknowledge(alert_id, _actor(p, form), form.get("note") or None)
        raise web.HTTPSeeOther(f"/alerts/{quote(alert_id, safe='')}?done=acknowledged")

    async def resolve(self, request: web.Request, p: Principal) -> web.StreamResponse:
        alert_id, form = await self._form(request, p)
        if not p.is_bureau:
            raise PageError(403, "只有督查机构可以解决告警", "only the supervision bureau may resolve alerts")
        if not form.get("note"):
            raise PageError(400, "请填写处理说明（note）", "a note is required: how the alert was resolved")
        alert = await self.store.resolve(alert_id, _actor(p, form), form["note"])
        if self.on_resolved is not None:
            await self.on_resolved(alert)
        raise web.HTTPSeeOther(f"/alerts/{quote(alert_id, safe='')}?done=resolved")

    async def silence(self, request: web.Request, p: Principal) -> web.StreamResponse:
        alert_id, form = await self._form(request, p)
        if not p.is_bureau:
            raise PageError(403, "只有督查机构可以设置静默", "only the supervision bureau may silence")
        if not form.get("reason"):
            raise PageError(400, "请填写静默原因（reason）",
                            "a reason is required: why notifications are muted")
        try:
            duration = timedelta(seconds=parse_duration(form.get("duration", "")))
            await self.store.add_silence(created_by=_actor(p, form), reason=form["reason"],
                                         duration=duration, alert_id=alert_id)
        except ValueError as exc:
            raise PageError(400, "静默时长无效", f"duration: {exc}") from None
        raise web.HTTPSeeOther(f"/alerts/{quote(alert_id, safe='')}?done=silenced")


# --- pieces of pages -------------------------------------------------------------------------

_STYLE = """
body{font-family:"WenQuanYi Zen Hei","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
margin:1.2em;color:#222;max-width:1200px}
h1{font-size:1.35em}
h2{font-size:1.1em;margin-top:1.4em;border-bottom:1px solid #ddd}
.en{color:#666;font-size:.85em;font-weight:normal}
header{display:flex;justify-content:space-between;align-items:center;
border-bottom:2px solid #8b0000;padding-bottom:.3em}
header a{color:#8b0000;text-decoration:none;font-weight:bold}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #eee;padding:.3em .4em;text-align:left;vertical-align:top;font-size:.92em}
tr.alert-row:hover{background:#f7f7fb}
.badge{padding:.1em .4em;border-radius:3px;color:#fff;font-size:.85em;white-space:nowrap}
.badge.yellow{background:#b7791f}
.badge.red{background:#c53030}
.badge.escalated{background:#6b46c1}
.status{font-size:.8em;border:1px solid #999;border-radius:3px;padding:0 .3em;white-space:nowrap}
.status.resolved{color:#2f855a;border-color:#2f855a}
.status.open{color:#c53030;border-color:#c53030}
.msg.en{color:#555}
.law{background:#f5f5f0;padding:.4em}
dl.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:.2em .8em}
dt{color:#666}
dd{margin:0}
form.filters{display:flex;flex-wrap:wrap;gap:.6em;align-items:end;background:#f7f7f7;padding:.6em}
form.filters label{display:flex;flex-direction:column;font-size:.85em}
.actions form{border:1px solid #ddd;padding:.6em;margin:.5em 0}
.actions textarea{width:100%}
.flash{background:#e6fffa;border:1px solid #2f855a;padding:.4em}
.error{color:#c53030}
.note{color:#666;font-size:.85em}
ol.timeline li{margin:.2em 0}
@media print{header form,.actions,form.filters{display:none}
body{margin:0}
a{color:#000;text-decoration:none}
}
"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)} · 行政审批电子监察</title><style>{_STYLE}</style></head>'
            f'<body>{body}</body></html>')
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                 "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"})


def _message(status: int, zh: str, en: str) -> web.Response:
    return _page(en, f'<h1>{escape(zh)} <span class="en">{escape(en)}</span></h1>'
                 f'<p><a href="/alerts">告警列表 Alert list</a></p>', status)


def _not_found() -> web.Response:
    return _message(404, "没有此告警", "no such alert")


def _login_box(target: str) -> str:
    return (f'<h1>行政审批电子监察 <span class="en">jiancha</span></h1><form method="post" action="/login">'
            f'<label>访问令牌 Access token <input type="password" name="token" required></label>'
            f'<input type="hidden" name="next" value="{escape(target)}">'
            f'<button type="submit">登录 Log in</button></form>')


def _header(p: Principal) -> str:
    who = "督查机构 supervision bureau" if p.is_bureau else f"部门 department {p.department}"
    return (f'<header><a href="/alerts">行政审批电子监察 · 告警 <span class="en">alerts</span></a>'
            f'<span class="who">{escape(p.name)}（{escape(who)}）'
            f'<form method="post" action="/logout" style="display:inline"><button>退出 Log out</button>'
            f'</form></span></header>')


def _next(value: str | None) -> str:
    return value if value and value.startswith("/") and not value.startswith("//") else "/alerts"


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PageError(400, f"日期无效（{name}）", f"{name} must be a date, YYYY-MM-DD") from None


def _in_period(a: Mapping[str, Any], since: date | None, until: date | None, wt: WorkingTime) -> bool:
    if since is None and until is None:
        return True
    try:
        day = wt.local(datetime.fromisoformat(str(a.get("event_time")))).date()
    except ValueError:
        return False
    return (since is None or day >= since) and (until is None or day <= until)


def _options(values: Iterable[tuple[str, str]], chosen: str | None) -> str:
    return "".join(f'<option value="{escape(v)}"{" selected" if v == (chosen or "") else ""}>'
                   f'{escape(label)}</option>' for v, label in values)


def _filters(p: Principal, status: str, department: str | None, rule: str, severity: str | None,
             since: date | None, until: date | None) -> str:
    dept = (f'<label>部门 Department<input name="department" value="{escape(department or "")}" '
            f'placeholder="全部 all"></label>' if p.is_bureau else
            f'<label>部门 Department<input value="{escape(p.department or "")}" disabled></label>')
    sev = _options([("", "全部 all"), *((k, f"{zh} {en}") for k, (zh, en) in SEVERITY.items())], severity)
    sts = _options(((k, f"{STATUS[k][0]} {STATUS[k][1]}") for k in STATUSES), status)
    return (f'<form class="filters" method="get" action="/alerts">{dept}'
            f'<label>规则 Rule<input name="rule" value="{escape(rule)}" placeholder="deadline.*"></label>'
            f'<label>级别 Severity<select name="severity">{sev}</select></label>'
            f'<label>状态 Status<select name="status">{sts}</select></label>'
            f'<label>自 From<input type="date" name="since" value="{since or ""}"></label>'
            f'<label>至 To<input type="date" name="until" value="{until or ""}"></label>'
            f'<button type="submit">筛选 Filter</button></form>')


def _row(a: Mapping[str, Any], wt: WorkingTime) -> str:
    aid = str(a.get("alert_id"))
    sev = str(a.get("severity"))
    sev_zh, sev_en = SEVERITY.get(sev, (sev, sev))
    st_zh, st_en = STATUS.get(str(a.get("status")), (a.get("status"), a.get("status")))
    href = f"/alerts/{quote(aid, safe='')}"
    return (f'<tr class="alert-row" data-alert-id="{escape(aid)}" '
            f'data-department="{escape(str(a.get("department") or ""))}">'
            f'<td>{escape(_when(a.get("event_time")))}</td>'
            f'<td><span class="badge {escape(sev)}">{sev_zh} <span>{sev_en}</span></span></td>'
            f'<td>{escape(str(a.get("rule")))}</td><td>{escape(str(a.get("department") or "-"))}</td>'
            f'<td>{escape(str(a.get("case_id") or "-"))}</td>'
            f'<td><a href="{href}">{escape(str(a.get("message_zh", aid)))}</a>'
            f'<br><span class="en">{escape(str(a.get("message_en", "")))}</span></td>'
            f'<td><span class="status {escape(str(a.get("status")))}">{st_zh} {st_en}</span></td></tr>')


def _when(value: Any) -> str:
    return str(value)[:16].replace("T", " ") if value else "-"


def _text(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _arithmetic(a: Mapping[str, Any], wt: WorkingTime) -> str:
    """The counted-time sum in words: start, limit, extension, suspensions, deadline."""
    d = a.get("details") or {}
    span = counted_span(a)
    assert span is not None
    unit_zh, unit_en = ("自然日", "calendar days") if span.calendar_unit else ("工作日", "working days")
    parts = [f"<li>起算 <span class='en'>count starts</span>：{escape(_when(d.get('clock_start')))}"
             f"（{escape(str(d.get('clock_basis', '')))}；当日不计 <span class='en'>the start day is not "
             f"counted</span>）</li>",
             f"<li>时限 <span class='en'>limit</span>：{escape(str(d.get('limit')))} 个{unit_zh} "
             f"<span class='en'>{escape(str(d.get('limit')))} {unit_en}</span></li>"]
    if span.extension:
        parts.append(f"<li>经批准延长 <span class='en'>approved extension</span>：{span.extension} 个工作日 "
                     f"<span class='en'>{span.extension} working days</span></li>")
    for start, end in span.pauses:
        parts.append(f"<li>暂停计时 <span class='en'>suspended</span>：{escape(_when(start.isoformat()))} – "
                     f"{escape(_when(end.isoformat())) if end else '…'}</li>")
    if str(d.get("paused_days") or 0) not in ("0", "0.0"):
        parts.append(f"<li>暂停不计入 <span class='en'>not counted</span>："
                     f"{escape(str(d.get('paused_days')))} "
                     f"天 <span class='en'>days</span></li>")
    parts.append(f"<li>届满 <span class='en'>ran out</span>：<strong class='deadline' "
                 f"data-deadline='{escape(str(d.get('deadline')))}'>"
                 f"{escape(str(d.get('deadline_text') or _when(d.get('deadline'))))}</strong></li>")
    return f"<ol class='arithmetic'>{''.join(parts)}</ol>"


def _correction(a: Mapping[str, Any], ruleset: RuleSet | None) -> str:
    """What corrects the alert and whether it escalates (督办), from the rule set."""
    rule = str(a.get("rule"))
    config = ruleset.rules.get(rule) if ruleset is not None else None
    if a.get("severity") == "escalated":
        policy = ("已升级督办，由督查机构督促纠正并解决。",
                  "Escalated (督办): the supervision bureau follows it up and resolves it.")
    elif config is None or config.severity == "yellow":
        policy = ("预警，不升级督办；原因消除的（如按时作出决定）自动解决。",
                  "A warning: it never escalates; one whose cause ends (a decision in time) is "
                  "resolved automatically.")
    elif config.escalation is not None and config.escalation.never:
        policy = (f"不升级督办：{config.escalation.never}", f"Never escalates: {config.escalation.never}")
    else:
        days = ruleset.escalation_days(rule) if ruleset is not None else None
        policy = (f"违规后 {days} 个工作日内既未纠正、也未经督查机构解决的，升级督办。",
                  f"Neither corrected nor resolved by the bureau within {days} working days of the "
                  f"violation, it escalates (督办).")
    return (f'<section class="correction"><h2>纠正 <span class="en">Correction</span></h2>'
            f'<p>补做缺失的办理环节（如作出决定）即为纠正；收费、回避、漏项等无法由后续事件纠正的，由督查机构核实后解决。'
            f'<br><span class="en">Taking the missing step (e.g. making the decision) corrects it; what '
            f'no later event corrects (a fee, a conflict of duties, a skipped step) the bureau resolves '
            f'once checked.</span></p><p>{escape(policy[0])}<br><span class="en">{escape(policy[1])}'
            f'</span></p></section>')


_STEPS = {s.value for s in Step}


def _steps_note(a: Mapping[str, Any]) -> str:
    if a.get("case_steps"):
        return ('<p class="note">时间线含办件的全部步骤（工作进程在告警时写入）。 The time line has '
                'every step of the case, as the worker recorded it with the alert.</p>')
    return ('<p class="note">办件步骤未存入 Redis，页面所示为告警所载内容。 The case\'s steps are not '
            'in Redis: the page shows what the alert records.</p>')


def _timeline(a: Mapping[str, Any]) -> str:
    d = a.get("details") or {}
    events: list[tuple[str, str, str]] = []
    for step in a.get("case_steps") or []:  # the case's own steps, when the worker wrote them
        name = Step(step["step"]) if step.get("step") in _STEPS else None
        who = f" · {step.get('actor')}" if step.get("actor") else ""
        events.append((str(step.get("occurred_at")),
                       f"{STEP_ZH.get(name, step.get('step')) if name else step.get('step')}{who}",
                       f"{STEP_EN.get(name, step.get('step')) if name else step.get('step')} "
                       f"({step.get('department')}, {step.get('event_id')})"))
    if d.get("clock_start"):
        events.append((str(d["clock_start"]), "计时开始", f"count starts ({d.get('clock_basis', '')})"))
    for start, end in d.get("paused_spans") or []:
        events.append((str(start), "暂停计时", "suspended"))
        if end:
            events.append((str(end), "恢复计时", "resumed"))
    if d.get("deadline"):
        events.append((str(d["deadline"]), "期限届满", "limit ran out"))
    events.append((str(a.get("event_time")), "违规发生", "violation"))
    events.append((str(a.get("detected_at")), "告警产生", "alert raised"))
    for h in a.get("history") or []:
        zh, en = ACTION.get(str(h.get("action")), (str(h.get("action")), str(h.get("action"))))
        who = f" · {h.get('by')}" if h.get("by") else ""
        note = f"：{h.get('note')}" if h.get("note") else ""
        events.append((str(h.get("at")), f"{zh}{who}{note}", en))
    events.sort(key=lambda e: _sort_key(e[0]))
    items = "".join(f'<li><time>{escape(_when(at))}</time> {escape(zh)} '
                    f'<span class="en">{escape(en)}</span></li>'
                    for at, zh, en in events)
    return f'<ol class="timeline">{items}</ol>'


def _sort_key(value: str) -> float:
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return float("inf")


def _forms(a: Mapping[str, Any], p: Principal) -> str:
    aid = quote(str(a["alert_id"]), safe="")
    status = a.get("status")
    by = '<label>处理人 By <input name="by" placeholder="姓名 name"></label>'
    out = []
    if status == "open":
        out.append(f'<form method="post" action="/alerts/{aid}/ack" class="ack"><h3>确认 '
                   f'<span class="en">Acknowledge</span></h3>{by}<label>说明 Note '
                   f'<textarea name="note" rows="2"></textarea></label>'
                   f'<button type="submit">确认 Acknowledge</button></form>')
    if p.is_bureau and status in ("open", "acknowledged"):
        out.append(f'<form method="post" action="/alerts/{aid}/resolve" class="resolve"><h3>解决 '
                   f'<span class="en">Resolve</span></h3>{by}<label>处理说明（必填） Note (required) '
                   f'<textarea name="note" rows="2" required></textarea></label>'
                   f'<button type="submit">解决 Resolve</button></form>')
    if p.is_bureau and status in ("open", "acknowledged"):
        durations = _options([("2h", "2 小时 hours"), ("1d", "1 天 day"), ("7d", "7 天 days")], "1d")
        out.append(f'<form method="post" action="/alerts/{aid}/silence" class="silence"><h3>静默通知 '
                   f'<span class="en">Silence notifications</span></h3>{by}<label>时长 For '
                   f'<select name="duration">{durations}</select></label>'
                   f'<label>原因（必填） Reason (required) <input name="reason" required></label>'
                   f'<button type="submit">静默 Silence</button></form>')
    return "".join(out) or '<p class="note">无可执行的操作 Nothing to do here with this token.</p>'


def _actor(p: Principal, form: Mapping[str, str]) -> str:
    by = form.get("by")
    return f"{p.name} ({by})" if by else p.name


def page_query(**filters: str) -> str:
    """``/alerts?…`` for the given filters (links from dashboards and the demo)."""
    return "/alerts" + ("?" + urlencode({k: v for k, v in filters.items() if v}) if filters else "")
