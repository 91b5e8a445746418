"""Browser tests need Chromium (and Playwright driving it): where they are missing a test
skips on a developer's machine but fails in CI (``CI`` set, as CI services set it), where
``.ci/install-tools`` installs them, so that a broken install cannot pass unseen."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> None:
    """Skip, or fail under CI, because ``what`` is missing."""
    if in_ci():
        pytest.fail(f"{what} is missing in CI (.ci/install-tools installs it)", pytrace=False)
    pytest.skip(f"{what} is missing (.ci/install-tools installs it)")


def require_browser() -> str:
    """The Chromium executable Playwright will drive."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("Playwright (pip install -e '.[test]')")
    from jiancha.browser import BrowserMissing, chromium_path

    try:
        return chromium_path()
    except BrowserMissing:
        missing("Chromium (Debian's chromium)")
        raise  # unreachable: missing() raises


def require_tool(name: str) -> str:
    """A command-line tool on PATH, e.g. ``pdftotext`` (Debian's poppler-utils)."""
    path = shutil.which(name)
    if path is None:
        missing(name)
    assert path is not None
    return path
