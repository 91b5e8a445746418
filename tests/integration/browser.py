"""Debian's Chromium for browser tests (Playwright cannot download browsers here): its path,
or a skip — in CI (``CI=true``) a failure, so that a missing browser is never a green run."""

from __future__ import annotations

import os
import shutil

import pytest

CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """The Chromium to drive (``JIANCHA_TEST_CHROMIUM`` or the first on PATH)."""
    found = os.environ.get("JIANCHA_TEST_CHROMIUM") or next(
        (p for p in map(shutil.which, CANDIDATES) if p), None)
    problem = None
    if not found or not os.access(found, os.X_OK):
        problem = "no Chromium (apt-get install chromium fonts-wqy-zenhei, or JIANCHA_TEST_CHROMIUM)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "Playwright is not installed (pip install -e .[test])"
    if problem is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser tests need a browser in CI: {problem}")
        pytest.skip(problem)
    assert found is not None
    return found
