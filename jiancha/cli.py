"""The ``jiancha`` command line. Heavy modules (Faust) are imported by the commands that
need them, so ``replay`` and ``catalog`` start fast."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from jiancha.producers.schema_files import SCHEMA_DIR
from jiancha.settings import (
    NotifierSettings,
    ProducerSettings,
    ReplaySettings,
    SimulatorSettings,
    WorkerSettings,
)

from .cli_common import fail, load_or_exit, open_input, parse_until
from .report import report_command
from .rules_cli import rules_app

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="jiancha 监察: real-time supervision of administrative approvals.")
catalog_app = typer.Typer(no_args_is_help=True, help="The item catalog (事项目录).")
schema_app = typer.Typer(no_args_is_help=True, help="The wire contract's JSON Schemas.")
app.add_typer(catalog_app, name="catalog")
app.add_typer(rules_app, name="rules")
app.add_typer(schema_app, name="schema")
app.add_typer(__import__("jiancha.alerts_cli", fromlist=["x"]).alerts_app, name="alerts")
app.add_typer(__import__("jiancha.dashboards_cli").dashboards_cli.app, name="dashboards")
app.command("settings")(__import__("jiancha.settings_cli", fromlist=["x"]).settings_command)

CatalogOpt = Annotated[Path | None, typer.Option("--catalog", help="catalog directory",
                                                 file_okay=False)]


@app.command()
def worker(
    catalog: CatalogOpt = None,
    loglevel: Annotated[str, typer.Option(help="Faust log level")] = "INFO",
) -> None:
    """Run the supervising Faust worker (consumes approval-events, writes alerts to Redis)."""
    from jiancha.agents.sinks.redis import RedisConfigError
    from jiancha.agents.topics import TopicMismatch
    from jiancha.agents.worker import run_worker

    try:
        run_worker(load_or_exit(WorkerSettings, catalog_dir=catalog), loglevel)
    except (TopicMismatch, RedisConfigError, ValueError) as exc:
        raise fail(str(exc)) from None


@app.command()
def replay(
    events: Annotated[Path, typer.Argument(help="JSON Lines file of events ('-' for stdin)",
                                           allow_dash=True)],
    until: Annotated[str | None, typer.Option(help="RFC 3339 instant the clock ends at")] = None,
    catalog: CatalogOpt = None,
    rules: Annotated[Path | None, typer.Option(help="rule set directory (or one YAML file)")] = None,
    calendar: Annotated[Path | None, typer.Option(help="operator calendar YAML")] = None,
    indicators: Annotated[Path | None, typer.Option(
        help="also write the performance indicators and scores (every period) to this JSON file")] = None,
    windows: Annotated[bool, typer.Option(help="judge the window rules (actor.burst, "
                                               "department.*)")] = True,
    workers: Annotated[int | None, typer.Option(
        min=1, max=64, help="processes to shard the cases over (default: the CPUs, at most "
        "8; 1: in this process; with --indicators always 1)")] = None,
) -> None:
    """Replay events (and complaints) offline through the worker's rules; alerts as JSON
    Lines on stdout."""
    from jiancha.rules.factory import build_engine
    from jiancha.rules.indicators import IndicatorBook
    from jiancha.rules.replay_parallel import ReplayWorkerError, replay_workers
    from jiancha.rules.replay_parallel import replay_parallel as run_replay

    settings = load_or_exit(ReplaySettings, catalog_dir=catalog, rules_dir=rules, calendar_file=calendar)
    until_dt = parse_until(until)
    try:
        engine = build_engine(settings.catalog_dir, settings.rules_dir, settings.calendar_file,
                              settings.timezone, settings.allowed_lateness_seconds)
    except ValueError as exc:
        raise fail(str(exc)) from None
    source = sys.stdin.buffer if str(events) == "-" else open_input(events)

    def progress(n: int) -> None:
        if n % 100_000 == 0:
            typer.echo(f"replay: {n:,} events", err=True)

    try:
        book = IndicatorBook(engine) if indicators is not None else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        result = run_replay(source, engine, until_dt, on_progress=progress, windows=windows,
                            indicators=book, workers=workers or replay_workers())
    except ReplayWorkerError as exc:
        raise fail(str(exc)) from None
    out = sys.stdout.buffer
    for alert in result.alerts:
        out.write(alert.to_json() + b"\n")
    out.flush()
    if book is not None and indicators is not None:
        import orjson

        from jiancha.rules.indicators import full_report

        indicators.write_bytes(orjson.dumps(full_report(book.store, book.scoring, engine.catalog),
                                            option=orjson.OPT_INDENT_2) + b"\n")
    for problem in result.problems[:20]:
        typer.echo(f"rejected {problem}", err=True)
    rejected = sum(result.rejected.values()) + sum(result.rejected_complaints.values())
    typer.echo(f"replay: {result.events} events, {rejected} rejected, "
               f"{len(result.alerts)} alerts", err=True)
    if engine.check_errors:  # the alerts of those rules may be missing: not a clean run
        typer.echo("replay: rule checks raised (each logged with its case): " + ", ".join(
            f"{rule} {n}x" for rule, n in sorted(engine.check_errors.items())), err=True)
        raise typer.Exit(1)


@catalog_app.command("export")
def catalog_export(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON array")] = True,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="print docs/catalog.md (the table of every item and its sources)")] = False,
    catalog: CatalogOpt = None,
) -> None:
    """Print the item catalog (contract.md 'Catalog export')."""
    import orjson

    from jiancha.rules.catalog import CatalogError, load_catalog

    settings = load_or_exit(ReplaySettings, catalog_dir=catalog)
    try:
        loaded = load_catalog(settings.catalog_dir)
    except CatalogError as exc:
        raise fail(str(exc)) from None
    if markdown:
        from jiancha.rules.catalog_doc import catalog_markdown

        sys.stdout.write(catalog_markdown(loaded))
        return
    items = loaded.export()
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(items, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        for it in items:
            typer.echo(f"{it['code']:10} {it['department']:10} {it['promised_days']:>3}/"
                       f"{it['legal_days']:<3} {it['legal_unit']:8} {it['name_zh']}")


@schema_app.command("export")
def schema_export(
    out_dir: Annotated[Path, typer.Option(help="where to write the schemas")] = SCHEMA_DIR,
    check: Annotated[bool, typer.Option(help="fail if the files differ from the models")] = False,
) -> None:
    """Write (or --check) the JSON Schemas generated from the contract models."""
    from jiancha.producers.schema_files import check_schemas, write_schemas

    if check:
        stale = check_schemas(out_dir)
        if stale:
            raise fail(f"schemas out of date: {', '.join(stale)}; run 'jiancha schema export'")
        typer.echo("schemas match the models")
    else:
        for path in write_schemas(out_dir):
            typer.echo(f"wrote {path}")


@app.command()
def send(
    events: Annotated[Path, typer.Argument(help="JSON Lines file of events", exists=True,
                                           dir_okay=False)],
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Send a file of events to Kafka (validated, signed, keyed by case_id)."""
    import asyncio

    from .send import send_file

    report = asyncio.run(send_file(events, load_or_exit(ProducerSettings), progress=not no_progress))
    for err in report.errors[:20]:
        typer.echo(err, err=True)
    typer.echo(f"sent {report.sent}, invalid {report.invalid}", err=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def simulate(
    rate: Annotated[float, typer.Option(help="cases started per second")] = 5.0,
    duration: Annotated[float | None, typer.Option(help="seconds to run (default: forever)")] = None,
    violations: Annotated[float, typer.Option(help="share of cases with a violation")] = 0.1,
    seed: Annotated[int, typer.Option()] = 1,
    out: Annotated[Path | None, typer.Option(
        help="instead of sending: write --cases cases submitted over --days working days from "
             "--start to this JSON Lines file (for replay and report)", dir_okay=False)] = None,
    start: Annotated[str | None, typer.Option(help="with --out: RFC 3339 instant of the first "
                                                   "submission")] = None,
    cases: Annotated[int, typer.Option(min=0, help="with --out: how many cases")] = 1000,
    days: Annotated[int | None, typer.Option(min=1, help="with --out: working days the "
                                             "submissions spread over (default: 100 a day)")] = None,
) -> None:
    """Send realistic department traffic (with a few violations) to Kafka; or, with --out,
    write a planned run to a file."""
    import asyncio

    from .simulator import run_live

    settings = load_or_exit(SimulatorSettings)
    if out is not None:
        from .simulator import generate_file

        try:
            first = datetime.fromisoformat(start or "")
        except ValueError:
            first = None
        if first is None or first.tzinfo is None:
            raise fail("--out needs --start, an RFC 3339 instant, e.g. 2026-01-05T09:00:00+08:00")
        sim = generate_file(settings.catalog_dir, out, start=first, cases=cases, seed=seed,
                            violations=violations, days=days, tz=settings.tz)
        typer.echo(f"wrote {len(sim.events)} events of {cases} cases "
                   f"({len(sim.violations)} with a violation) to {out}", err=True)
        return
    asyncio.run(run_live(settings, rate=rate, duration=duration, violations=violations, seed=seed))


@app.command()
def notifier(loglevel: Annotated[str, typer.Option(help="log level")] = "INFO") -> None:
    """Run the notifier: alert lifecycle, routed notifications (webhook, email, stream), HTTP API."""
    from jiancha.agents.sinks.redis import RedisConfigError
    from jiancha.notifier.service import run_notifier

    try:
        run_notifier(load_or_exit(NotifierSettings), loglevel)
    except (ValueError, RedisConfigError) as exc:  # routing, tokens, credentials: named in the message
        raise fail(str(exc)) from None


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="a short run (about a minute)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
    events: Annotated[int | None, typer.Option(help="events in the throughput workload")] = None,
    markdown_from: Annotated[Path | None, typer.Option(
        help="measure nothing: print the table of a run's --json output in Markdown",
        exists=True, dir_okay=False)] = None,
    profile: Annotated[bool, typer.Option(
        "--profile", help="measure only where replay's CPU time per event goes (Markdown)")] = False,
    only: Annotated[str | None, typer.Option(
        help="measure only this phase: 'latency' (event-to-alert latency and deadline "
        "lateness at the offered load, on a fresh worker) or 'ceiling' (the baselines, then "
        "the gate and the case rules in process)")] = None,
) -> None:
    """Measure throughput, latency, deadline lateness, memory and replay speed."""
    from rich.console import Console

    from .bench import BenchConfig, markdown, profile_markdown, report, run_bench

    if markdown_from is not None:
        sys.stdout.write(markdown(json.loads(markdown_from.read_text())))
        return
    config = BenchConfig.quick() if quick else BenchConfig()
    if profile:
        sys.stdout.write(profile_markdown(events or config.events))
        return
    if events:
        config.events = events
    if only not in (None, "latency", "ceiling"):
        raise fail(f"--only: no phase {only!r} (only 'latency' or 'ceiling')")
    config.only = only
    console = Console(stderr=True, highlight=False)
    results = run_bench(config, console)
    met = report(results, console)
    if as_json:
        sys.stdout.write(json.dumps(results.figures) + "\n")
    if only is not None:
        console.print(f"only the {only} phase was measured: the other targets were not")
    else:
        console.print("all targets met" if met else "some targets are not met (see above)")


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    speed: Annotated[float, typer.Option(help="simulated seconds per real second")] = 1800.0,
    screenshots: Annotated[Path | None, typer.Option(
        help="save the alert list and a case page as PNG in this directory (headless Chromium) "
        "once the history's alerts are in, then stop")] = None,
    clock_start: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"],
        help="the simulated clock's start (ISO 8601 with offset; default: now): the history is "
        "the 12 days before it")] = None,
) -> None:
    """Run everything locally: Tansu broker, Redis, the worker, the notifier (alert pages), the
    simulator; show alerts."""
    from .demo import run_demo

    if clock_start is not None and clock_start.tzinfo is None:
        raise fail("--clock-start needs an offset, e.g. 2026-10-12T10:00:00+08:00")
    raise typer.Exit(run_demo(duration=duration, speed=speed, screenshots=screenshots,
                              clock_start=clock_start))


app.command("report")(report_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
