"""The performance evaluation (绩效评估) as one printable HTML page with inline SVG charts:
the departments ranked, each score in its parts, the trend over the previous periods, the
worst items and handlers. The numbers are the rows of ``rules.indicators.report_rows`` as
they are (the same as ``/api/indicators`` and ``jiancha report --format json``); the
ranking table carries them in ``data-`` attributes so that a test can read them back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from . import svgchart
from .svgchart import Segment, Series

#: (period, scope kind) -> ranked rows
RowSource = Callable[[str, str], list[dict[str, Any]]]

TREND_PERIODS = 6
WORST = 10

#: the parts of a score, as ``score_parts`` names them, drawn in this order
PARTS = (
    ("score_without_bonus", "得分 score", "#3366cc"),
    ("bonus", "提前办结加分 early bonus", "#109618"),
    ("deduction_yellow", "黄牌扣分 yellow", "#e6b800"),
    ("deduction_red", "红牌扣分 red", "#dc3912"),
    ("deduction_escalated", "升级扣分 escalated", "#7b1fa2"),
)

CSS = """
body { font-family: "WenQuanYi Zen Hei", "Noto Sans CJK SC", sans-serif; margin: 24px;
       color: #222; max-width: 1000px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 22px 0 6px; }
p.en, span.en { color: #666; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f0f3f8; } td.name, th:nth-child(2) { text-align: left; }
td.name { white-space: nowrap; }
section { break-inside: avoid; page-break-inside: avoid; }
svg.chart { max-width: 100%; height: auto; }
@page { size: A4; margin: 12mm; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } }
"""


def previous_periods(period: str, count: int) -> list[str]:
    """``count`` periods of the same length ending with ``period``, oldest first."""
    p = period.strip().upper()
    if len(p) == 4:
        return [str(int(p) - i) for i in range(count - 1, -1, -1)]
    year, rest = int(p[:4]), p[5:]
    if rest[0] in "QH":
        per_year = 4 if rest[0] == "Q" else 2
        n = year * per_year + int(rest[1:]) - 1
        return [f"{m // per_year}-{rest[0]}{m % per_year + 1}" for m in range(n - count + 1, n + 1)]
    n = year * 12 + int(rest) - 1
    return [f"{m // 12}-{m % 12 + 1:02d}" for m in range(n - count + 1, n + 1)]


@dataclass
class ReportData:
    period: str
    departments: list[dict[str, Any]]
    items: list[dict[str, Any]]
    handlers: list[dict[str, Any]]
    trend: list[tuple[str, list[dict[str, Any]]]]  # (period, department rows), oldest first

    @classmethod
    def collect(cls, source: RowSource, period: str, trend_periods: int = TREND_PERIODS) -> ReportData:
        trend = [(p, source(p, "department")) for p in previous_periods(period, trend_periods)[:-1]]
        while trend and not trend[0][1]:  # before the first period with data
            trend.pop(0)
        departments = source(period, "department")
        return cls(period, departments, source(period, "item"), source(period, "handler"),
                   [*trend, (period, departments)])


def label(row: dict[str, Any]) -> str:
    return f"{row['name_zh']} {row['name']}" if row.get("name_zh") else str(row["name"])


def _cell(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    if percent:
        return f"{100 * value:.1f}%"
    return f"{value:g}" if isinstance(value, float) else escape(str(value))


def _parts(row: dict[str, Any]) -> list[float]:
    """Bar lengths: the score (less the bonus in it), the bonus that counted, and the
    deductions, scaled down when the score hit its floor so that the bar stays the start
    plus the bonus (the tooltip and the table keep the numbers)."""
    parts = row.get("score_parts") or {}
    score = row["score"] or 0.0
    bonus = min(score, max(0.0, parts.get("bonus", 0.0) + min(0.0, parts.get("clamp", 0.0))))
    deductions = [-parts.get(name, 0.0) for name, _, _ in PARTS[2:]]
    total = sum(deductions)
    room = parts.get("start", 100.0) + bonus - score
    factor = room / total if total > room > 0 else 1.0
    return [score - bonus, bonus, *(d * factor for d in deductions)]


def ranking_chart(rows: Sequence[dict[str, Any]]) -> str:
    bars = [(label(r), r["score"] or 0.0, None) for r in rows]
    return svgchart.hbars("排名 ranking", bars, low=0, high=max(100.0, *(b[1] for b in bars)))


def parts_chart(rows: Sequence[dict[str, Any]]) -> str:
    segments = [Segment(title, color) for _, title, color in PARTS]
    return svgchart.stacked_hbars("得分构成 score parts", segments,
                                  [(label(r), _parts(r), _cell(r["score"])) for r in rows])


def trend_chart(trend: Sequence[tuple[str, list[dict[str, Any]]]], names: Sequence[str]) -> str:
    by_period = [{r["name"]: r for r in rows} for _, rows in trend]
    series = []
    for name in names:
        points = [(float(i), (rows.get(name) or {}).get("score")) for i, rows in enumerate(by_period)]
        zh = next((rows[name].get("name_zh") for rows in by_period if name in rows), None)
        series.append(Series(f"{zh or name}", points))
    ticks = [(float(i), p) for i, (p, _) in enumerate(trend)]
    scores = [y for s in series for _, y in s.points if y is not None]
    return svgchart.lines("趋势 trend", series, ticks, low=min([60.0, *scores]),
                          high=max([100.0, *scores]))


def worst(rows: Sequence[dict[str, Any]], count: int = WORST) -> list[dict[str, Any]]:
    """The lowest ranked rows, worst first."""
    return list(reversed(rows[-count:]))


def _table(rows: Sequence[dict[str, Any]], cls: str) -> str:
    head = ("<tr><th>名次<br>rank</th><th>名称<br>name</th><th>得分<br>score</th>"
            "<th>受理<br>received</th><th>办结<br>decided</th><th>按时率<br>on time</th>"
            "<th>提前率<br>early</th><th>超期率<br>overdue</th><th>平均用时(工作日)<br>mean days</th>"
            "<th>黄<br>yellow</th><th>红<br>red</th><th>升级<br>escalated</th>"
            "<th>投诉<br>complaints</th></tr>")
    body = []
    for r in rows:
        score = "" if r["score"] is None else f"{r['score']:g}"
        body.append(
            f'<tr data-name="{escape(str(r["name"]))}" data-rank="{r["rank"]}" data-score="{score}">'
            f'<td>{r["rank"]}</td><td class="name">{escape(label(r))}</td><td>{_cell(r["score"])}</td>'
            f'<td>{r["received"]}</td><td>{r["decided"]}</td>'
            f'<td>{_cell(r["on_time_rate"], True)}</td><td>{_cell(r["early_rate"], True)}</td>'
            f'<td>{_cell(r["overdue_rate"], True)}</td><td>{_cell(r["mean_days"])}</td>'
            f'<td>{r["yellow"]}</td><td>{r["red"]}</td><td>{r["escalated"]}</td>'
            f'<td>{r["complaints"]}</td></tr>')
    return f'<table class="{cls}">{head}{"".join(body)}</table>'


def render_html(data: ReportData) -> str:
    """The whole page (UTF-8, self-contained)."""
    deps = data.departments
    sections = [
        f'<h1>绩效评估 {escape(data.period)}</h1>'
        f'<p class="en">Performance evaluation of the departments, {escape(data.period)}: '
        "ranked by score (the mean of the monthly scores: 100, minus the deductions for "
        "alerts, plus the bonus for early decisions), then by on-time rate.</p>",
    ]
    if not deps:
        sections.append("<p>本期无数据 <span class=\"en\">No data for this period.</span></p>")
    else:
        sections += [
            '<section id="ranking"><h2>部门排名 <span class="en">Ranking</span></h2>'
            f"{ranking_chart(deps)}{_table(deps, 'ranking')}</section>",
            '<section id="parts"><h2>得分构成 <span class="en">Each score in its parts</span></h2>'
            '<p class="en">Blue: the score (green: the part of it that is the early-decision '
            "bonus); then the points deducted for yellow, red and escalated alerts "
            "(yellow capped per month).</p>"
            f"{parts_chart(deps)}</section>",
            f'<section id="trend"><h2>趋势 <span class="en">Trend over the last {len(data.trend)} periods'
            "</span></h2>"
            f"{trend_chart(data.trend, [r['name'] for r in deps])}</section>",
        ]
    for key, title, en, rows in (("items", "问题最多的事项", "Worst items", data.items),
                                 ("handlers", "问题最多的经办人", "Worst handlers", data.handlers)):
        if rows:
            bad = worst(rows)
            bars = [(label(r), r["score"] or 0.0, svgchart.PALETTE[1]) for r in bad]
            sections.append(
                f'<section id="worst-{key}"><h2>{title} <span class="en">{en} (lowest scores)</span></h2>'
                f'{svgchart.hbars(en, bars, low=0, high=100, label_width=300)}'
                f'{_table(bad, "worst")}</section>')
    return ('<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>绩效评估 {escape(data.period)}</title><style>{CSS}</style></head><body>"
            + "".join(sections) + "</body></html>\n")
