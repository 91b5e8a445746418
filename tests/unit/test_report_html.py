"""The evaluation report as HTML with charts (jiancha/report_html.py, jiancha/svgchart.py):
its ranking and scores are those of ``jiancha report --format json``, from a replay of a
simulated quarter, and the parts drawn for each score sum to the score."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jiancha import svgchart
from jiancha.report_html import ReportData, previous_periods, render_html, worst
from jiancha.rules.indicators import Acc, mean_parts, month_score, score_parts
from jiancha.simulator import generate_file
from tests.unit.test_indicators import CFG, acc

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "rules" / "catalog"
UNTIL = "2026-07-01T00:00:00+08:00"


class Ranking(HTMLParser):
    """The ``data-`` attributes of the rows of the first table of class ``cls``."""

    def __init__(self, cls: str = "ranking") -> None:
        super().__init__()
        self.cls, self.inside, self.done = cls, False, False
        self.rows: list[dict[str, str]] = []
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svgs += 1
        if tag == "table" and a.get("class") == self.cls and not self.done:
            self.inside = True
        elif tag == "tr" and self.inside and "data-name" in a:
            self.rows.append({k.removeprefix("data-"): v or "" for k, v in a.items()})

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.inside:
            self.inside, self.done = False, True


def ranking_of(html: str, cls: str = "ranking") -> list[tuple[str, int, float | None]]:
    parser = Ranking(cls)
    parser.feed(html)
    return [(r["name"], int(r["rank"]), float(r["score"]) if r["score"] else None) for r in parser.rows]


@pytest.fixture(scope="module")
def quarter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated quarter of all the catalog's departments, some cases with violations,
    written by ``jiancha simulate --out`` (the events generate_file plans)."""
    path = tmp_path_factory.mktemp("report") / "events.jsonl"
    subprocess.run([sys.executable, "-m", "jiancha.cli", "simulate", "--out", str(path), "--start",
                    "2026-04-01T09:00:00+08:00", "--cases", "900", "--days", "55", "--seed", "5",
                    "--violations", "0.04"], capture_output=True, check=True, cwd=ROOT)
    planned = path.with_name("planned.jsonl")
    generate_file(CATALOG, planned, start=datetime(2026, 4, 1, 9, tzinfo=ZoneInfo("Asia/Shanghai")),
                  cases=900, days=55, seed=5, violations=0.04)
    assert path.read_bytes() == planned.read_bytes()
    return path


def _report(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "jiancha.cli", "report", *args],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("period", ["2026-05", "2026-Q2"])
def test_html_ranking_is_the_json_ranking(quarter: Path, indicators: Path, period: str,
                                          tmp_path: Path) -> None:
    source = ["--events", str(quarter), "--until", UNTIL, "--period", period]
    rows = json.loads(_report(*source, "--format", "json"))["rows"]
    want = [(r["name"], r["rank"], r["score"]) for r in rows]
    assert len(want) >= 10 and len({s for _, _, s in want}) >= 3, want  # a ranking, not a tie
    html = _report(*source, "--format", "html")
    assert ranking_of(html) == want
    assert html.count("<svg") == 5  # ranking, parts, trend, worst items, worst handlers
    # the indicators file of a replay gives the same page
    out = tmp_path / "report.html"
    _report("--indicators", str(indicators), "--period", period, "--format", "html", "--out", str(out))
    assert out.read_text(encoding="utf-8") == html


@pytest.fixture(scope="module")
def indicators(quarter: Path) -> Path:
    path = quarter.with_name("indicators.json")
    subprocess.run([sys.executable, "-m", "jiancha.cli", "replay", str(quarter), "--until", UNTIL,
                    "--indicators", str(path)], capture_output=True, check=True, cwd=ROOT)
    return path


