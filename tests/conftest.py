"""What every test shares: no rule check raises unnoticed.

The engine catches a check that raises (one faulty rule must not silence the others),
logs it and counts it in ``Engine.check_errors``; a test would then pass on what the other
rules found, and a crashing rule would pass its "must not fire" tables. So
:func:`check_error_watch` (autouse) fails every test after which an engine has a check
error it did not have before: the engines alive when the test starts, and every engine
built during it (held until the test ends, so that one dropped early is still looked at).
A test that makes a check raise on purpose says so with ``@pytest.mark.check_errors``, and
then fails if none did.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import jiancha.rules.engine as rule_engine
from jiancha.rules.engine import Engine
from tests.skip_summary import pytest_terminal_summary  # noqa: F401  (the run ends with its skips)


class CheckErrorWatch:
    """The engines of one test and their check errors when it started.

    Stands in for ``rules.engine.ENGINES`` during the test: an engine registers itself
    there when built."""

    def __init__(self) -> None:
        self.registry = rule_engine.ENGINES
        self.before: dict[Engine, dict[str, int]] = {
            e: dict(e.check_errors) for e in list(self.registry)}

    def __iter__(self) -> Iterator[Engine]:
        return iter(list(self.before))

    def add(self, engine: Engine) -> None:
        self.registry.add(engine)
        self.before.setdefault(engine, {})

    def new_errors(self) -> dict[str, int]:
        """Check errors recorded since the test started, by rule."""
        out: dict[str, int] = {}
        for engine, before in self.before.items():
            for rule, n in engine.check_errors.items():
                if n > before.get(rule, 0):
                    out[rule] = out.get(rule, 0) + n - before.get(rule, 0)
        return out

    def verify(self) -> None:
        """Fail the test if any engine recorded a check error since it started."""
        errors = self.new_errors()
        if errors:
            pytest.fail(
                "a rule check raised during this test (the engine logged each with its case): "
                + ", ".join(f"{rule} {n}x" for rule, n in sorted(errors.items()))
                + "; mark a test that does it on purpose with @pytest.mark.check_errors",
                pytrace=False)


@pytest.fixture(autouse=True)
def check_error_watch(request: pytest.FixtureRequest,
                      monkeypatch: pytest.MonkeyPatch) -> Iterator[CheckErrorWatch]:
    watch = CheckErrorWatch()
    monkeypatch.setattr(rule_engine, "ENGINES", watch)
    yield watch
    if request.node.get_closest_marker("check_errors") is not None:
        assert watch.new_errors(), "marked check_errors, but no rule check raised"
    else:
        watch.verify()
