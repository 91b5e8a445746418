"""The counted-time arithmetic of an alert, drawn as inline SVG for its case page.

Drawn from the alert alone (``details``: ``clock_start``, ``deadline``, ``limit``,
``extension``, ``legal_unit``, ``paused_spans``) and the official calendar: one cell per
local day from the count's start to past the deadline, coloured working day, make-up
working day (调休, a weekend day worked), holiday or rest day; the suspensions hatched;
above each day the counted days used by its end; a line where the count started, a line
where the limit ran out (``data-deadline`` = the alert's ``details.deadline``) and one
when jiancha raised the alert. The worker's case state is not in Redis: what the page knows
of the case is what the alert says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from typing import Any

from jiancha.rules.counted_time import DAY, Pause, WorkingTime

MAX_DAYS = 400  # a longer span is cut (a calendar-day limit of a year at most)
MIN_DAYS = 14  # a short limit is drawn in two weeks of days around it
DAY_KINDS = {
    "workday": ("#dbe9f6", "工作日", "working day"),
    "makeup": ("#b9d7f0", "调休上班", "make-up working day (调休)"),
    "holiday": ("#f6d5d5", "法定节假日", "holiday"),
    "rest": ("#e6e6e6", "休息日", "rest day"),
}
COUNTED, EXTENSION, OVER = "#2b6cb0", "#dd8a1e", "#c53030"


@dataclass(frozen=True)
class CountedSpan:
    """What the chart draws, parsed from an alert's details."""

    start: datetime
    deadline: datetime
    limit: float
    extension: int
    calendar_unit: bool
    pauses: list[Pause]


def counted_span(alert: Mapping[str, Any]) -> CountedSpan | None:
    """The alert's counted time, or None when its rule counts none (no start or deadline)."""
    d = alert.get("details") or {}
    try:
        start = datetime.fromisoformat(str(d["clock_start"]))
        deadline = datetime.fromisoformat(str(d["deadline"]))
        limit = float(d.get("limit") or 0)
        extension = int(d.get("extension") or 0)
        pauses: list[Pause] = [
            (datetime.fromisoformat(a), datetime.fromisoformat(b) if b else None)
            for a, b in d.get("paused_spans") or []]
    except (KeyError, TypeError, ValueError):
        return None
    if deadline <= start:
        return None
    return CountedSpan(start, deadline, limit, extension, d.get("legal_unit") == "calendar", pauses)


def day_kind(wt: WorkingTime, day: date) -> str:
    working, weekday = wt.is_workday(day), day.weekday() < 5
    if working:
        return "workday" if weekday else "makeup"
    return "holiday" if weekday else "rest"


def counted_by(wt: WorkingTime, span: CountedSpan, instant: datetime) -> float:
    """Counted days used from the start to ``instant`` (working days, or calendar days for
    a limit in calendar days), suspensions left out."""
    if span.calendar_unit:
        first = wt.local(span.start).date() + timedelta(days=1)  # the start day is not counted
        origin = datetime.combine(first, datetime.min.time(), wt.tz)
        paused = sum(max(0.0, (min(b or instant, instant) - max(a, origin)).total_seconds())
                     for a, b in span.pauses)
        return max(0.0, ((instant - origin).total_seconds() - paused) / DAY)
    return wt.counted_seconds(span.start, instant, span.pauses) / DAY


def _fmt(days: float) -> str:
    return f"{days:.0f}" if abs(days - round(days)) < 0.05 else f"{days:.1f}"


