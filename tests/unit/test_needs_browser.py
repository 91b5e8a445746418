"""tests/needs_browser.py: without a browser a browser test skips on a developer's machine
and fails in CI."""

from __future__ import annotations

import pytest

from tests.needs_browser import require_browser, require_tool


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("1", pytest.fail.Exception),
                                             ("", pytest.skip.Exception),
                                             ("false", pytest.skip.Exception)])
def test_a_missing_browser_fails_only_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str,
                                            outcome: type[BaseException]) -> None:
    pytest.importorskip("playwright.sync_api", reason="Playwright is missing: pip install -e '.[test]'")
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("JIANCHA_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(outcome, match="Chromium"):
        require_browser()
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(outcome, match="pdftotext"):
        require_tool("pdftotext", "poppler-utils")
