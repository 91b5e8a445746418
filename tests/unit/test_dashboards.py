"""Dashboards as code: the committed JSON is what the code generates, the dashboards are
well formed and read only metrics that exist, Grafana provisioning points at them, and
``jiancha dashboards push`` talks to Grafana's HTTP API as it should (against a fake
Grafana that records the requests)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from jiancha.cli import app
from jiancha.dashboards import build, promql
from jiancha.dashboards.names import DATASOURCE_VARIABLE, DEFAULT_DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID

ROOT = Path(__file__).resolve().parents[2]
JSON_DIR = ROOT / "dashboards" / "json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH = re.compile(r"[A-Za-z]{3,}(?:\s+[A-Za-z]{2,}){2,}")  # a few English words
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}
EXPECTED = {
    "jiancha-live": "实时监察",
    "jiancha-evaluation": "绩效评估",
    "jiancha-health": "引擎健康",
}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {d["uid"]: d for d in build.dashboards().values()}


def _worker_sample_names() -> set[str]:
    """Every sample name a worker can expose: agents/metrics.py (also labelled metrics that
    have no child yet) and the indicators extension's collector, when it is there."""
    from jiancha.agents.metrics import EngineMetrics

    families = list(EngineMetrics().registry.collect())
    families += _indicator_families()
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_count", "_sum", "_created"), "summary": ("_count", "_sum")}
    names = set()
    for family in families:
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def _indicator_families() -> list[Any]:
    from jiancha.agents.indicators import IndicatorCollector

    return list(IndicatorCollector().collect())


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return list(promql.panels(d))


# --- the JSON is generated -----------------------------------------------------------------


def test_committed_json_matches_the_code() -> None:
    stale = build.check()
    assert not stale, f"dashboards/json is out of date ({stale}): run 'python -m jiancha.dashboards.build'"


