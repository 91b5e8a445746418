"""``jiancha settings``: every setting of every process (variable, type, default, meaning),
from the settings classes themselves; ``--markdown`` prints docs/settings.md."""

from __future__ import annotations

import json
import tempfile
import types
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import typer
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from jiancha.settings import ENV_PREFIX, PACKAGE_DIR, PARTS, PROCESSES, JianchaSettings, Process

_TYPE_NAMES: dict[Any, str] = {str: "text", int: "integer", float: "number", bool: "true or false",
                               Path: "path", SecretStr: "secret", datetime: "RFC 3339 time"}


def type_name(field: FieldInfo) -> str:
    """How a value is written: ``integer ≥ 1, ≤ 1024``, ``PLAINTEXT | SSL``, ``JSON list of text``."""
    name = _annotation_name(field.annotation)
    bounds = [f"{sign} {_number(getattr(m, attr))}" for m in field.metadata
              for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
              if isinstance(m, annotated_types.BaseMetadata) and getattr(m, attr, None) is not None]
    return f"{name} {', '.join(bounds)}" if bounds else name


def _annotation_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_annotation_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin is list:
        return f"JSON list of {_annotation_name(args[0])}"
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def default_text(field: FieldInfo) -> str:
    """The default as a person would write it; ``–`` for none (the description says what
    happens then). Paths are shown relative to the package or to ``$TMPDIR``, as they
    differ from one machine to the next."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Path):
        for base, shown in ((PACKAGE_DIR, ""), (Path(tempfile.gettempdir()), "$TMPDIR/")):
            if value.is_relative_to(base):
                return shown + value.relative_to(base).as_posix()
        return str(value)
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, float | int):
        return _number(value)
    return str(value)


def own_fields(cls: type[JianchaSettings]) -> list[str]:
    """The fields a class defines itself (not those of its parts)."""
    inherited = {name for base in cls.__mro__[1:] if isinstance(base, type)
                 and issubclass(base, JianchaSettings) for name in base.model_fields}
    return [name for name in cls.model_fields if name not in inherited]


def parts_of(process: Process) -> list[type[JianchaSettings]]:
    return [part for part in PARTS if issubclass(process.settings, part)]


def field_names(process: Process) -> list[str]:
    """A process's settings, part by part (in the order of PARTS), then its own."""
    return [name for part in parts_of(process) for name in part.model_fields] + own_fields(process.settings)


def _title(cls: type[JianchaSettings]) -> str:
    return (cls.__doc__ or cls.__name__).strip().split("\n")[0]


def _rows(cls: type[JianchaSettings], names: list[str]) -> list[tuple[str, str, str, str]]:
    fields = cls.model_fields
    return [(ENV_PREFIX + name.upper(), type_name(fields[name]), default_text(fields[name]),
             fields[name].description or "") for name in names]


def listing(processes: list[Process]) -> str:
    """The terminal listing: per process, each variable with its type, default and meaning."""
    out = []
    for process in processes:
        out.append(f"{process.name} ({process.command}): {process.settings.__name__}")
        for var, kind, default, meaning in _rows(process.settings, field_names(process)):
            out.append(f"  {var}  [{kind}]  default {default}")
            out.append(f"      {meaning}")
        out.append("")
    return "\n".join(out)


_INTRO = """\
# Settings

Every process reads its settings from environment variables prefixed `JIANCHA_`, and only
the variables of its own class in `settings.py` (pydantic-settings): a notifier does not
read, nor fail on, a variable only the worker reads. A wrong value stops start-up with a
message naming the variable and what it accepts. Passwords may come from files instead (the
`*_FILE` settings: a Docker secret, one trailing newline ignored); a URL with a password in
it is never printed with the password.

The department producer library reads its connection from the same variables without
pydantic-settings: `jiancha.producers.config.ProducerConfig.from_env()` reads
`JIANCHA_BROKER_URL`, `JIANCHA_KAFKA_*` (the Kafka connection below), `JIANCHA_EVENTS_TOPIC`,
`JIANCHA_COMPLAINTS_TOPIC`, `JIANCHA_DEPARTMENT_KEYS_FILE` and `JIANCHA_COMPLAINTS_SIGNER`.

This page is written by `jiancha settings --markdown > docs/settings.md` from the settings
classes; `jiancha settings [--process NAME]` lists the same in the terminal.
"""

_OUTRO = """\
## Commands

`jiancha report --url` reads the bureau's token for per-handler scores from `--token` or
`JIANCHA_API_TOKEN`.
"""


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    lines = ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
    for var, kind, default, meaning in rows:
        shown = default if default == "–" else f"`{default}`"
        lines.append(f"| `{var}` | {kind.replace('|', '&#124;')} | {shown} | {meaning} |")
    return lines


def markdown() -> str:
    """docs/settings.md: which parts each process reads, then each part's and each
    process's own settings."""
    lines = [_INTRO, "## Who reads what", "", "| process | command | reads |", "| --- | --- | --- |"]
    for p in PROCESSES.values():
        reads = [_title(part).split(":")[0] for part in parts_of(p)]
        if own_fields(p.settings):
            reads.append(f"its own ({p.settings.__name__})")
        lines.append(f"| {p.name} | `{p.command}` | {', '.join(reads)} |")
    for part in PARTS:
        readers = [p.name for p in PROCESSES.values() if issubclass(p.settings, part)]
        lines += ["", f"## {_title(part).split(':')[0]}", "",
                  f"{_title(part)} Read by: {', '.join(readers)}.", "",
                  *_table(_rows(part, list(part.model_fields)))]
    for p in PROCESSES.values():
        names = own_fields(p.settings)
        if names:
            lines += ["", f"## The {p.name} alone ({p.settings.__name__})", "",
                      *_table(_rows(p.settings, names))]
    return "\n".join(lines) + "\n\n" + _OUTRO


def settings_command(
    process: Annotated[str | None, typer.Option(
        help=f"only this process: {', '.join(PROCESSES)}")] = None,
    as_markdown: Annotated[bool, typer.Option(
        "--markdown", help="print docs/settings.md (every part, and who reads it)")] = False,
) -> None:
    """List the settings of each process: environment variable, type, default, meaning."""
    if as_markdown:
        typer.echo(markdown(), nl=False)
        return
    if process is not None and process not in PROCESSES:
        typer.echo(f"error: no process {process!r}; one of {', '.join(PROCESSES)}", err=True)
        raise typer.Exit(2)
    typer.echo(listing([PROCESSES[process]] if process else list(PROCESSES.values())), nl=False)
