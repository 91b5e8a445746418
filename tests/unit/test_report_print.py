"""The report printed by headless Chromium: the PDF's text (``pdftotext``) shows the
departments in the order and with the scores of ``jiancha report --format json``, in
Chinese; the page Chromium draws shows the same ranking. Skips without Chromium and
Playwright on a developer's machine, fails in CI (tests/needs_browser.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jiancha.simulator import generate_file
from tests.needs_browser import require_browser, require_tool

ROOT = Path(__file__).resolve().parents[2]
UNTIL = "2026-07-01T00:00:00+08:00"


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("print") / "events.jsonl"
    generate_file(ROOT / "rules" / "catalog", path, cases=600, days=40, seed=9, violations=0.04,
                  start=datetime(2026, 4, 1, 9, tzinfo=ZoneInfo("Asia/Shanghai")))
    return path


def _report(events: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jiancha.cli", "report", "--events", str(events),
                           "--until", UNTIL, "--period", "2026-05", *args],
                          capture_output=True, text=True, check=False, cwd=ROOT)


def _ranking(events: Path) -> list[dict[str, object]]:
    out = _report(events, "--format", "json")
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, object]] = json.loads(out.stdout)["rows"]
    assert len(rows) >= 10
    return rows


def test_pdf_shows_the_json_ranking_in_chinese(events: Path, tmp_path: Path) -> None:
    require_browser()
    pdftotext = require_tool("pdftotext", "poppler-utils")
    pdf = tmp_path / "report.pdf"
    out = _report(events, "--format", "pdf", "--out", str(pdf))
    assert out.returncode == 0, out.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "绩效评估 2026-05" in text
    chart, table = text.split("complaints", 1)  # the ranking chart, then the ranking table
    rows = _ranking(events)
    # the chart: a line "名称 name ... score" per department, in rank order
    drawn = re.findall(r"^\s*(\S+) ([a-z]+)\s+(\d+(?:\.\d+)?)$", chart, re.MULTILINE)
    assert drawn == [(r["name_zh"], r["name"], f"{r['score']:g}") for r in rows]
    # the table: the same order
    names = re.findall(r"\b(" + "|".join(str(r["name"]) for r in rows) + r")\b", table)
    assert names[:len(rows)] == [r["name"] for r in rows]


def test_chromium_draws_the_json_ranking(events: Path, tmp_path: Path) -> None:
    require_browser()
    from jiancha.browser import page

    html = tmp_path / "report.html"
    out = _report(events, "--format", "html", "--out", str(html))
    assert out.returncode == 0, out.stderr
    with page() as p:
        p.goto(html.as_uri())
        shown = p.locator("table.ranking tr[data-name]").evaluate_all(
            "rows => rows.map(r => [r.cells[0].innerText, r.cells[2].innerText,"
            " r.cells[1].innerText])")
        bars = p.locator("#ranking svg rect").evaluate_all(
            "rects => rects.map(r => r.getBoundingClientRect().width)")
        p.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    rows = _ranking(events)
    assert shown == [[str(r["rank"]), f"{r['score']:g}", f"{r['name_zh']} {r['name']}"] for r in rows]
    # the bars are drawn in proportion to the scores
    top = max(float(r["score"]) for r in rows)  # type: ignore[arg-type]
    for bar, row in zip(bars, rows, strict=True):
        assert bar == pytest.approx(bars[0] * float(row["score"]) / top, abs=1.0)  # type: ignore[arg-type]
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_png_sections_for_documents(events: Path, tmp_path: Path) -> None:
    require_browser()
    out = _report(events, "--format", "png", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "report-parts.png", "report-ranking.png", "report-trend.png", "report-worst-handlers.png",
        "report-worst-items.png"]
