"""The test command ends by saying how many tests were skipped and what to install."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def _run(pytester: pytest.Pytester, suite: str) -> list[str]:
    """The lines from the skip summary on, of a run of ``suite`` with the plugin."""
    pytester.makeconftest("pytest_plugins = ['tests.skip_summary']")
    pytester.makepyfile(suite)
    result = pytester.runpytest("-p", "no:cacheprovider")
    lines = [line for line in result.outlines if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.strip("= ").endswith(" skipped"))
    return lines[start:]


def test_the_run_ends_with_the_skips_and_what_to_install(pytester: pytest.Pytester) -> None:
    tail = _run(pytester, """
        import pytest

        needs_tool = pytest.mark.skipif(True, reason="frob is missing: apt-get install frob")

        @needs_tool
        def test_a(): pass

        @needs_tool
        def test_b(): pass

        def test_c():
            pytest.skip("no Chromium: apt-get install chromium fonts-wqy-zenhei")

        def test_d(): assert 1 + 1 == 2
    """)
    assert tail[0].strip("= ") == "3 tests skipped"
    assert tail[1:3] == ["   2 skipped: frob is missing: apt-get install frob",
                         "   1 skipped: no Chromium: apt-get install chromium fonts-wqy-zenhei"]


def test_a_run_without_skips_says_so(pytester: pytest.Pytester) -> None:
    tail = _run(pytester, "def test_d(): assert 1 + 1 == 2\n")
    assert tail[0].strip("= ") == "0 tests skipped"
    assert "skipped:" not in "\n".join(tail)