def counted_time_svg(alert: Mapping[str, Any], wt: WorkingTime) -> str | None:
    span = counted_span(alert)
    if span is None:
        return None
    local_start = wt.local(span.start)
    first = local_start.date()
    deadline_day = wt.local(span.deadline - timedelta(microseconds=1)).date()
    last = max(deadline_day + timedelta(days=2), first + timedelta(days=MIN_DAYS - 1))
    detected = _parse(alert.get("detected_at"))
    if detected is not None:
        last = max(last, min(wt.local(detected).date() + timedelta(days=1),
                             deadline_day + timedelta(days=14)))
    days = [first + timedelta(days=i) for i in range(min((last - first).days + 1, MAX_DAYS))]
    cell = max(6.0, min(60.0, 1000.0 / len(days)))
    left, top, height = 20.0, 70.0, 34.0
    width = max(left * 2 + cell * len(days), 900.0)  # room for the legend

    def x(instant: datetime) -> float:
        local = wt.local(instant)
        offset = (local.date() - first).days + (local - local.replace(hour=0, minute=0, second=0,
                                                                      microsecond=0)).total_seconds() / DAY
        return left + max(0.0, min(offset, len(days))) * cell

    total = span.limit + span.extension
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="counted-time" role="img" '
           f'viewBox="0 0 {width:.0f} {top + height + 112:.0f}" width="100%" data-limit="{_fmt(span.limit)}" '
           f'data-extension="{span.extension}">',
           '<title>计时 counted time</title>',
           '<defs><pattern id="paused" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)">'
           '<line x1="0" y1="0" x2="0" y2="6" stroke="#b7791f" stroke-width="2"/></pattern></defs>']
    label_every = max(1, math.ceil(36 / cell))
    used_every, counted_days = max(1, math.ceil(24 / cell)), 0
    for i, day in enumerate(days):
        kind = day_kind(wt, day)
        fill, zh, en = DAY_KINDS[kind]
        cx = left + i * cell
        out.append(f'<rect class="day {kind}" data-date="{day.isoformat()}" x="{cx:.1f}" y="{top}" '
                   f'width="{cell - 1:.1f}" height="{height}" fill="{fill}">'
                   f'<title>{day.isoformat()} {zh} {en}</title></rect>')
        if i % label_every == 0:
            out.append(f'<text x="{cx + 1:.1f}" y="{top + height + 14}" font-size="10" '
                       f'fill="#444">{day.month}/{day.day}</text>')
        counts = span.calendar_unit or kind in ("workday", "makeup")
        if counts and day > first:
            counted_days += 1
        if counts and day > first and (counted_days % used_every == 0 or day == deadline_day):
            end = datetime.combine(day + timedelta(days=1), datetime.min.time(), wt.tz)
            used = counted_by(wt, span, min(end, span.deadline) if day <= deadline_day else end)
            if day <= deadline_day or used < total + 0.05:
                # past the limit but not the deadline: an extension, or a calendar-day end
                # moved past a holiday (民法典 第二百零三条)
                color = COUNTED if used <= span.limit + 1e-6 else EXTENSION if day <= deadline_day else OVER
                out.append(f'<text class="used" x="{cx + cell / 2:.1f}" y="{top - 4}" font-size="11" '
                           f'text-anchor="middle" fill="{color}">'
                           f'{_fmt(used)}</text>')
    for a, b in span.pauses:
        x0, x1 = x(a), x(b) if b is not None else left + len(days) * cell
        out.append(f'<rect class="paused" x="{x0:.1f}" y="{top + 6}" width="{max(x1 - x0, 1.5):.1f}" '
                   f'height="{height - 12}" fill="url(#paused)" stroke="#b7791f">'
                   f'<title>暂停计时 suspended {escape(a.isoformat())} – '
                   f'{escape(b.isoformat()) if b else "…"}</title></rect>')
    # the limit as a bar from the count's start to the deadline
    xs, xd = x(span.start), x(span.deadline)
    limit_zh = f"{_fmt(span.limit)} 个{'自然日' if span.calendar_unit else '工作日'}"
    limit_en = f"{_fmt(span.limit)} {'calendar' if span.calendar_unit else 'working'} days"
    if span.extension:
        limit_zh += f" + 延长 {span.extension} 个工作日"
        limit_en += f" + {span.extension}-day extension"
    out.append(f'<rect class="limit" x="{xs:.1f}" y="{top - 30}" width="{max(xd - xs, 1):.1f}" height="8" '
               f'fill="{COUNTED}" opacity="0.8"><title>时限 limit {limit_zh} / {limit_en}</title></rect>')
    if span.extension and total > 0:
        ext_at = _instant_of(wt, span, span.limit)
        if ext_at is not None:
            xe = x(ext_at)
            out.append(f'<rect class="extension" x="{xe:.1f}" y="{top - 30}" width="{max(xd - xe, 1):.1f}" '
                       f'height="8" fill="{EXTENSION}"><title>延长 extension {span.extension}</title></rect>')
    out.append(f'<text x="{xs:.1f}" y="{top - 36}" font-size="11" fill="#222">时限 limit: '
               f'{escape(limit_zh)} / {escape(limit_en)}</text>')
    out.append(_marker("clock-start", xs, top, height, "#2f855a", "起算 start", "data-clock-start",
                       span.start.isoformat(), width))
    details = alert.get("details") or {}
    out.append(_marker("deadline", xd, top, height, OVER, "届满 deadline", "data-deadline",
                       str(details.get("deadline")), width, row=2, shown=details.get("deadline_text")))
    if detected is not None and wt.local(detected).date() <= days[-1]:
        out.append(_marker("detected", x(detected), top, height, "#555", "告警 alert", "data-detected",
                           detected.isoformat(), width, dashed=True, row=3))
    out.append(_legend(top + height + 68))
    out.append("</svg>")
    return "".join(out)


