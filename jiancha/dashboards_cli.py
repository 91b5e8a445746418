"""``jiancha dashboards``: build the Grafana dashboards from code, push them to a Grafana."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jiancha.dashboards import promql

from .cli_common import fail

app = typer.Typer(no_args_is_help=True,
                  help="Grafana dashboards (实时监察, 绩效评估, 引擎健康) as code.")

DEFAULT_JSON_DIR = Path(promql.__file__).resolve().parent / "json"  # the package's, wherever installed


@app.command("build")
def build(
    check: Annotated[bool, typer.Option(help="fail if dashboards/json differs from the code")] = False,
    out: Annotated[Path, typer.Option(help="output directory", file_okay=False)] = DEFAULT_JSON_DIR,
) -> None:
    """(Re)write dashboards/json/*.json from the dashboard code (grafana-foundation-sdk)."""
    try:
        from jiancha.dashboards import build as b
    except ImportError as exc:
        raise fail(f"{exc}; install the dashboards extra: pip install -e '.[dashboards]'") from None
    if check:
        stale = b.check(out)
        if stale:
            typer.echo(f"dashboards out of date: {', '.join(stale)}; run 'jiancha dashboards build'",
                       err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} matches the code")
        return
    for path in b.write(out):
        typer.echo(f"wrote {path}")


@app.command("push")
def push(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. https://grafana.example:3000",
                                     envvar="GRAFANA_URL")],
    token: Annotated[str | None, typer.Option(
        help="service-account token (Authorization: Bearer); or user:password in the URL",
        envvar="GRAFANA_TOKEN")] = None,
    datasource_uid: Annotated[str | None, typer.Option(
        "--datasource-uid", help="uid of that Grafana's Prometheus datasource "
        "(default: the dashboards' own default, 'prometheus')")] = None,
    folder_uid: Annotated[str | None, typer.Option(help="folder uid (default: jiancha)")] = None,
    source: Annotated[Path, typer.Option("--dir", help="dashboards to push", file_okay=False,
                                         exists=True)] = DEFAULT_JSON_DIR,
) -> None:
    """Save the dashboards into an existing Grafana (folder 'jiancha 电子监察', overwrite)."""
    from jiancha.dashboards.names import FOLDER_UID
    from jiancha.dashboards.push import PushError
    from jiancha.dashboards.push import push as do_push

    try:
        pushed = do_push(url, token, json_dir=source, folder_uid=folder_uid or FOLDER_UID,
                         datasource_uid=datasource_uid)
    except PushError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for p in pushed:
        typer.echo(f"pushed {p.uid} ({p.title}) version {p.version}: {p.url or '-'}")


@app.command("preview")
def preview(
    out: Annotated[Path, typer.Option(help="directory for grafana-<dashboard>.png",
                                      file_okay=False)] = Path("docs/images"),
    seconds: Annotated[float, typer.Option(help="real seconds of traffic before the pictures")] = 60.0,
) -> None:
    """Draw each dashboard's panels from a real Prometheus fed by the demo (no Grafana needed):
    the demo's engine and Debian's prometheus run for --seconds, then every panel's query is
    asked over Prometheus's HTTP API and drawn; headless Chromium saves the pages as PNG."""
    from .browser import BrowserMissing
    from .dashboard_preview import run_preview

    try:
        for path in run_preview(out, seconds=seconds, say=lambda m: typer.echo(m, err=True)):
            typer.echo(f"wrote {path}")
    except (BrowserMissing, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
