"""Printing and photographing HTML with headless Chromium: Playwright (the ``report``
extra) driving the system's browser (Debian's ``chromium``; ``JIANCHA_CHROMIUM`` names
another), since Playwright's own browser downloads are not wanted here."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class BrowserMissing(RuntimeError):
    pass


def chromium_path() -> str:
    named = os.environ.get("JIANCHA_CHROMIUM")
    found = named or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        raise BrowserMissing("no Chromium: install Debian's chromium (and fonts-wqy-zenhei for "
                             "Chinese) or set JIANCHA_CHROMIUM to a Chromium executable")
    return found


@contextmanager
def page(width: int = 1000) -> Iterator[Any]:
    """A fresh browser page ``width`` CSS pixels wide."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserMissing("Playwright is not installed: pip install -e '.[report]'") from None
    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable)
        try:
            yield browser.new_page(viewport={"width": width, "height": 800})
        finally:
            browser.close()


def html_to_pdf(html: str, out: Path) -> None:
    with page() as p:
        p.set_content(html, wait_until="load")
        p.pdf(path=str(out), format="A4", print_background=True,
              margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"})


def html_to_png(html: str, out: Path, width: int = 1000, prefix: str = "") -> list[Path]:
    """The whole page (not only the first screen) as a PNG; or, when ``out`` is a
    directory, one PNG per ``<section id=...>`` named ``{prefix}{id}.png`` (smaller
    pictures, for documents). Returns the files written."""
    with page(width) as p:
        p.set_content(html, wait_until="load")
        if not out.is_dir():
            p.screenshot(path=str(out), full_page=True)
            return [out]
        written = []
        for section in p.locator("section[id]").all():
            path = out / f"{prefix}{section.get_attribute('id')}.png"
            section.screenshot(path=str(path))
            written.append(path)
        return written