def test_build_check_detects_drift(tmp_path: Path) -> None:
    out = tmp_path / "json"
    assert build.main(["--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in JSON_DIR.glob("*.json"))
    assert build.main(["--check", "--out", str(out)]) == 0
    target = out / "jiancha-live.json"
    target.write_text(target.read_text(encoding="utf-8").replace("实时监察", "实时"), encoding="utf-8")
    (out / "left-over.json").write_text("{}")
    assert build.check(out) == ["jiancha-live.json", "left-over.json"]
    assert build.main(["--check", "--out", str(out)]) == 1
    # writing again repairs the file and removes the dashboard the code no longer makes
    build.write(out)
    assert build.check(out) == []


def test_cli_build_and_module_entry_point(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["dashboards", "build", "--check"])
    assert done.exit_code == 0, done.output
    out = tmp_path / "json"
    done = runner.invoke(app, ["dashboards", "build", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert len(list(out.glob("*.json"))) == 3
    (out / "jiancha-health.json").write_text("{}")
    done = runner.invoke(app, ["dashboards", "build", "--check", "--out", str(out)])
    assert done.exit_code == 1
    assert "jiancha-health.json" in done.output
    proc = subprocess.run([sys.executable, "-m", "jiancha.dashboards.build", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_json_is_stable_text() -> None:
    for path in JSON_DIR.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True,
                                  ensure_ascii=False) + "\n"
        assert "\\u" not in text, "Chinese is written as UTF-8, not escaped"


# --- the dashboards ------------------------------------------------------------------------


def test_three_dashboards_with_chinese_titles(dashboards: dict[str, dict[str, Any]]) -> None:
    assert {uid: d["title"] for uid, d in dashboards.items()} == EXPECTED
    for d in dashboards.values():
        assert ENGLISH.search(d["description"]), d["uid"]
        assert "jiancha" in d["tags"]
        assert d["timezone"] == "Asia/Shanghai"
        assert d["editable"] is False  # dashboards are code: change them here


def test_every_panel_has_a_chinese_title_and_an_english_description(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for d in dashboards.values():
        for p in _panels(d):
            assert CJK.search(p["title"]), f"{d['uid']} panel {p['id']}: title not in Chinese"
            if p["type"] != "row":
                assert ENGLISH.search(p.get("description", "")), (
                    f"{d['uid']} panel {p['title']}: no English description")


def test_layout(dashboards: dict[str, dict[str, Any]]) -> None:
    for d in dashboards.values():
        panels = _panels(d)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)) and all(i > 0 for i in ids), d["uid"]
        cells: dict[tuple[int, int], int] = {}
        for p in panels:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, (d["uid"], p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{d['uid']}: {p['title']} overlaps panel {cells[x, y]}"
                    cells[x, y] = p["id"]


def test_targets(dashboards: dict[str, dict[str, Any]]) -> None:
    n = 0
    for d in dashboards.values():
        defined = {v["name"] for v in d["templating"]["list"]}
        for p in _panels(d):
            if p["type"] in ("row", "text"):
                continue
            assert p["targets"], f"{d['uid']} {p['title']}: no query"
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)) and all(refs), (d["uid"], p["title"], refs)
            for t in p["targets"]:
                n += 1
                assert t["datasource"] == {"type": "prometheus", "uid": f"${{{DATASOURCE_VARIABLE}}}"}
                assert t["expr"].strip()
                assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
                used = promql.variables_used(t["expr"])
                assert used <= defined | GRAFANA_VARIABLES, (p["title"], used - defined)
            if p["type"] in ("table", "bargauge", "barchart"):
                assert all(t.get("instant") for t in p["targets"]), (
                    f"{p['title']}: a {p['type']} shows one value per series: instant query")
    assert n >= 50


def test_template_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    def variables(uid: str) -> dict[str, dict[str, Any]]:
        return {v["name"]: v for v in dashboards[uid]["templating"]["list"]}

    for uid in dashboards:
        vs = variables(uid)
        assert vs[DATASOURCE_VARIABLE]["type"] == "datasource"
        assert vs[DATASOURCE_VARIABLE]["query"] == "prometheus"
        assert vs[DATASOURCE_VARIABLE]["current"]["value"] == DEFAULT_DATASOURCE_UID
        dept = vs["department"]
        assert dept["includeAll"] and dept["multi"] and dept["allValue"] == ".*"
        assert dept["query"] == "label_values(jiancha_events_ingested_total, department)"
    evaluation = variables("jiancha-evaluation")
    assert "item" in evaluation and "$department" in evaluation["item"]["query"]
    assert evaluation["item"]["allValue"] == "^$"  # All items = the department's total
    assert evaluation["period"]["includeAll"] is False


def test_panels_link_to_the_alert_pages(dashboards: dict[str, dict[str, Any]]) -> None:
    """Data links open the notifier's alert list filtered by what the panel shows: only
    filters the pages know, and label interpolations the panel's series carry."""
    from urllib.parse import parse_qsl, urlsplit

    links = {p["title"]: p.get("fieldConfig", {}).get("defaults", {}).get("links", [])
             for p in _panels(dashboards["jiancha-live"])}
    linked = {title: ls for title, ls in links.items() if ls}
    assert {"在办预警", "在办预警（按部门）", "督办（按部门）", "最新红色预警（近1小时）"} <= set(linked)
    for title, ls in linked.items():
        (link,) = ls
        url = urlsplit(link["url"])
        assert link["url"].startswith("${notifier}/alerts") and link["targetBlank"], title
        query = dict(parse_qsl(url.query))
        assert set(query) <= {"department", "rule", "severity", "status"}, title
        assert query.get("severity", "red") in ("red", "escalated", "yellow"), title
    assert dict(parse_qsl(urlsplit(linked["在办预警（按部门）"][0]["url"]).query)) == {
        "department": "${__field.labels.department}"}
    for uid in dashboards:
        (var,) = [v for v in dashboards[uid]["templating"]["list"] if v["name"] == "notifier"]
        assert var["type"] == "textbox" and var["query"] == var["current"]["value"] == "http://127.0.0.1:6067"


def test_every_metric_a_dashboard_reads_exists(dashboards: dict[str, dict[str, Any]]) -> None:
    worker = _worker_sample_names()
    recorded = promql.recorded()
    optional = set(promql.EXTENSION_METRICS)
    for d in dashboards.values():
        exprs = [t.expr for t in promql.targets(d)]
        exprs += [re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["query"])
                  for v in d["templating"]["list"] if v["type"] == "query"]
        for expr in exprs:
            for name in promql.metric_names(expr):
                assert (name in worker or name in recorded or name in optional
                        or name in promql.PROMETHEUS_SERIES), f"{d['uid']}: unknown metric {name} in {expr}"


def test_recording_and_alerting_rules_read_worker_metrics() -> None:
    worker = _worker_sample_names()
    recorded = promql.recorded()
    for rule in promql.rules():
        for name in promql.raw_metrics(rule.expr, recorded):
            assert name in worker or name in promql.PROMETHEUS_SERIES, (
                f"{rule.file}: {rule.record or rule.alert} reads {name}, which no worker exports")


def test_indicator_metrics_have_the_labels_the_evaluation_dashboard_uses() -> None:
    from jiancha.agents.indicators import IndicatorCollector

    collector = IndicatorCollector()
    collector.indicators = [(("gongan", "", "on_time_rate", "2026-06"), 0.9)]
    collector.scores = [(("gongan", "2026-06"), 95.0)]
    samples = {f.name: f.samples for f in collector.collect()}
    assert set(samples["jiancha_indicator"][0].labels) == {"department", "item", "indicator",
                                                           "period"}
    assert set(samples["jiancha_score"][0].labels) == {"department", "period"}
    from jiancha.dashboards.evaluation import INDICATORS, MONTH_PERIODS
    from jiancha.rules.indicators import INDICATORS as EXPORTED

    assert re.fullmatch(MONTH_PERIODS, "2026-06") and not re.fullmatch(MONTH_PERIODS, "2026-Q2")
    assert set(INDICATORS) <= set(EXPORTED), set(INDICATORS) - set(EXPORTED)


# --- PromQL helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (department) (rate(jiancha_events_ingested_total{department=~"$department"}[5m]))',
     {"jiancha_events_ingested_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))", {"x_bucket"}),
    ('a / on (b) group_left (c) jiancha:x:rate1m{d="e(f)"} offset 1h and bool 1e3',
     {"a", "jiancha:x:rate1m"}),
    ('count(ALERTS{alertname=~"J.+"}) or on () vector(0)', {"ALERTS"}),
    ("max_over_time((timestamp(increase(y[2m]) > 0))[1h:15s]) * 1000", {"y"}),
    ('{__name__="z"}', {"z"}),
])
def test_metric_names(expr: str, names: set[str]) -> None:
    assert promql.metric_names(expr) == names


