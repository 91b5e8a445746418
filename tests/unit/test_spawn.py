"""Processes the embedded stack starts (workers, the simulator, the baselines) run in the
stack's directory: ``python -m`` puts its working directory first on ``sys.path``, and a
``jiancha`` package where the command was typed must not shadow the installed one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jiancha import settings
from jiancha.embedded import spawn


def test_a_module_where_the_command_was_typed_does_not_shadow_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    typed_in = tmp_path / "project"
    typed_in.mkdir()
    (typed_in / "jiancha").mkdir()
    (typed_in / "jiancha" / "__init__.py").write_text("raise SystemExit('the wrong jiancha')\n")
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    monkeypatch.chdir(typed_in)
    proc = spawn("probe", [sys.executable, "-c", "import jiancha.settings as s; print(s.__file__)"],
                 stack_dir)
    assert proc.proc.wait(timeout=60) == 0, proc.log_path.read_text()
    assert proc.log_path.read_text().strip() == settings.__file__
