"""What the tests need to know about the dashboards' queries: the metric names a PromQL
expression reads, the recording rules, and Grafana's variables replaced by real values."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RULES_DIR = Path(__file__).resolve().parent / "prometheus" / "rules"

#: metrics a dashboard reads that a worker extension exports (not agents/metrics.py): the
#: live test skips the panels that read them, naming the metric, when the worker does not
#: export them, and checks them as soon as it does
EXTENSION_METRICS: dict[str, str] = {
    "jiancha_indicator": "the indicators extension, agents/indicators.py",
    "jiancha_score": "the indicators extension, agents/indicators.py",
}

#: series Prometheus makes itself
PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds",
                               "scrape_samples_scraped"})

_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "atan2", "start", "end",
})
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """Metric (and recorded series) names an expression selects, e.g.
    ``sum by (le) (rate(x_bucket{a="b"}[5m]))`` -> ``{"x_bucket"}``."""
    s = _STRING.sub('""', expr)
    s = _BRACES.sub("{}", s)
    s = _BRACKETS.sub("[]", s)
    s = _GROUPING.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        name = m.group(0)
        if name.lower() in _KEYWORDS or s[m.end():].lstrip().startswith("("):
            continue  # a keyword or a function
        names.add(name)
    # `__name__` matchers: {__name__="x"} (the string was blanked above)
    names |= set(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    return names


def base_metric(sample_name: str) -> str:
    """The metric family of a sample name (``x_total``, ``x_bucket`` -> ``x``)."""
    for suffix in ("_total", "_bucket", "_count", "_sum", "_created"):
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


@dataclass(frozen=True)
class Rule:
    record: str | None
    alert: str | None
    expr: str
    file: str


def rules(rules_dir: Path = RULES_DIR) -> list[Rule]:
    out = []
    for path in sorted(rules_dir.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in data.get("groups", []):
            for r in group.get("rules", []):
                out.append(Rule(r.get("record"), r.get("alert"), str(r["expr"]), path.name))
    return out


def recorded(rules_dir: Path = RULES_DIR) -> dict[str, str]:
    """Recording rule name -> expression."""
    return {r.record: r.expr for r in rules(rules_dir) if r.record}


def raw_metrics(expr: str, recorded_rules: Mapping[str, str]) -> set[str]:
    """Metric names an expression reads, through recording rules down to the worker's."""
    out: set[str] = set()
    for name in metric_names(expr):
        if name in recorded_rules:
            out |= raw_metrics(recorded_rules[name], recorded_rules)
        else:
            out.add(name)
    return out


# --- dashboards ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelTarget:
    dashboard: str  # uid
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str
    instant: bool


def panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def targets(dashboard: Mapping[str, Any]) -> Iterator[PanelTarget]:
    for p in panels(dashboard):
        for t in p.get("targets", []):
            if "expr" in t:
                yield PanelTarget(dashboard["uid"], p["id"], p.get("title", ""), t["refId"],
                                  t["expr"], bool(t.get("instant")) and not t.get("range"))


_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def variables_used(expr: str) -> set[str]:
    return {a or b or c for a, b, c in _VAR.findall(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana's ``$var``, ``${var}`` and ``[[var]]`` by ``values[var]``; raises
    KeyError for a variable not given."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values[name]

    return _VAR.sub(sub, expr)
