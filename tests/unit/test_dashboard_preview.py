"""The dashboard previews' drawing (jiancha/dashboard_preview.py) on answers shaped as
Prometheus gives them; tests/integration/test_dashboards_live.py draws every panel from a
real Prometheus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jiancha import svgchart
from jiancha.dashboard_preview import JSON_DIR, _table, legend
from jiancha.dashboards import promql


def _panel(uid: str, title: str) -> dict[str, Any]:
    dashboard = json.loads((Path(JSON_DIR) / f"{uid}.json").read_text(encoding="utf-8"))
    return next(p for p in promql.panels(dashboard) if p.get("title") == title)


def _sample(value: float, **labels: str) -> dict[str, Any]:
    return {"metric": {"__name__": "x", "job": "jiancha", **labels}, "value": [1.0, str(value)]}


def test_table_merges_the_queries_as_grafana_does() -> None:
    """最新红色预警: query A counts, query B the last time (ms): one row per department and
    rule, the columns ordered, renamed and the time shown as a date, as the panel says."""
    panel = _panel("jiancha-live", "最新红色预警（近1小时）")
    a, b = ({"refId": "A"}, {"refId": "B"})
    html = _table(panel, [
        (a, _sample(2, department="gongan", rule="deadline.promise_broken")),
        (a, _sample(1, department="guotu", rule="fee.unauthorized")),
        (b, _sample(1_781_500_000_000, department="gongan", rule="deadline.promise_broken")),
        (b, _sample(1_781_600_000_000, department="guotu", rule="fee.unauthorized")),
    ])
    rows = [r.split("</td><td>") for r in html.split("<tr><td>")[1:]]
    assert "<th>最近一次 last raised</th><th>部门 department</th><th>规则 rule</th>" in html
    # sorted by the last time raised, latest first
    assert rows[0][:3] == ["2026-06-16 08:53:20", "guotu", "fee.unauthorized"]
    assert rows[1][:3] == ["2026-06-15 05:06:40", "gongan", "deadline.promise_broken"]
    assert "job" not in html and "__name__" not in html


def test_legend_fills_the_format_from_the_labels() -> None:
    metric = {"department": "gongan", "rule": "deadline.approaching"}
    assert legend({"legendFormat": "{{department}} {{rule}}"}, metric) == "gongan deadline.approaching"
    assert legend({"legendFormat": "{{department}} {{item}}"}, metric) == "gongan"
    assert legend({}, {"__name__": "x", "severity": "red"}) == "red"
    assert legend({}, {}) == "value"


def test_tick_labels_have_the_decimals_their_step_needs() -> None:
    assert svgchart.tick_labels(svgchart.nice_ticks(0.9, 1.0)) == [
        "0.90", "0.92", "0.94", "0.96", "0.98", "1.00"]
    assert svgchart.tick_labels([0, 20, 40]) == ["0", "20", "40"]
    assert svgchart.format_value(1_796_417_000) == "1796.4M"
