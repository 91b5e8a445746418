"""``jiancha report``: the ranked performance table (绩效评估) of a period, from a replay of
a file (``--events FILE``), from the indicators a replay wrote (``--indicators FILE``, of
``jiancha replay --indicators``) or from a running worker's API (``--url``). All give the
same rows, so the same file and the same traffic print the same table; ``html``, ``pdf``
and ``png`` draw them as charts (jiancha/report_html.py)."""

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

from jiancha.settings import ReplaySettings

from .cli_common import fail, load_or_exit, open_input, parse_until
from .report_html import RowSource

FORMATS = ("md", "csv", "json", "html", "pdf", "png")
BINARY = ("pdf", "png")


def source_from_events(events: Path, department: str | None, until: datetime | None,
                       catalog: Path | None, rules: Path | None, calendar: Path | None) -> RowSource:
    from jiancha.rules.factory import build_engine
    from jiancha.rules.indicators import IndicatorBook, report_rows
    from jiancha.rules.replay import replay

    settings = load_or_exit(ReplaySettings, catalog_dir=catalog, rules_dir=rules, calendar_file=calendar)
    try:
        engine = build_engine(settings.catalog_dir, settings.rules_dir, settings.calendar_file,
                              settings.timezone, settings.allowed_lateness_seconds)
        book = IndicatorBook(engine)
    except ValueError as exc:
        raise fail(str(exc)) from None
    source = sys.stdin.buffer if str(events) == "-" else open_input(events)
    result = replay(source, engine, until, indicators=book)
    for problem in result.problems[:20]:
        typer.echo(f"rejected {problem}", err=True)

    def rows(period: str, scope: str) -> list[dict[str, Any]]:
        return report_rows(book.store, period, scope, book.scoring, engine.catalog,
                           department=department)

    return rows


def source_from_indicators(path: Path, department: str | None) -> RowSource:
    """The rows ``jiancha replay --indicators PATH`` wrote (every period with data)."""
    try:
        periods = json.loads(path.read_text(encoding="utf-8"))["periods"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise fail(f"{path}: not an indicators file of jiancha replay --indicators: {exc}") from None

    def rows(period: str, scope: str) -> list[dict[str, Any]]:
        found = periods.get(period, {}).get(scope, [])
        if department is None:
            return list(found)
        mine = [dict(r) for r in found if r.get("department") == department]
        for rank, row in enumerate(mine, 1):
            row["rank"] = rank
        return mine

    return rows


def source_from_url(url: str, department: str | None, token: str | None = None) -> RowSource:
    return lambda period, scope: rows_from_url(url, period, scope, department, token=token)


def rows_from_url(url: str, period: str, scope: str, department: str | None,
                  timeout: float = 30.0, token: str | None = None) -> list[dict[str, Any]]:
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
        raise fail(f"{full}: HTTP {exc.code}: {detail}") from None
    except (OSError, ValueError) as exc:
        raise fail(f"{full}: {exc}") from None
    return list(body["rows"])


def render(rows: list[dict[str, Any]], fmt: str, period: str, scope: str) -> str:
    from jiancha.rules.indicators import COLUMNS, rows_csv, rows_markdown

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
    indicators: Annotated[Path | None, typer.Option(
        help="the indicators file of `jiancha replay --indicators FILE`", dir_okay=False)] = None,
    url: Annotated[str | None, typer.Option(
        help="a worker's web address, e.g. http://127.0.0.1:6066 (its /api/indicators)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, csv, json, html (charts), pdf or png "
                                                      "(the html printed by headless Chromium)")] = "md",
    out: Annotated[Path | None, typer.Option(help="write here instead of stdout (needed for "
                                                  "pdf and png; png into a directory: one "
                                                  "report-SECTION.png per chart)")] = None,
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
    """Ranked indicators and scores of a period (绩效评估), best first; html, pdf and png:
    the departments' ranking, score parts and trend, the worst items and handlers."""
    from jiancha.rules.indicators import KINDS, PeriodError, period_months

    if fmt not in FORMATS:
        raise fail(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if scope not in KINDS:
        raise fail(f"--scope {scope!r}: expected one of {', '.join(KINDS)}")
    if fmt in BINARY and out is None:
        raise fail(f"--format {fmt} needs --out FILE")
    try:
        period_months(period)
    except PeriodError as exc:
        raise fail(str(exc)) from None
    if sum(x is not None for x in (events, indicators, url)) != 1:
        raise fail("give exactly one of --events FILE, --indicators FILE or --url URL")
    until_dt = parse_until(until)
    if events is not None:
        source = source_from_events(events, department, until_dt, catalog, rules, calendar)
    elif indicators is not None:
        source = source_from_indicators(indicators, department)
    else:
        assert url is not None
        source = source_from_url(url, department, token)
    if fmt in ("html", "pdf", "png"):
        write_charts(source, period, fmt, out)
        return
    text = render(source(period, scope), fmt, period, scope)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        return
    sys.stdout.write(text)
    sys.stdout.flush()


def write_charts(source: RowSource, period: str, fmt: str, out: Path | None) -> None:
    from .browser import BrowserMissing, html_to_pdf, html_to_png
    from .report_html import ReportData, render_html

    html = render_html(ReportData.collect(source, period))
    if fmt == "html":
        if out is None:
            sys.stdout.write(html)
            sys.stdout.flush()
        else:
            out.write_text(html, encoding="utf-8")
        return
    assert out is not None
    try:
        if fmt == "pdf":
            html_to_pdf(html, out)
        else:
            for path in html_to_png(html, out, prefix="report-"):
                typer.echo(f"wrote {path}", err=True)
    except BrowserMissing as exc:
        raise fail(str(exc)) from None
