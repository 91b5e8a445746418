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


def test_a_server_whose_free_port_was_taken_meanwhile_starts_on_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between finding a free port and the server binding it, another process may take it
    (tests run side by side): the server exits, and the stack tries another port."""
    import socket

    from jiancha import embedded

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound: no server can bind it (nothing answers there)
        port = taken.getsockname()[1]
        offered, really_free = iter([port]), embedded.free_port
        monkeypatch.setattr(embedded, "free_port", lambda: next(offered, None) or really_free())
        for name in ("free", "fixed"):
            (tmp_path / name).mkdir()
        stack = embedded.EmbeddedStack(workdir=tmp_path / "free")
        try:
            stack.start_redis()
            assert stack.redis_port != port and len(stack.processes) == 1
        finally:
            stack.stop()
        # a port the caller chose is not changed: the error says why the server stopped
        fixed = embedded.EmbeddedStack(workdir=tmp_path / "fixed", redis_port=port)
        with pytest.raises(RuntimeError, match=r"did not start on 127\.0\.0\.1") as failed:
            fixed.start_redis()
        assert "in use" in str(failed.value)
        fixed.stop()

