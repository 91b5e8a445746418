"""``jiancha report``: the ranked performance table (绩效评估) of a period, from a replay of
a file (``--events FILE``) or from a running worker's API (``--url``). Both give the same
rows, so the same file and the same traffic print the same table."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

FORMATS = ("md", "csv", "json")


def rows_from_events(events: Path, period: str, scope: str, department: str | None,
                     until: datetime | None, catalog: Path | None, rules: Path | None,
                     calendar: Path | None) -> list[dict[str, Any]]:
    from jiancha.cli import _fail, _open, _settings
    from rules.factory import build_engine
    from rules.indicators import IndicatorBook, report_rows
    from rules.replay import replay

    settings = _settings(catalog_dir=catalog, rules_dir=rules, calendar_file=calendar)
    try:
        engine = build_engine(settings.catalog_dir, settings.rules_dir, settings.calendar_file,
                              settings.timezone, settings.allowed_lateness_seconds)
        book = IndicatorBook(engine)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    source = sys.stdin.buffer if str(events) == "-" else _open(events)
    result = replay(source, engine, until, indicators=book)
    for problem in result.problems[:20]:
        typer.echo(f"rejected {problem}", err=True)
    return report_rows(book.store, period, scope, book.scoring, engine.catalog,
                       department=department)


def rows_from_url(url: str, period: str, scope: str, department: str | None,
                  timeout: float = 30.0, token: str | None = None) -> list[dict[str, Any]]:
    from jiancha.cli import _fail

    query = {"period": period, "scope": scope}
    if department:
        query["department"] = department
    full = url.rstrip("/") + "/api/indicators?" + urllib.parse.urlencode(query)
    request = urllib.request.Request(full)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise _fail(f"{full}: HTTP {exc.code}: {detail}") from None
    except (OSError, ValueError) as exc:
        raise _fail(f"{full}: {exc}") from None
    return list(body["rows"])


def render(rows: list[dict[str, Any]], fmt: str, period: str, scope: str) -> str:
    from rules.indicators import COLUMNS, rows_csv, rows_markdown

    if fmt == "json":
        return json.dumps({"period": period, "scope": scope, "rows": rows}, ensure_ascii=False,
                          indent=2) + "\n"
    if fmt == "csv":
        return rows_csv(rows)
    title = f"绩效评估 performance evaluation — {scope}s, {period}\n\n"
    return title + rows_markdown(rows, COLUMNS)


def report_command(
    period: Annotated[str, typer.Option(help="YYYY-MM, YYYY-Qn, YYYY-Hn or YYYY")],
    events: Annotated[Path | None, typer.Option(
        help="replay this JSON Lines file of events and complaints ('-' for stdin)",
        allow_dash=True)] = None,
    url: Annotated[str | None, typer.Option(
        help="a worker's web address, e.g. http://127.0.0.1:6066 (its /api/indicators)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, csv or json")] = "md",
    scope: Annotated[str, typer.Option(help="department, item or handler")] = "department",
    department: Annotated[str | None, typer.Option(help="only this department's scopes")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="JIANCHA_API_TOKEN", show_default=False,
        help="with --url: the bureau's API token (needed for --scope handler)")] = None,
    until: Annotated[str | None, typer.Option(help="with --events: RFC 3339 instant the replay "
                                                   "clock ends at")] = None,
    catalog: Annotated[Path | None, typer.Option("--catalog", file_okay=False)] = None,
    rules: Annotated[Path | None, typer.Option(help="rule set directory")] = None,
    calendar: Annotated[Path | None, typer.Option(help="operator calendar YAML")] = None,
) -> None:
    """Ranked indicators and scores of a period (绩效评估), best first."""
    from jiancha.cli import _fail, parse_until
    from rules.indicators import KINDS, PeriodError, period_months

    if fmt not in FORMATS:
        raise _fail(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if scope not in KINDS:
        raise _fail(f"--scope {scope!r}: expected one of {', '.join(KINDS)}")
    try:
        period_months(period)
    except PeriodError as exc:
        raise _fail(str(exc)) from None
    if (events is None) == (url is None):
        raise _fail("give exactly one of --events FILE or --url URL")
    until_dt = parse_until(until)
    if events is not None:
        rows = rows_from_events(events, period, scope, department, until_dt, catalog, rules, calendar)
    else:
        assert url is not None
        rows = rows_from_url(url, period, scope, department, token=token)
    sys.stdout.write(render(rows, fmt, period, scope))
    sys.stdout.flush()
