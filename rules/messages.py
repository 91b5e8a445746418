"""How numbers read in alert texts: whole working days and hours, whole minutes, units
named, the escalation prefix. The checks put these texts in their findings' details (the
message templates in rules/ruleset/*.yaml only place them); ``jiancha rules explain`` uses
the same functions, so an alert and its explanation say the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .counted_time import DAY

HOUR = 3600

#: how a limit is counted (``Item.legal_unit``): the unit in zh and en
UNIT = {
    "working": ("个工作日", "working day"),
    "calendar": ("日", "calendar day"),
}

#: Art. 45's reasons (producers.contract.LAWFUL_SUSPENSION_REASONS) as the law names them
REASON_ZH = {
    "hearing": "听证", "tendering": "招标", "auction": "拍卖", "inspection": "检验",
    "testing": "检测", "quarantine": "检疫", "appraisal": "鉴定", "expert_review": "专家评审",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def days_text(days: int, unit: str = "working") -> tuple[str, str]:
    """A whole number of days with its unit: ("20 个工作日", "20 working days")."""
    zh, en = UNIT[unit]
    return f"{days} {zh}", _plural(days, en)


def span_text(seconds: float, unit: str = "working") -> tuple[str, str]:
    """Counted time as whole days and hours ("5 个工作日又 5 小时", "5 working days and
    5 hours"); under an hour in whole minutes. A counted day is 24 hours of a working day
    (or of any day for a calendar-day limit), so 0.6 days read as 14 hours."""
    seconds = max(0.0, seconds)
    days, rest = divmod(seconds, DAY)
    hours = round(rest / HOUR)
    if hours == 24:
        days, hours = days + 1, 0
    days = int(days)
    if seconds < HOUR - 30:
        minutes = round(seconds / 60)
        return f"{minutes} 分钟", _plural(minutes, "minute")
    parts_zh, parts_en = [], []
    if days:
        zh, en = days_text(days, unit)
        parts_zh.append(zh)
        parts_en.append(en)
    if hours:
        parts_zh.append(f"{hours} 小时")
        parts_en.append(_plural(hours, "hour"))
    return "又 ".join(parts_zh), " and ".join(parts_en)


def less_than_text(days: float, unit: str = "working") -> tuple[str, str]:
    """An upper bound in whole days, rounded up: what remains when at most 1.4 days remain
    is "不足 2 个工作日" (less than 2 working days)."""
    return days_text(max(1, math.ceil(round(days, 6))), unit)


def elapsed_text(seconds: float) -> tuple[str, str]:
    """Elapsed clock time in whole units: "2 天 3 小时", "25 小时 18 分钟", "40 分钟"."""
    minutes = round(max(0.0, seconds) / 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        days, hours = divmod(hours + (minutes >= 30), 24)
        zh = f"{days} 天" + (f" {hours} 小时" if hours else "")
        en = _plural(days, "day") + (f" {_plural(hours, 'hour')}" if hours else "")
        return zh, en
    if hours == 0:
        return f"{minutes} 分钟", _plural(minutes, "minute")
    zh = f"{hours} 小时" + (f" {minutes} 分钟" if minutes else "")
    en = _plural(hours, "hour") + (f" {_plural(minutes, 'minute')}" if minutes else "")
    return zh, en


def names_en(names: list[str]) -> str:
    """Names in a sentence: "the A", "the A and the B", "the A, the B and the C"."""
    named = [f"the {n}" for n in names]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


def whole_minutes(seconds: float) -> int:
    return round(seconds / 60)


def retraction_prefix(event_ids: Sequence[str]) -> tuple[str, str]:
    """What a retracted alert's text starts with, naming the events that proved it wrong."""
    several = len(event_ids) > 1
    return (f"【撤销】后报事件（{'、'.join(event_ids)}）表明此告警不成立：",
            f"[Retracted: later event{'s' if several else ''} {', '.join(event_ids)} "
            f"show{'' if several else 's'} this did not happen] ")


def escalation_prefix(days: int) -> tuple[str, str]:
    """What an escalated alert's text starts with (督办), in zh and en."""
    return (f"【督办】逾 {days} 个工作日仍未纠正：",
            f"[Escalated: not corrected within {_plural(days, 'working day')}] ")