def test_substitute() -> None:
    expr = 'rate(x{d=~"$department", i=~"${item}", p="[[period]]"}[$__rate_interval])'
    assert promql.variables_used(expr) == {"department", "item", "period", "__rate_interval"}
    assert promql.substitute(expr, {"department": ".*", "item": "a", "period": "b",
                                    "__rate_interval": "30s"}) == (
        'rate(x{d=~".*", i=~"a", p="b"}[30s])')
    with pytest.raises(KeyError):
        promql.substitute("$nope", {})


# --- Grafana provisioning ------------------------------------------------------------------


def test_provisioning_points_at_the_generated_dashboards() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = dict(reversed(v.split(":")[:2]) for v in compose["services"]["grafana"]["volumes"])
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "jiancha.yml").read_text("utf-8"))
    (p,) = provider["providers"]
    assert p["type"] == "file" and p["folderUid"] == FOLDER_UID and p["folder"] == FOLDER_TITLE
    path = p["options"]["path"]
    assert (ROOT / mounts[path]).resolve() == JSON_DIR
    assert mounts["/etc/grafana/provisioning"].rstrip("/") == "./deploy/grafana/provisioning"

    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text("utf-8"))
    (ds,) = sources["datasources"]
    assert ds["uid"] == DEFAULT_DATASOURCE_UID and ds["type"] == "prometheus"
    prometheus_port = compose["services"]["prometheus"]["ports"][0].rsplit(":", 1)[-1]
    assert ds["url"] == f"http://prometheus:{prometheus_port}"


# --- push to a fake Grafana ----------------------------------------------------------------


