"""``jiancha alerts …``: the people's side of the alert lifecycle, straight on Redis (an
operator tool with the bureau's view; departments use the notifier's HTTP API with their
token). Heavy modules are imported inside the commands."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

alerts_app = typer.Typer(no_args_is_help=True,
                         help="Alerts: list, show, acknowledge, resolve, silence notifications.")
T = TypeVar("T")

ByOpt = Annotated[str | None, typer.Option("--by", help="who acts (recorded in the history); "
                                                        "default: the login name")]
NoteOpt = Annotated[str | None, typer.Option("--note", help="why; recorded in the history")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _run(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(store)`` against the Redis of the settings; errors become exit code 2."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from jiancha.agents.sinks.redis import redis_client
    from jiancha.notifier.store import AlertNotFound, AlertStore
    from jiancha.rules.clock import make_clock
    from jiancha.rules.lifecycle import TransitionError
    from jiancha.settings import AlertsSettings, SettingsError, mask_url

    try:
        s = AlertsSettings.load()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    async def go() -> T:
        password = s.redis_password.get_secret_value() if s.redis_password else None
        client = redis_client(s.redis_url, s.redis_username, password)
        try:
            store = AlertStore(client, s.redis_prefix,
                               make_clock(s.clock_start, s.clock_speed, s.clock_anchor))
            return await fn(store)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except (AlertNotFound, TransitionError, ValueError, KeyError) as exc:
        message = str(exc) if not isinstance(exc, KeyError) or isinstance(exc, AlertNotFound) \
            else f"no such id {exc}"
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
    except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
        typer.echo(f"error: cannot reach Redis at {mask_url(s.redis_url)}: {exc}", err=True)
        raise typer.Exit(2) from None


def _dump(data: Any) -> None:
    import orjson

    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _line(a: dict[str, Any]) -> str:
    return (f"{a['alert_id']:30} {a.get('severity', ''):9} {a.get('status', ''):12} "
            f"{a.get('department') or '-':10} {a.get('rule', ''):28} {a.get('case_id') or '-'}")


@alerts_app.command("list")
def list_alerts(
    status: Annotated[str, typer.Option(help="active (open+acknowledged), open, acknowledged, "
                                             "resolved, all")] = "active",
    department: Annotated[str | None, typer.Option(help="department code")] = None,
    rule: Annotated[str | None, typer.Option(help="rule name or glob, e.g. 'deadline.*'")] = None,
    severity: Annotated[str | None, typer.Option(help="yellow, red or escalated")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Alerts, newest first."""
    if status not in ("active", "open", "acknowledged", "resolved", "all"):
        typer.echo("error: --status must be active, open, acknowledged, resolved or all", err=True)
        raise typer.Exit(2)
    alerts = _run(lambda st: st.list(status, department, rule, severity, limit))
    if as_json:
        _dump(alerts)
        return
    for a in alerts:
        typer.echo(_line(a))
    typer.echo(f"{len(alerts)} alert(s)", err=True)


@alerts_app.command()
def show(alert_id: str, as_json: JsonOpt = False) -> None:
    """One alert with its history (who acknowledged, resolved, was notified, when)."""
    alert = _run(lambda st: st.show(alert_id))
    if as_json:
        _dump(alert)
        return
    typer.echo(_line(alert))
    typer.echo(f"  {alert.get('message_zh', '')}")
    typer.echo(f"  {alert.get('message_en', '')}")
    typer.echo(f"  basis: {alert.get('legal_basis', '')}  detected: {alert.get('detected_at', '')}")
    for h in alert["history"]:
        extra = " ".join(f"{k}={h[k]}" for k in ("receiver", "channel", "transition", "silence_id")
                         if k in h)
        typer.echo(f"  {h.get('at', '')}  {h.get('action', ''):14} {h.get('by', '')}  "
                   f"{h.get('note', '')} {extra}".rstrip())


@alerts_app.command("ack")
def acknowledge(alert_id: str, by: ByOpt = None, note: NoteOpt = None) -> None:
    """Acknowledge an open alert (someone is on it; reminders stop)."""
    alert = _run(lambda st: st.acknowledge(alert_id, _who(by), note))
    typer.echo(f"{alert_id}: {alert['status']} by {alert.get('acknowledged_by')}")


@alerts_app.command()
def resolve(alert_id: str, by: ByOpt = None, note: NoteOpt = None) -> None:
    """Resolve an alert (removed from the open indexes; kept with its history)."""
    alert = _run(lambda st: st.resolve(alert_id, _who(by), note))
    typer.echo(f"{alert_id}: {alert['status']} by {alert.get('resolved_by')}")


@alerts_app.command()
def silence(
    reason: Annotated[str | None, typer.Option(help="why notifications are muted (required to "
                                                    "create a silence)")] = None,
    duration: Annotated[str, typer.Option("--for", help="how long: 30m, 2h, 1d")] = "2h",
    department: Annotated[str | None, typer.Option()] = None,
    rule: Annotated[str | None, typer.Option(help="rule name or glob")] = None,
    severity: Annotated[str | None, typer.Option()] = None,
    case: Annotated[str | None, typer.Option("--case", help="case id")] = None,
    alert: Annotated[str | None, typer.Option("--alert", help="alert id")] = None,
    by: ByOpt = None,
    expire: Annotated[str | None, typer.Option("--expire", help="end the silence with this id now")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list silences in force")] = False,
    all_: Annotated[bool, typer.Option("--all", help="with --list: expired ones too")] = False,
) -> None:
    """Mute notifications of matching alerts for a while (the alerts stay open and visible);
    --list shows silences, --expire ID ends one."""
    from datetime import timedelta

    from jiancha.notifier.routing import parse_duration
    from jiancha.notifier.store import MAX_SILENCE

    if list_:
        silences = _run(lambda st: st.silences(include_expired=all_))
        for s in silences:
            what = " ".join(f"{k}={v}" for k, v in s.model_dump().items()
                            if k in ("department", "rule", "severity", "case_id", "alert_id") and v)
            typer.echo(f"{s.silence_id}  until {s.ends_at.isoformat()}  {what}  by {s.created_by}: "
                       f"{s.reason}")
        typer.echo(f"{len(silences)} silence(s)", err=True)
        return
    if expire:
        done = _run(lambda st: st.expire_silence(expire, _who(by)))
        typer.echo(f"{done.silence_id}: ended at {done.ends_at.isoformat()}")
        return
    if not reason or not reason.strip():
        typer.echo("error: --reason is required: say why notifications are muted", err=True)
        raise typer.Exit(2)
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        typer.echo(f"error: --for: {exc}", err=True)
        raise typer.Exit(2) from None
    if not 1 <= seconds <= MAX_SILENCE.total_seconds():
        typer.echo(f"error: --for: from 1 second to {MAX_SILENCE.days} days, got {duration!r}", err=True)
        raise typer.Exit(2)
    created = _run(lambda st: st.add_silence(
        created_by=_who(by), reason=reason, duration=timedelta(seconds=seconds),
        department=department, rule=rule, severity=severity, case_id=case, alert_id=alert))
    typer.echo(f"{created.silence_id}: silenced until {created.ends_at.isoformat()}")
