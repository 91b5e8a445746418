"""Small server-side charts as inline SVG (no script, no network): horizontal bars, stacked
horizontal bars and lines. The report (jiancha/report_html.py) and the dashboard previews
(jiancha/dashboard_preview.py) draw with them; the page's CSS gives the font."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477",
           "#66aa00", "#b82e2e", "#316395", "#994499", "#22aa99", "#aaaa11", "#6633cc",
           "#e67300", "#8b0707")
ROW = 22  # height of one bar row
LABEL_WIDTH = 190


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1
    raw = (high - low) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(low / step) * step
    ticks = []
    v = first
    while v <= high + step * 0.001:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Tick labels with as many decimals as their step needs."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    if step >= 1 or max(abs(t) for t in ticks) >= 1e4:
        return [format_value(t) for t in ticks]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [f"{t:.{decimals}f}" for t in ticks]


def format_value(value: float) -> str:
    """Short numbers for axes and labels: 1.2k, 3.4M, 0.05."""
    a = abs(value)
    if a >= 1e6:
        return _num(value / 1e6) + "M"
    if a >= 1e4:
        return _num(value / 1e3) + "k"
    if a >= 100 or a == 0 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2g}" if a < 0.1 else _num(value)


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f"<title>{escape(title)}</title>" + "".join(body) + "</svg>")


def _legend(names: Sequence[tuple[str, str]], x: float, y: float,
            right: float = 1e9) -> tuple[list[str], float]:
    """Colour keys in a row from (x, y), starting a new row 16 px lower past ``right``;
    and the baseline of the last row."""
    out = []
    left = x
    for name, color in names:
        if x > left and x + 22 + text_width(name, 11) > right:
            x, y = left, y + 16
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 14:.1f}" y="{y:.1f}" font-size="11">{escape(name)}</text>')
        x += 22 + text_width(name, 11)
    return out, y


def text_width(text: str, size: float) -> float:
    """About how wide ``text`` is drawn: CJK characters are square, the others half that."""
    wide = sum(1 for c in text if ord(c) > 0x2E80)
    return size * (wide + 0.6 * (len(text) - wide))


def fit(text: str, width: float, size: float = 12) -> str:
    """``text`` cut with an ellipsis to about ``width`` pixels."""
    while len(text) > 1 and text_width(text, size) > width:
        text = text[:-2] + "…"
    return text


def hbars(title: str, bars: Sequence[tuple[str, float, str | None]], *, width: int = 900,
          low: float = 0, high: float | None = None, label_width: int = LABEL_WIDTH) -> str:
    """One bar per (label, value, color or None), top to bottom, the value written after it."""
    top = max([low + 1, *(v for _, v, _ in bars)]) if high is None else high
    ticks = nice_ticks(low, top)
    plot = width - label_width - 50
    scale = plot / (ticks[-1] - ticks[0])
    height = 30 + ROW * len(bars) + 20
    body = []
    for t, text in zip(ticks, tick_labels(ticks), strict=True):
        x = label_width + (t - ticks[0]) * scale
        body.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 20}" stroke="#ddd"/>'
                    f'<text x="{x:.1f}" y="{height - 6}" font-size="10" text-anchor="middle">'
                    f"{text}</text>")
    for i, (label, value, color) in enumerate(bars):
        y = 24 + i * ROW
        w = max(0.0, (value - ticks[0]) * scale)
        body.append(f'<text x="{label_width - 6}" y="{y + 13}" font-size="12" text-anchor="end">'
                    f"{escape(fit(label, label_width - 10))}</text>"
                    f'<rect x="{label_width}" y="{y}" width="{w:.1f}" height="{ROW - 6}" '
                    f'fill="{color or PALETTE[0]}"/>'
                    f'<text x="{label_width + w + 4:.1f}" y="{y + 13}" font-size="11">'
                    f"{escape(format_value(value))}</text>")
    return _svg(width, height, body, title)


@dataclass(frozen=True)
class Segment:
    name: str
    color: str


def stacked_hbars(title: str, segments: Sequence[Segment],
                  rows: Sequence[tuple[str, Sequence[float], str]], *, width: int = 900) -> str:
    """One bar per (label, lengths of the segments in order, text written after it)."""
    total = max([1.0, *(sum(max(0.0, v) for v in values) for _, values, _ in rows)])
    ticks = nice_ticks(0, total)
    plot = width - LABEL_WIDTH - 60
    scale = plot / ticks[-1]
    body, legend_end = _legend([(s.name, s.color) for s in segments], 10, 14, width - 10)
    top = legend_end + 14
    height = int(top) + ROW * len(rows) + 20
    for t, text in zip(ticks, tick_labels(ticks), strict=True):
        x = LABEL_WIDTH + t * scale
        body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 20}" stroke="#ddd"/>'
                    f'<text x="{x:.1f}" y="{height - 6}" font-size="10" text-anchor="middle">'
                    f"{text}</text>")
    for i, (label, values, note) in enumerate(rows):
        y = top + i * ROW
        x = float(LABEL_WIDTH)
        body.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 13}" font-size="12" text-anchor="end">'
                    f"{escape(fit(label, LABEL_WIDTH - 10))}</text>")
        for seg, value in zip(segments, values, strict=True):
            if value <= 0:
                continue
            w = value * scale
            body.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW - 6}" '
                        f'fill="{seg.color}"><title>{escape(seg.name)}: {_num(value)}</title></rect>')
            x += w
        body.append(f'<text x="{x + 4:.1f}" y="{y + 13}" font-size="11">{escape(note)}</text>')
    return _svg(width, height, body, title)


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float | None]]  # (x, y); None breaks the line


def lines(title: str, series: Sequence[Series], x_ticks: Sequence[tuple[float, str]], *,
          width: int = 900, height: int = 260, low: float | None = None,
          high: float | None = None, legend_limit: int = 16) -> str:
    """A line per series over a shared x axis, with dots at the points."""
    ys = [y for s in series for _, y in s.points if y is not None and math.isfinite(y)]
    xs = [x for s in series for x, _ in s.points] + [x for x, _ in x_ticks]
    y_ticks = nice_ticks(min(ys, default=0) if low is None else low,
                         max(ys, default=1) if high is None else high)
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    body, legend_end = _legend([(s.name, PALETTE[i % len(PALETTE)])
                                for i, s in enumerate(list(series)[:legend_limit])], 50, 12, width - 10)
    left, right, top, bottom = 50, 20, (legend_end + 12 if series else 12), 24
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * ph

    for t, text in zip(y_ticks, tick_labels(y_ticks), strict=True):
        body.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{width - right}" y2="{py(t):.1f}" '
                    f'stroke="#ddd"/><text x="{left - 4}" y="{py(t) + 4:.1f}" font-size="10" '
                    f'text-anchor="end">{text}</text>')
    for i, (x, label) in enumerate(x_ticks):
        anchor = "start" if i == 0 else "end" if i == len(x_ticks) - 1 else "middle"
        body.append(f'<text x="{px(x):.1f}" y="{height - 6}" font-size="10" text-anchor="{anchor}">'
                    f"{escape(label)}</text>")
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for x, y in s.points:
            if y is None or not math.isfinite(y):
                runs.append([])
            else:
                runs[-1].append((px(x), py(y)))
        for run in runs:
            if len(run) > 1:
                d = " ".join(f"{a:.1f},{b:.1f}" for a, b in run)
                body.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
            if len(run) <= 12:
                body += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>' for a, b in run]
    return _svg(width, height, body, title)
