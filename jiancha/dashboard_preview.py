"""``jiancha dashboards preview``: what each Grafana dashboard shows, drawn without Grafana.

Runs the demo's engine (embedded broker and Redis, a worker on a simulated clock, two
weeks of history, then live department traffic), Debian's Prometheus scraping it with the
repository's rules, and asks Prometheus every panel's query over its HTTP API, with every
variable at "All" (the period: the current month). Each dashboard becomes one page laid
out as Grafana lays it out (24 columns, the panels' grid positions): time series as
lines, stats as numbers, bar gauges and bar charts as bars, tables as tables; headless
Chromium photographs the page (``grafana-<uid>.png``)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import secrets
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jiancha.dashboards import promql

from . import svgchart
from .svgchart import Series

JSON_DIR = Path(promql.__file__).resolve().parent / "json"  # the package's, wherever installed
PAGE_WIDTH = 1200
ROW_HEIGHT = 30  # Grafana's grid row, in pixels
TABLE_ROWS = 8
BARS = 16
HIDDEN_LABELS = {"__name__", "job", "instance", "service"}
#: the simulated clock starts on a Monday morning of the official calendar with no holiday in
#: the history before it, so that the departments work while the previews are fed
CLOCK_START = datetime(2026, 6, 15, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@dataclass
class Prometheus:
    url: str
    start: float
    end: float

    def api(self, path: str, **params: str) -> Any:
        full = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(full, timeout=20) as r:
            answer = json.loads(r.read())
        if answer.get("status") != "success":
            raise RuntimeError(f"{full}: {answer}")
        return answer["data"]

    def instant(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr, time=f"{self.end:.3f}")
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def range(self, expr: str) -> list[dict[str, Any]]:
        step = max(1.0, (self.end - self.start) / 120)
        data = self.api("query_range", query=expr, start=f"{self.start:.3f}", end=f"{self.end:.3f}",
                        step=f"{step:g}")
        return list(data["result"])


def variable_values(dashboard: dict[str, Any], prom: Prometheus) -> dict[str, str]:
    """What Grafana puts in a query with every variable at "All"; the period: the latest
    month Prometheus has a score for."""
    span = f"{math.ceil(prom.end - prom.start) + 10}s"
    values = {"__rate_interval": "30s", "__interval": "5s", "__range": span}
    for v in dashboard["templating"]["list"]:
        if v.get("includeAll"):
            values[v["name"]] = v.get("allValue") or ".*"
        elif v["name"] == "period":
            months = [p for p in prom.api("label/period/values") if re.fullmatch(r"\d{4}-\d{2}", p)]
            values["period"] = max(months) if months else ".*"
        else:
            values[v["name"]] = ".*"
    return values


def legend(target: dict[str, Any], metric: dict[str, str]) -> str:
    fmt = target.get("legendFormat")
    if fmt and fmt != "__auto":
        text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)
        return " ".join(text.split()) or "value"
    shown = [v for k, v in sorted(metric.items()) if k not in HIDDEN_LABELS]
    return " ".join(shown) or "value"


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _time_ticks(start: float, end: float) -> list[tuple[float, str]]:
    return [(t, datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S"))
            for t in (start + (end - start) * i / 4 for i in range(5))]


def draw_panel(panel: dict[str, Any], prom: Prometheus, values: dict[str, str]) -> str:
    """The panel's body (HTML): what its queries return, drawn as its type draws it."""
    targets = [t for t in panel.get("targets", []) if "expr" in t]
    width = int(PAGE_WIDTH * panel["gridPos"]["w"] / 24) - 16
    height = max(60, ROW_HEIGHT * panel["gridPos"]["h"] - 40)
    kind = panel["type"]
    try:
        if kind == "timeseries":
            series = [Series(legend(t, s["metric"]), [(float(x), _number(y)) for x, y in s["values"]])
                      for t in targets for s in prom.range(promql.substitute(t["expr"], values))]
            if not series:
                return '<p class="empty">no data</p>'
            return svgchart.lines(panel["title"], series[:12], _time_ticks(prom.start, prom.end),
                                  width=width, height=height, legend_limit=8)
        results = [(t, s) for t in targets for s in prom.instant(promql.substitute(t["expr"], values))]
        if kind == "stat":
            return "".join(f'<div class="stat"><b>{escape(_stat(s))}</b>'
                           f'<span>{escape(legend(t, s["metric"]))}</span></div>'
                           for t, s in results) or '<p class="empty">no data</p>'
        if kind == "table":
            return _table(panel, results)
        bars = sorted(((legend(t, s["metric"]), _number(s["value"][1]) or 0.0, None) for t, s in results),
                      key=lambda b: -b[1])[:BARS]
        if not bars:
            return '<p class="empty">no data</p>'
        return svgchart.hbars(panel["title"], bars, width=width, label_width=min(220, width // 3))
    except (OSError, RuntimeError, KeyError) as exc:
        return f'<p class="empty">query failed: {escape(str(exc)[:200])}</p>'


def _stat(sample: dict[str, Any]) -> str:
    value = _number(sample["value"][1])
    return "–" if value is None else svgchart.format_value(value)


def _date_columns(panel: dict[str, Any]) -> set[str]:
    """Columns the panel shows as dates (an override with a ``dateTime*`` unit)."""
    return {o["matcher"].get("options") for o in panel.get("fieldConfig", {}).get("overrides", [])
            if any(str(p.get("value", "")).startswith("dateTime") for p in o.get("properties", []))}


def _table(panel: dict[str, Any], results: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """Grafana's table: one row per label set, a value column per query (``Value #A``…,
    or ``Value`` for one query), renamed, hidden and ordered as the panel's ``organize``
    transformation says, sorted by its ``sortBy`` (else by the first value, largest first)."""
    renames: dict[str, str] = {}
    hidden: set[str] = set(HIDDEN_LABELS) | {"Time"}
    order: dict[str, int] = {}
    sort_by: str | None = None
    for tr in panel.get("transformations", []):
        options = tr.get("options", {})
        if tr.get("id") == "organize":
            renames.update(options.get("renameByName", {}))
            hidden |= {k for k, v in options.get("excludeByName", {}).items() if v}
            order.update(options.get("indexByName", {}))
        elif tr.get("id") == "sortBy" and options.get("sort"):
            sort_by = options["sort"][0].get("field")
    refs = list(dict.fromkeys(t["refId"] for t, _ in results))
    table: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for t, sample in results:
        key = tuple(sorted((k, v) for k, v in sample["metric"].items() if k not in hidden))
        column = "Value" if len(refs) == 1 else f"Value #{t['refId']}"
        table.setdefault(key, dict(key))[column] = _number(sample["value"][1])
    if not table:
        return '<p class="empty">no data</p>'
    values = ["Value"] if len(refs) == 1 else [f"Value #{r}" for r in refs]
    labels = sorted({k for key in table for k, _ in key})
    columns = sorted([*labels, *values], key=lambda c: (order.get(c, 100 + len(order)), c in values))
    key_column = sort_by if sort_by in values else values[0]
    rows = sorted(table.values(), key=lambda r: -(r.get(key_column) or 0.0))
    dates = _date_columns(panel)

    def cell(column: str, row: dict[str, Any]) -> str:
        value = row.get(column)
        if column not in values:
            return str(value or "")
        if value is None:
            return ""
        if renames.get(column, column) in dates:
            return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return svgchart.format_value(value)

    head = "".join(f"<th>{escape(renames.get(c, c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell(c, r))}</td>" for c in columns) + "</tr>"
                   for r in rows[:TABLE_ROWS])
    more = len(rows) - TABLE_ROWS
    tail = f'<p class="more">… {more} more rows</p>' if more > 0 else ""
    return f"<table><tr>{head}</tr>{body}</table>{tail}"


CSS = """
body { font-family: "WenQuanYi Zen Hei", "Noto Sans CJK SC", sans-serif; margin: 0;
       background: #f4f5f7; color: #222; width: WIDTHpx; }
header { padding: 10px 12px; background: #1f2937; color: #fff; }
header small { color: #cbd5e1; }
main { display: grid; grid-template-columns: repeat(24, 1fr); gap: 6px; padding: 6px; }
.row { grid-column: span 24; font-weight: bold; padding: 6px 4px 0; }
.panel { background: #fff; border: 1px solid #d8dde6; border-radius: 3px; padding: 4px 6px;
         overflow: hidden; }
.panel h3 { font-size: 13px; margin: 0 0 4px; }
.stat { display: inline-block; margin: 4px 12px 0 0; }
.stat b { font-size: 26px; color: #1a7f37; display: block; }
.stat span { font-size: 11px; color: #555; }
table { border-collapse: collapse; font-size: 11px; width: 100%; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 2px 4px; text-align: left; }
.empty, .more { color: #888; font-size: 12px; }
""".replace("WIDTH", str(PAGE_WIDTH))


def render_dashboard(dashboard: dict[str, Any], prom: Prometheus, when: str) -> str:
    values = variable_values(dashboard, prom)
    cells = []
    for panel in promql.panels(dashboard):
        if panel["type"] == "row":
            cells.append(f'<div class="row">{escape(panel.get("title", ""))}</div>')
            continue
        grid = panel["gridPos"]
        cells.append(f'<div class="panel" style="grid-column: span {grid["w"]}; '
                     f'min-height: {ROW_HEIGHT * grid["h"]}px">'
                     f'<h3>{escape(panel.get("title", ""))}</h3>{draw_panel(panel, prom, values)}</div>')
    chosen = ", ".join(f"{k} = {values[k]}" for k in ("department", "item", "period") if k in values)
    return ('<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>{escape(dashboard['title'])}</title><style>{CSS}</style></head><body>"
            f"<header><b>{escape(dashboard['title'])}</b> <small>Grafana dashboard "
            f"{escape(dashboard['uid'])}, preview from Prometheus fed by jiancha demo, {escape(when)}"
            f" ({escape(chosen)})</small></header><main>{''.join(cells)}</main></body></html>\n")


def dashboards(json_dir: Path = JSON_DIR) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(json_dir.glob("*.json"))]


def write_previews(prom: Prometheus, out: Path, json_dir: Path = JSON_DIR) -> list[Path]:
    from .browser import html_to_png

    when = datetime.fromtimestamp(prom.end, UTC).strftime("%Y-%m-%d %H:%M UTC")
    written = []
    for dashboard in dashboards(json_dir):
        path = out / f"grafana-{dashboard['uid'].removeprefix('jiancha-')}.png"
        html = render_dashboard(dashboard, prom, when)
        html_to_png(html, path, width=PAGE_WIDTH)
        written.append(path)
    return written


def run_preview(out: Path, seconds: float = 60.0, speed: float = 3600.0, history_cases: int = 300,
                say: Callable[[str], None] = print) -> list[Path]:
    """Start the engine and Prometheus, feed them for ``seconds``, write the previews."""
    from .browser import chromium_path
    from .demo import _send_history, _wait_ready
    from .embedded import EmbeddedStack, ManagedProcess, free_port, spawn
    from .prometheus_local import prometheus_binary, start_prometheus

    chromium_path()  # before a minute of traffic, not after: raises BrowserMissing
    if prometheus_binary() is None:
        raise FileNotFoundError("prometheus is not on PATH (Debian's prometheus package)")
    stack = EmbeddedStack(redis_password=secrets.token_hex(8))
    procs: list[ManagedProcess] = []
    try:
        say("starting the Tansu broker and redis-server …")
        stack.start()
        clock_start = CLOCK_START
        web_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("JIANCHA_")}
        env.update(stack.env())
        env.update({"JIANCHA_WEB_PORT": str(web_port), "JIANCHA_DATA_DIR": str(stack.workdir / "data"),
                    "JIANCHA_CLOCK_START": clock_start.isoformat(), "JIANCHA_CLOCK_SPEED": str(speed),
                    "JIANCHA_CLOCK_ANCHOR": repr(time.time())})
        worker = spawn("worker", [sys.executable, "-m", "jiancha.cli", "worker", "--loglevel",
                                  "WARNING"], stack.workdir, env=env)
        procs.append(worker)
        _wait_ready(web_port, worker, {"stop": False})
        prometheus, url = start_prometheus(stack.workdir, web_port)
        procs.append(prometheus)
        started = time.time()
        say(f"worker on :{web_port}, Prometheus at {url}; sending history and live traffic "
            f"for {seconds:g} s …")
        asyncio.run(_send_history(env, clock_start, history_cases))
        simulator = spawn("simulator", [sys.executable, "-m", "jiancha.cli", "simulate", "--rate", "2",
                                        "--violations", "0.3"], stack.workdir, env=env)
        procs.append(simulator)
        time.sleep(max(0.0, started + seconds - time.time()))
        if simulator.proc.poll() is not None:
            raise RuntimeError(f"the simulator exited: {simulator.log_path.read_text()[-2000:]}")
        time.sleep(3)  # a last scrape and rule evaluation
        out.mkdir(parents=True, exist_ok=True)
        return write_previews(Prometheus(url, started - 5, time.time()), out)
    finally:
        for p in reversed(procs):
            p.stop(timeout=15)
        stack.stop()
