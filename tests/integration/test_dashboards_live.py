"""The dashboards show data: every query of every panel, against a real Prometheus scraping a
real worker under simulated load.

Once per module: the embedded Tansu broker and redis-server, a real ``jiancha worker`` on a
simulated clock (1,200× real time from a working-day morning), Debian's ``prometheus`` on
a free port with the repository's prometheus.yml (worker target static instead of Docker
DNS, 1 s scrape and evaluation) and its recording and alerting rules; two weeks of history
backfilled as ``jiancha demo`` does, then live department traffic and a trickle of invalid
events (dead letters) for about 25 s.

Then, per panel: every metric the panel reads (through recording rules) exists in the
worker's /metrics, and every target, with ``$department``/``$item``/``$period`` = ``.*``
and ``$__rate_interval`` = 30s, returns data from Prometheus's HTTP API (a range query for
time series, an instant query for tables, bar gauges and rankings); with ``$department``
set to a real department, a query whose series carry that department still returns it.
Panels that read a metric of a worker extension (:data:`dashboards.promql.EXTENSION_METRICS`,
the indicators) are skipped, naming the metric, if the worker does not export it.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jiancha.dashboards import build, promql
from jiancha.embedded import EmbeddedStack
from jiancha.prometheus_local import prometheus_binary, start_prometheus
from tests.integration.conftest import Worker, WorkerSpec
from tests.wait import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = prometheus_binary()

#: a Monday morning on the official calendar (no holiday in the two weeks before)
CLOCK_START = datetime(2026, 6, 15, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
SPEED = 3600.0  # 25 s of load = 25 h of department work
HISTORY = timedelta(days=14)
HISTORY_WORKING_DAYS = 10  # cases submitted over the first 10 working days of it
HISTORY_CASES = 300
REPORTING_DELAY = timedelta(minutes=2)  # how long after a step the history reports it
LOAD_SECONDS = 25.0
RATE_INTERVAL = "30s"

DASHBOARDS = {d["uid"]: d for d in build.dashboards().values()}
PANELS = [(uid, p) for uid, d in DASHBOARDS.items() for p in promql.panels(d)
          if p.get("targets")]
VARIABLES = [(uid, v) for uid, d in DASHBOARDS.items() for v in d["templating"]["list"]
             if v["type"] == "query"]


# --- the stack -----------------------------------------------------------------------------


@dataclass
class Live:
    worker: Worker
    prometheus_url: str
    metrics_text: str
    started: float  # real time the load started
    ended: float
    department: str  # a department with many alerts

    @property
    def exported(self) -> set[str]:
        """Every family and sample name in the worker's /metrics (families are listed
        even while a labelled metric has no sample yet)."""
        names = set()
        for family in text_string_to_metric_families(self.metrics_text):
            names.add(family.name)
            names |= {s.name for s in family.samples}
        return names

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.prometheus_url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.loads(r.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str, instant: bool) -> list[dict[str, Any]]:
        if instant:
            data = self.api("query", query=expr, time=f"{self.ended:.3f}")
        else:
            data = self.api("query_range", query=expr, start=f"{self.started - 5:.3f}",
                            end=f"{self.ended:.3f}", step="1")
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def values(self, dashboard: dict[str, Any]) -> dict[str, str]:
        """What Grafana puts in a query with every variable at "All" (its ``allValue``),
        or ``.*`` for a variable without "All" (the period)."""
        values = {"__rate_interval": RATE_INTERVAL, "__interval": "2s",
                  "__range": f"{math.ceil(self.ended - self.started) + 10}s"}
        for v in dashboard["templating"]["list"]:
            values[v["name"]] = (v.get("allValue") or ".*") if v.get("includeAll") else ".*"
        return values

    def real_values(self) -> dict[str, str]:
        """A department with many alerts, and an item with indicators (once exported)."""
        real = {"department": self.department}
        items = self.api("label/item/values", **{"match[]": "jiancha_indicator"})
        if items:
            real["item"] = items[0]
        return real


async def _load(spec: WorkerSpec, env: dict[str, str]) -> None:
    """The load, all sent within about LOAD_SECONDS:

    - two weeks of simulated department history (some cases with violations), backfilled
      as ``jiancha demo`` does: each past event stamped with the time it was reported;
    - the same simulation's later steps, each sent when the simulated clock reaches it;
    - new cases from the live simulator (``run_live``);
    - every 2 s, a few invalid events (dead letters: invalid_json, invalid_event,
      unknown_item, duplicate_event_id) and a case refused without a reason, so that red
      alerts keep coming during the load, not only from the backfill."""
    from aiokafka import AIOKafkaProducer

    from jiancha.producers.client import producer_from_config
    from jiancha.rules.catalog import load_catalog
    from jiancha.rules.clock import SimulatedClock
    from jiancha.settings import SimulatorSettings
    from jiancha.simulator import generate_cases, run_live

    settings = SimulatorSettings.of_variables(env)
    assert settings.clock_start is not None
    clock = SimulatedClock(settings.clock_start, settings.clock_speed, settings.clock_anchor)
    now = clock.now()
    catalog = load_catalog(settings.catalog_dir)
    events = generate_cases(catalog, start=now - HISTORY,
                            cases=HISTORY_CASES, days=HISTORY_WORKING_DAYS, seed=7,
                            violations=0.3)
    past = [e for e in events if e.occurred_at <= now]
    future = [e for e in events if e.occurred_at > now]
    assert past and future

    items = sorted((item.department, code) for code, item in catalog.items())

    def refused_without_reason(n: int) -> list[dict[str, Any]]:
        """A case refused at intake without a reason (decision.no_reason, red at once)."""
        department, code = items[n % len(items)]
        at = clock.now()
        base = {"schema_version": 1, "case_id": f"refused-{n}", "item_code": code,
                "department": department}
        return [
            {**base, "event_id": f"r{n}-1", "step": "submitted", "actor": "applicant",
             "applicant_id": f"app-{n}", "occurred_at": (at - timedelta(minutes=30)).isoformat()},
            {**base, "event_id": f"r{n}-2", "step": "rejected_at_intake", "actor": f"clerk-{n % 3}",
             "occurred_at": at.isoformat(), "attributes": {}},
        ]

    async def trickle() -> None:
        """Every 2 s: dead letters of four kinds, and one refusal without a reason."""
        producer = AIOKafkaProducer(bootstrap_servers=spec.stack.bootstrap)
        await producer.start()
        replayed = past[0].wire_dict()
        try:
            for n in range(1, 1000):
                for key, value in [
                    (b"bad-1", b"{not json"),
                    (b"bad-2", json.dumps({"schema_version": 1, "event_id": f"x{n}"}).encode()),
                    (b"bad-3", json.dumps({
                        "schema_version": 1, "event_id": f"nope-{n}", "case_id": "bad-3",
                        "item_code": "NO-SUCH-ITEM", "department": "gongan",
                        "step": "submitted", "occurred_at": clock.now().isoformat(),
                        "actor": "applicant", "applicant_id": "a"}).encode()),
                    (replayed["case_id"].encode(), json.dumps(replayed).encode()),
                ]:
                    await producer.send_and_wait(spec.events_topic, value, key=key)
                for event in refused_without_reason(n):
                    await producer.send_and_wait(spec.events_topic, json.dumps(event).encode(),
                                                 key=event["case_id"].encode())
                await asyncio.sleep(2)
        finally:
            await producer.stop()

    async with producer_from_config(settings.producer_config()) as producer:
        acks = []
        for e in past:
            reported = min(e.occurred_at + REPORTING_DELAY, now)
            record = replace(producer.encode(e),
                             timestamp_ms=int(clock.real_time_of(reported) * 1000))
            acks.append(await producer.submit_encoded(record))
        await asyncio.gather(*acks)

        async def later_steps() -> None:
            for e in future:
                await asyncio.sleep(max(0.0, clock.real_seconds_until(e.occurred_at)))
                await producer.send(e)

        async def for_the_load(coro: Any) -> None:
            try:
                async with asyncio.timeout(LOAD_SECONDS):
                    await coro
            except TimeoutError:
                pass

        await asyncio.gather(
            for_the_load(later_steps()),
            for_the_load(trickle()),
            run_live(settings, rate=2, duration=LOAD_SECONDS, violations=0.3, seed=11,
                     clock=clock),
        )


def _scraped_and_evaluated_since(prometheus_url: str, since: float) -> bool:
    """Prometheus scraped the worker after ``since``, and evaluated every rule group after
    that scrape."""
    def data(path: str) -> Any:
        with urllib.request.urlopen(f"{prometheus_url}/api/v1/{path}", timeout=10) as r:
            return json.loads(r.read())["data"]

    def at(stamp: str) -> float:
        return datetime.fromisoformat(stamp).timestamp()

    scraped = [at(t["lastScrape"]) for t in data("targets")["activeTargets"]
               if t["scrapePool"] == "jiancha"]
    if not scraped or min(scraped) <= since:
        return False
    return all(at(g["lastEvaluation"]) > min(scraped) for g in data("rules")["groups"])


@pytest.fixture(scope="module")
def live(stack: EmbeddedStack) -> Iterator[Live]:
    if PROMETHEUS is None:
        pytest.skip("prometheus is missing: apt-get install prometheus (bash .ci/install-tools does)")
    anchor = time.time()
    spec = WorkerSpec(stack, extra_env={
        "JIANCHA_CLOCK_START": CLOCK_START.isoformat(),
        "JIANCHA_CLOCK_SPEED": str(SPEED),
        "JIANCHA_CLOCK_ANCHOR": repr(anchor),
    })
    worker = spec.start_worker()
    prometheus = None
    try:
        prometheus, url = start_prometheus(stack.workdir, worker.web_port)
        env = spec.env(worker.web_port)
        started = time.time()
        asyncio.run(_load(spec, env))
        # the worker refreshes its indicator gauges every 2 s: a scrape 2 s after the load
        # reads them as of its end, and the rules are evaluated on that scrape
        settled = time.time() + 2.0
        wait_for(lambda: _scraped_and_evaluated_since(url, settled), timeout=30,
                 what="a scrape of the worker and a rule evaluation 2 s after the load")
        ended = time.time()
        live = Live(worker, url, worker.metrics(), started, ended, "")
        top = live.api("query", query="topk(1, sum by (department) (jiancha_alerts_total))",
                       time=f"{ended:.3f}")["result"]
        assert top, "no alert reached Prometheus"
        live.department = top[0]["metric"]["department"]
        yield live
    finally:
        if prometheus is not None:
            prometheus.stop(timeout=10)
        worker.stop()


# --- the premise ---------------------------------------------------------------------------


def test_the_load_exercised_the_engine(live: Live) -> None:
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(live.metrics_text) for s in f.samples}

    def total(name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in samples.items()
                   if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))

    assert total("jiancha_events_ingested_total") > 500
    assert total("jiancha_events_ingested_total", step="submitted") > 150
    reasons = {dict(ls)["reason"] for (n, ls) in samples if n == "jiancha_events_rejected_total"}
    assert {"invalid_json", "invalid_event", "unknown_item"} <= reasons
    for severity in ("yellow", "red", "escalated"):
        assert total("jiancha_alerts_total", severity=severity) > 0, severity
    assert total("jiancha_deadline_lateness_seconds_count") > 0
    assert total("jiancha_worker_up") == 1
    up = live.api("query", query='up{job="jiancha", service="worker"}', time=f"{live.ended:.3f}")
    assert [r["value"][1] for r in up["result"]] == ["1"]
    rules = live.api("rules")
    health = {r["name"]: r["health"] for g in rules["groups"] for r in g["rules"]}
    assert len(health) == len(promql.rules())
    assert set(health.values()) == {"ok"}, health


# --- every panel ---------------------------------------------------------------------------


def _skip_or_fail_on_missing_metrics(live: Live, exprs: list[str]) -> None:
    recorded = promql.recorded()
    exported = live.exported
    missing = sorted(
        name for expr in exprs for name in promql.raw_metrics(expr, recorded)
        if name not in promql.PROMETHEUS_SERIES and name not in exported
        and promql.base_metric(name) not in exported)
    optional = [n for n in missing if promql.base_metric(n) in promql.EXTENSION_METRICS]
    if missing and optional == missing:
        pytest.skip(f"{', '.join(sorted(set(optional)))} not exported by the worker "
                    f"({promql.EXTENSION_METRICS[promql.base_metric(optional[0])]}); "
                    "this panel is checked as soon as it is")
    assert not missing, f"the panel reads metrics the worker does not export: {missing}"


def _has_value(result: list[dict[str, Any]]) -> bool:
    def finite(v: list[Any]) -> bool:
        return not math.isnan(float(v[1]))

    return any(finite(s["value"]) if "value" in s else any(finite(v) for v in s["values"])
               for s in result)


@pytest.mark.parametrize(("uid", "panel"), PANELS,
                         ids=[f"{uid}/{p['id']}-{p['title']}" for uid, p in PANELS])
def test_panel_shows_data(live: Live, uid: str, panel: dict[str, Any]) -> None:
    targets = [t for t in panel["targets"] if "expr" in t]
    _skip_or_fail_on_missing_metrics(live, [t["expr"] for t in targets])
    values = live.values(DASHBOARDS[uid])
    for t in targets:
        instant = bool(t.get("instant")) and not t.get("range")
        expr = promql.substitute(t["expr"], values)
        result = live.query(expr, instant)
        assert _has_value(result), f"{uid} {panel['title']} {t['refId']}: no data for {expr}"
        # one real department (item): a query showing it among all shows it alone
        for name, value in live.real_values().items():
            if name not in promql.variables_used(t["expr"]):
                continue
            wide = live.query(promql.substitute(t["expr"], {**values, name: ".*"}), instant)
            one = promql.substitute(t["expr"], {**values, name: value})
            narrowed = live.query(one, instant)  # a valid query either way
            if any(s["metric"].get(name) == value for s in wide):
                assert _has_value(narrowed), f"{uid} {panel['title']}: no data for {one}"
                assert {s["metric"].get(name, value) for s in narrowed} == {value}, one


@pytest.mark.parametrize(("uid", "variable"), VARIABLES,
                         ids=[f"{uid}/{v['name']}" for uid, v in VARIABLES])
def test_template_variable_has_values(live: Live, uid: str, variable: dict[str, Any]) -> None:
    query = variable["query"]
    metric, label = query.removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
    _skip_or_fail_on_missing_metrics(live, [metric])
    match = promql.substitute(metric.strip(), live.values(DASHBOARDS[uid]))
    values = live.api(f"label/{label.strip()}/values", **{"match[]": match},
                      start=f"{live.started - 5:.3f}", end=f"{live.ended:.3f}")
    assert values, f"{uid}: variable {variable['name']} has no values ({query})"
    if variable["name"] == "department":
        assert live.department in values
        assert len(values) >= 3  # every department of the test catalog sent events


def test_coverage_of_this_test() -> None:
    """Every panel with a query is checked above (rows and text panels have none)."""
    n_targets = sum(len(p["targets"]) for _, p in PANELS)
    with_queries = sum(1 for d in DASHBOARDS.values() for p in promql.panels(d)
                       if p["type"] not in ("row", "text"))
    assert len(PANELS) == with_queries
    assert n_targets == sum(1 for d in DASHBOARDS.values() for _ in promql.targets(d))
    print(f"{len(PANELS)} panels, {n_targets} queries, {len(VARIABLES)} variables",
          file=sys.stderr)


# --- the previews (jiancha dashboards preview) ---------------------------------------------


def test_previews_draw_every_panel_with_data(live: Live, tmp_path: Path) -> None:
    """The preview of each dashboard, from this Prometheus, draws every panel: a chart, a
    number or a table, not "no data" nor a failed query (but for the panels that read a
    metric the worker does not export), and the page Chromium photographs is a PNG."""
    from jiancha import dashboard_preview as preview
    from tests.needs_browser import require_browser

    prom = preview.Prometheus(live.prometheus_url, live.started - 5, live.ended)
    exported = live.exported
    for dashboard in preview.dashboards():
        values = preview.variable_values(dashboard, prom)
        for panel in promql.panels(dashboard):
            if panel["type"] == "row":
                continue
            body = preview.draw_panel(panel, prom, values)
            reads = {promql.base_metric(n) for t in panel["targets"]
                     for n in promql.raw_metrics(t["expr"], promql.recorded())}
            if reads & set(promql.EXTENSION_METRICS) and not reads & exported:
                continue
            assert "query failed" not in body and "no data" not in body, (
                dashboard["uid"], panel["title"], body[:300])
            assert body.startswith(("<svg", "<div class=\"stat\"", "<table")), panel["title"]
    require_browser()
    written = preview.write_previews(prom, tmp_path)
    assert sorted(p.name for p in written) == [
        "grafana-evaluation.png", "grafana-health.png", "grafana-live.png"]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG") and 20_000 < path.stat().st_size < 300_000
