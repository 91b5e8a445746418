"""What the command line's modules share (``cli``, ``rules_cli``, ``report``,
``dashboards_cli``): errors that end a command, settings, the ``--until`` option."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

import typer

from jiancha.settings import JianchaSettings, SettingsError

S = TypeVar("S", bound=JianchaSettings)


def load_or_exit(kind: type[S], **overrides: object) -> S:
    """The process's settings (``kind``) with the given overrides (None: not given), or
    exit 2 saying what is wrong."""
    try:
        return kind.load(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def fail(message: str) -> typer.Exit:
    """Print the error; the exit (status 2) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def parse_until(until: str | None) -> datetime | None:
    """The ``--until`` option: an RFC 3339 instant with offset, or a clear error."""
    if until is None:
        return None
    try:
        until_dt = datetime.fromisoformat(until)
    except ValueError:
        raise fail(f"--until {until!r}: expected RFC 3339, e.g. 2026-12-31T00:00:00+08:00") from None
    if until_dt.tzinfo is None:
        raise fail(f"--until {until!r}: needs an offset, e.g. +08:00")
    return until_dt


def open_input(path: Path) -> BinaryIO:
    """``path`` opened for reading, or exit 2 saying why not."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None
