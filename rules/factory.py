"""Build an :class:`Engine` from paths and options (the worker, replay and CLI share it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from .calendar import OfficialCalendar
from .catalog import load_catalog
from .checks import CHECKS
from .complaints import COMPLAINT_RULES
from .counted_time import WorkingTime
from .engine import Engine
from .rulebook import DEFAULT_RULES_DIR, load_ruleset
from .windows import WINDOW_RULES


def build_engine(
    catalog_dir: Path,
    rules_dir: Path | None = None,
    calendar_file: Path | None = None,
    timezone: str = "Asia/Shanghai",
    allowed_lateness_seconds: float | None = None,
    on_calendar_fallback: Callable[[int], None] | None = None,
) -> Engine:
    ruleset = load_ruleset(rules_dir or DEFAULT_RULES_DIR,
                           known_rules=set(CHECKS) | WINDOW_RULES | COMPLAINT_RULES)
    if allowed_lateness_seconds is not None:
        ruleset.settings.allowed_lateness_minutes = allowed_lateness_seconds / 60
    calendar = OfficialCalendar.from_file(calendar_file, on_calendar_fallback)
    return Engine(load_catalog(catalog_dir), ruleset, WorkingTime(calendar, ZoneInfo(timezone)))