def _instant_of(wt: WorkingTime, span: CountedSpan, days: float) -> datetime | None:
    """When ``days`` counted days were used up (the end of the limit before an extension)."""
    if span.calendar_unit:
        return None
    return wt.counted_deadline(span.start, days, span.pauses) if days > 0 else span.start


def _marker(cls: str, at: float, top: float, height: float, color: str, label: str, attr: str,
            value: str, width: float, dashed: bool = False, row: int = 1,
            shown: str | None = None) -> str:
    dash = ' stroke-dasharray="3 2"' if dashed else ""
    y = top + height + 14 + 12 * row
    right = at > width - 220  # near the right edge: the label goes left of its line
    return (f'<g class="{cls}" {attr}="{escape(value)}"><line x1="{at:.1f}" x2="{at:.1f}" '
            f'y1="{top - 22}" y2="{top + height + 4 + 12 * row}" stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{at - 3 if right else at + 3:.1f}" y="{y}" font-size="11" fill="{color}" '
            f'text-anchor="{"end" if right else "start"}">{escape(label)} '
            f'{escape(shown or value[:16].replace("T", " "))}</text></g>')


def _legend(y: float) -> str:
    items: Sequence[tuple[str, str, str]] = [
        *((fill, zh, en) for fill, zh, en in DAY_KINDS.values()),
        ("url(#paused)", "暂停计时", "suspended"),
    ]
    parts, lx = [], 20.0
    for fill, zh, en in items:
        parts.append(f'<rect x="{lx:.0f}" y="{y}" width="12" height="12" fill="{fill}" stroke="#999"/>'
                     f'<text x="{lx + 16:.0f}" y="{y + 10}" font-size="11">{zh} {en}</text>')
        lx += 30 + 6.5 * (len(zh) * 2 + len(en))
    parts.append(f'<text x="20" y="{y + 28}" font-size="11" fill="#444">数字：至当日止已计时的天数'
                 f'（蓝：时限内，橙：延长期或节假日顺延，红：超期）</text><text x="20" y="{y + 42}" '
                 f'font-size="11" fill="#444">numbers: counted days used by the end of the day (blue: within '
                 f'the limit, orange: extension or an end moved past a holiday, red: over)</text>')
    return "".join(parts)


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
