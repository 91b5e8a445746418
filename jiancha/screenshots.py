"""Pictures of the alert pages from real renders: ``jiancha demo --screenshots DIR``.

Once the demo's history has produced alerts, the case whose counted time shows the most
(suspensions, an extension, a limit in working days) is picked, and headless Chromium
(Debian's ``chromium``, driven by Playwright) saves the alert list and that alert's case page
as ``alert-list.png`` and ``case-page.png``. The images in docs/images/ are made this way.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .embedded import EmbeddedStack

VIEWPORT = {"width": 1280, "height": 900}


def chromium_executable() -> str:
    found = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if found is None:
        raise RuntimeError("no Chromium on PATH: apt-get install chromium fonts-wqy-zenhei")
    return found


def showcase_score(alert: Mapping[str, Any]) -> tuple[int, ...]:
    """How much of the counted-time arithmetic an alert's case page shows (higher: more):
    a counted time at all, suspensions, days of the calendar crossed (holidays, 调休), an
    extension, a violation rather than a warning."""
    d = alert.get("details") or {}
    try:
        days = datetime.fromisoformat(d["deadline"]) - datetime.fromisoformat(d["clock_start"])
        span = min(days.days, 30)
    except (KeyError, TypeError, ValueError):
        span = 0
    return (int(bool(d.get("clock_start") and d.get("deadline"))), int(bool(d.get("paused_spans"))),
            span, int(bool(d.get("extension"))), int(alert.get("severity") == "red"))


def pick_alert(stack: EmbeddedStack, prefix: str = "jc:") -> dict[str, Any] | None:
    import redis

    r = redis.Redis(port=stack.redis_port, password=stack.redis_password, decode_responses=True)
    best: dict[str, Any] | None = None
    for alert_id in r.zrevrange(f"{prefix}open", 0, 2000):
        raw = r.hget(f"{prefix}alert:{alert_id}", "alert")
        if raw is None:
            continue
        alert = json.loads(raw)
        if best is None or showcase_score(alert) > showcase_score(best):
            best = alert
    return best


def demo_screenshots(stack: EmbeddedStack, base_url: str, token: str, out: Path,
                     stop: Mapping[str, bool], timeout: float = 90.0) -> list[Path]:
    """Wait for an alert with a drawn counted time (at most ``timeout`` s), then save the
    alert list and its case page."""
    deadline = time.monotonic() + timeout
    chosen = pick_alert(stack)
    while (chosen is None or showcase_score(chosen)[:2] < (1, 1)) and time.monotonic() < deadline:
        if stop.get("stop"):
            raise KeyboardInterrupt
        time.sleep(2)
        chosen = pick_alert(stack)
    if chosen is None or not showcase_score(chosen)[0]:
        raise RuntimeError(f"no alert with a counted time within {timeout:.0f}s")
    return save_pages(base_url, token, chosen["alert_id"], out)


def save_pages(base_url: str, token: str, alert_id: str, out: Path) -> list[Path]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise RuntimeError("Playwright is not installed: pip install -e '.[test]'") from None
    out.mkdir(parents=True, exist_ok=True)
    saved = [out / "alert-list.png", out / "case-page.png"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_executable())
        try:
            page = browser.new_context(viewport=VIEWPORT, locale="zh-CN").new_page()
            page.goto(f"{base_url}/login?token={token}")
            page.screenshot(path=str(saved[0]))  # the first screenful: the newest alerts
            page.goto(f"{base_url}/alerts/{alert_id}")
            page.screenshot(path=str(saved[1]), full_page=True)
        finally:
            browser.close()
    return saved