def test_indicators_file_gives_the_rows_of_a_replay(quarter: Path, indicators: Path) -> None:
    """One department's items, ranked among themselves, from the file as from the replay."""
    args = ["--period", "2026-Q2", "--scope", "item", "--department", "gongan", "--format", "json"]
    from_file = _report("--indicators", str(indicators), *args)
    assert from_file == _report("--events", str(quarter), "--until", UNTIL, *args)
    rows = json.loads(from_file)["rows"]
    assert len(rows) >= 3 and [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert {r["department"] for r in rows} == {"gongan"}


def test_worst_items_and_handlers_are_the_lowest_ranked(quarter: Path) -> None:
    source = ["--events", str(quarter), "--until", UNTIL, "--period", "2026-Q2"]
    html = _report(*source, "--format", "html")
    for scope, table in (("item", "worst"), ("handler", "worst")):
        rows = json.loads(_report(*source, "--format", "json", "--scope", scope))["rows"]
        shown = ranking_of(html.split(f'id="worst-{scope}s"')[1], table)
        assert shown == [(r["name"], r["rank"], r["score"]) for r in reversed(rows[-10:])]
        assert shown[0][2] == min(r["score"] for r in rows)


@pytest.mark.parametrize("a", [
    acc(), acc(yellow=3), acc(yellow=9), acc(red=1, escalated=1), acc(red=12),
    acc(early=10, timed=10), acc(red=1, early=55, timed=100), acc(red=1, early=100, timed=100),
    acc(complaint_received={"yellow": 7}),
])
def test_score_parts_sum_to_the_score(a: Acc) -> None:
    parts = score_parts(a, CFG)
    assert parts["score"] == month_score(a, CFG)
    assert sum(v for k, v in parts.items() if k != "score") == pytest.approx(parts["score"])
    assert all(v <= 0 for k, v in parts.items() if k.startswith("deduction_"))


def test_score_parts_name_what_was_deducted() -> None:
    parts = score_parts(acc(yellow=9, red=1, early=55, timed=100), CFG)
    assert parts == {"start": 100, "deduction_yellow": -20, "deduction_red": -10,
                     "deduction_escalated": 0, "bonus": 5, "clamp": 0, "score": 75}
    floor = score_parts(acc(red=12), CFG)
    assert floor["deduction_red"] == -120 and floor["clamp"] == 20 and floor["score"] == 0


def test_mean_parts_keep_summing_to_the_rounded_mean() -> None:
    monthly = [score_parts(acc(yellow=1), CFG), score_parts(acc(red=1, early=3, timed=10), CFG),
               score_parts(acc(yellow=2, red=1), CFG)]
    mean = mean_parts(monthly)
    assert mean["score"] == round(sum(p["score"] for p in monthly) / 3, 2) == 89.33
    assert sum(v for k, v in mean.items() if k != "score") == pytest.approx(mean["score"])
    assert mean["deduction_yellow"] == -5 and mean["deduction_red"] == round(-20 / 3, 2)


def test_previous_periods() -> None:
    assert previous_periods("2026-02", 4) == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert previous_periods("2026-Q1", 3) == ["2025-Q3", "2025-Q4", "2026-Q1"]
    assert previous_periods("2026-H2", 3) == ["2025-H2", "2026-H1", "2026-H2"]
    assert previous_periods("2026", 2) == ["2025", "2026"]


def test_empty_period_and_escaping() -> None:
    row = {"name": "<x&y>", "name_zh": None, "rank": 1, "score": 42.5, "received": 1, "decided": 1,
           "on_time_rate": 1.0, "early_rate": None, "overdue_rate": 0.0, "mean_days": 1.5,
           "yellow": 0, "red": 1, "escalated": 0, "complaints": 0,
           "score_parts": {"start": 100, "deduction_red": -57.5, "bonus": 0, "clamp": 0}}
    html = render_html(ReportData("2026-01", [row], [], [], [("2026-01", [row])]))
    assert "<x&y>" not in html and "&lt;x&amp;y&gt;" in html
    assert ranking_of(html) == [("<x&y>", 1, 42.5)]
    empty = render_html(ReportData("2026-01", [], [], [], [("2026-01", [])]))
    assert "No data for this period" in empty and "<svg" not in empty
    assert worst([{"rank": n} for n in range(1, 15)], 3) == [{"rank": 14}, {"rank": 13}, {"rank": 12}]


def test_bars_are_as_long_as_their_values() -> None:
    svg = svgchart.hbars("t", [("a", 50.0, None), ("b", 100.0, None)], width=500, low=0, high=100)
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)"', svg)]
    assert widths[1] == pytest.approx(2 * widths[0]) and widths[1] == 500 - svgchart.LABEL_WIDTH - 50
    assert svgchart.nice_ticks(0, 87) == [0, 20, 40, 60, 80, 100]
    assert svgchart.fit("企业开办联合办理（营业执照、印章刻制）", 100).endswith("…")

