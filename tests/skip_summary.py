"""The last lines of a test run: how many tests were skipped, and what to install to run
them (each skip reason names it), so that a machine without a tool cannot pass for a full
run. A pytest plugin: tests/conftest.py takes its hook."""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator

import pytest


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skipped report gives, without pytest's ``Skipped: `` prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after pytest's short summary
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None, object, None]:
    yield
    skipped = [r for r in terminalreporter.stats.get("skipped", ()) if r.skipped]
    n = len(skipped)
    terminalreporter.write_sep("=", f"{n} test{'' if n == 1 else 's'} skipped")
    for reason, count in sorted(Counter(map(skip_reason, skipped)).items(),
                                key=lambda kv: (-kv[1], kv[0])):
        terminalreporter.write_line(f"{count:4d} skipped: {reason}")
