"""Browser tests need Chromium (and Playwright driving it): where they are missing a test
skips on a developer's machine but fails in CI (``CI`` set, as CI services set it), where
``.ci/install-tools`` installs them, so that a broken install cannot pass unseen. Either
way the message says what to install."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str, install: str) -> None:
    """Skip, or fail under CI, because ``what`` is missing; ``install`` installs it."""
    if in_ci():
        pytest.fail(f"{what} is missing in CI: {install} (.ci/install-tools does)", pytrace=False)
    pytest.skip(f"{what} is missing: {install} (or bash .ci/install-tools)")


def require_browser() -> str:
    """The Chromium executable Playwright will drive."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("Playwright", "pip install -e '.[test]'")
    from jiancha.browser import BrowserMissing, chromium_path

    try:
        return chromium_path()
    except BrowserMissing:
        missing("Chromium", "apt-get install chromium fonts-wqy-zenhei (or set JIANCHA_CHROMIUM)")
        raise  # unreachable: missing() raises


def require_tool(name: str, package: str) -> str:
    """A command-line tool on PATH, e.g. ``pdftotext`` from Debian's ``poppler-utils``."""
    path = shutil.which(name)
    if path is None:
        missing(name, f"apt-get install {package}")
    assert path is not None
    return path