class FakeGrafana:
    """Just enough of Grafana's HTTP API: folders and dashboards/db; records every request."""

    def __init__(self, *, folder_exists: bool = False, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.folders: set[str] = {FOLDER_UID} if folder_exists else set()
        self.status = status
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def _reply(self, status: int, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                body = self._body()
                fake.requests.append({"method": self.command, "path": self.path, "body": body,
                                      "authorization": self.headers.get("Authorization")})
                if fake.status != 200:
                    self._reply(fake.status, {"message": "invalid API key"})
                elif self.command == "GET" and self.path.startswith("/api/folders/"):
                    uid = self.path.rsplit("/", 1)[1]
                    if uid in fake.folders:
                        self._reply(200, {"uid": uid, "title": FOLDER_TITLE})
                    else:
                        self._reply(404, {"message": "folder not found"})
                elif self.command == "POST" and self.path == "/api/folders":
                    fake.folders.add(body["uid"])
                    self._reply(200, {"uid": body["uid"], "title": body["title"], "id": 7})
                elif self.command == "POST" and self.path == "/api/dashboards/db":
                    uid = body["dashboard"]["uid"]
                    self._reply(200, {"status": "success", "uid": uid, "version": 3,
                                      "url": f"/d/{uid}/x", "id": 11})
                else:
                    self._reply(404, {"message": "not found"})

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGrafana:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as g:
        yield g


def test_push_creates_the_folder_and_saves_every_dashboard(fake_grafana: FakeGrafana) -> None:
    done = CliRunner().invoke(app, ["dashboards", "push", "--url", fake_grafana.url,
                                    "--token", "glsa_secret", "--datasource-uid", "prom-2"])
    assert done.exit_code == 0, done.output
    reqs = fake_grafana.requests
    assert all(r["authorization"] == "Bearer glsa_secret" for r in reqs)
    assert [(r["method"], r["path"]) for r in reqs[:2]] == [
        ("GET", f"/api/folders/{FOLDER_UID}"), ("POST", "/api/folders")]
    assert reqs[1]["body"] == {"title": FOLDER_TITLE, "uid": FOLDER_UID}
    saved = [r["body"] for r in reqs[2:]]
    assert all(r["method"] == "POST" and r["path"] == "/api/dashboards/db" for r in reqs[2:])
    assert {b["dashboard"]["uid"] for b in saved} == set(EXPECTED)
    committed = {json.loads(p.read_text("utf-8"))["uid"]: json.loads(p.read_text("utf-8"))
                 for p in JSON_DIR.glob("*.json")}
    for body in saved:
        assert body["overwrite"] is True and body["folderUid"] == FOLDER_UID and body["message"]
        d = body["dashboard"]
        assert d["id"] is None
        (ds,) = [v for v in d["templating"]["list"] if v["name"] == DATASOURCE_VARIABLE]
        assert ds["current"]["value"] == "prom-2"
        # apart from the datasource preset, what is pushed is the committed JSON
        expected = committed[d["uid"]]
        assert d["panels"] == expected["panels"] and d["title"] == expected["title"]
    for uid in EXPECTED:
        assert f"pushed {uid}" in done.output and f"/d/{uid}/x" in done.output


def test_push_into_an_existing_folder_keeps_the_datasource() -> None:
    with FakeGrafana(folder_exists=True) as g:
        done = CliRunner().invoke(app, ["dashboards", "push", "--url", g.url],
                                  env={"GRAFANA_TOKEN": "from-env"})
        assert done.exit_code == 0, done.output
        assert [r["method"] for r in g.requests] == ["GET", "POST", "POST", "POST"]
        assert all(r["authorization"] == "Bearer from-env" for r in g.requests)
        for r in g.requests[1:]:
            (ds,) = [v for v in r["body"]["dashboard"]["templating"]["list"]
                     if v["name"] == DATASOURCE_VARIABLE]
            assert ds["current"]["value"] == DEFAULT_DATASOURCE_UID


def test_push_reports_a_refusal() -> None:
    with FakeGrafana(status=401) as g:
        done = CliRunner().invoke(app, ["dashboards", "push", "--url", g.url, "--token", "bad"])
    assert done.exit_code == 1
    assert "refused" in done.output and "Unauthorized" in done.output
    assert len(g.requests) == 1  # stops at the first refusal


def test_push_reports_an_unreachable_grafana() -> None:
    from jiancha.embedded import free_port

    url = f"http://127.0.0.1:{free_port()}"
    done = CliRunner().invoke(app, ["dashboards", "push", "--url", url, "--token", "t"])
    assert done.exit_code == 1
    assert "cannot reach Grafana" in done.output


def test_push_needs_dashboards(tmp_path: Path) -> None:
    with FakeGrafana() as g:
        done = CliRunner().invoke(app, ["dashboards", "push", "--url", g.url, "--token", "t",
                                        "--dir", str(tmp_path)])
    assert done.exit_code == 1
    assert "no dashboards" in done.output
    assert g.requests == []


def test_push_needs_no_sdk(fake_grafana: FakeGrafana) -> None:
    """push reads the committed JSON: grafana-foundation-sdk is needed to build, not to push."""
    code = (
        "import sys; sys.modules['grafana_foundation_sdk'] = None\n"
        "from jiancha.cli import app\n"
        f"app(['dashboards', 'push', '--url', {fake_grafana.url!r}, '--token', 't'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(fake_grafana.requests) == 5
