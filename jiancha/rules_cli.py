"""``jiancha rules list|explain``: what the engine checks, and why an alert was raised."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from jiancha.settings import ReplaySettings

from .cli_common import fail, load_or_exit, parse_until

rules_app = typer.Typer(no_args_is_help=True, help="The rule set: list rules, explain alerts.")


def _engine(catalog: Path | None, rules: Path | None, calendar: Path | None):  # type: ignore[no-untyped-def]
    from jiancha.rules.factory import build_engine

    settings = load_or_exit(ReplaySettings, catalog_dir=catalog, rules_dir=rules, calendar_file=calendar)
    try:
        return build_engine(settings.catalog_dir, settings.rules_dir, settings.calendar_file,
                            settings.timezone, settings.allowed_lateness_seconds)
    except ValueError as exc:
        raise fail(str(exc)) from None


@rules_app.command("list")
def list_rules(
    rules: Annotated[Path | None, typer.Option(help="rule set directory")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """Every rule with its severity, legal basis and thresholds."""
    engine = _engine(None, rules, None)
    rs = engine.ruleset
    rows: list[dict[str, Any]] = []
    for name in sorted(rs.rules):
        cfg = rs.rules[name]
        check = engine.checks.get(name)
        doc = " ".join((check.__doc__ or "").strip().split("\n\n")[0].split()) if check else ""
        rows.append({"rule": name, "severity": cfg.severity, "enabled": cfg.enabled,
                     "basis": cfg.basis, "params": cfg.params, "fires_when": doc,
                     "escalation": _escalation(rs, name)})
    settings = rs.settings.model_dump()
    if as_json:
        typer.echo(json.dumps({"settings": settings, "rules": rows}, ensure_ascii=False, indent=2))
        return
    table = Table(title="jiancha rules", show_lines=True)
    for col in ("rule", "severity", "basis", "thresholds", "escalation (督办)", "fires when"):
        table.add_column(col, overflow="fold")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        sev = r["severity"] + ("" if r["enabled"] else " (disabled)")
        policy = r["escalation"]
        if "never" in policy:
            escalation = f"never: {policy['never']}"
        else:
            escalation = f"after {policy['working_days']} working days unless corrected or resolved"
        table.add_row(r["rule"], sev, r["basis"], params, escalation, r["fires_when"])
    console = Console(width=160)
    console.print(table)
    console.print("engine settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))


def _escalation(rs: Any, rule: str) -> dict[str, Any]:
    """A rule's escalation policy as ``rules list`` shows it: the working days after which
    an uncorrected, unresolved alert escalates, or why it never does."""
    policy = rs.rules[rule].escalation
    if policy is None:
        return {"never": "a warning (yellow) does not escalate"}
    if policy.never is not None:
        return {"never": policy.never}
    return {"working_days": rs.escalation_days(rule)}


@rules_app.command("messages")
def messages(
    out: Annotated[Path | None, typer.Option(help="write here (e.g. docs/messages.md) "
                                                  "instead of printing")] = None,
    rules: Annotated[Path | None, typer.Option(help="rule set directory")] = None,
) -> None:
    """The table of every alert text (zh and en) with an example rendered by the engine."""
    from jiancha.rules.message_table import render_table

    _write_doc(render_table, rules, out)


@rules_app.command("reference")
def reference(
    out: Annotated[Path | None, typer.Option(help="write here (e.g. docs/rules.md) "
                                                  "instead of printing")] = None,
    rules: Annotated[Path | None, typer.Option(help="rule set directory")] = None,
) -> None:
    """The rules reference (docs/rules.md): every rule's severity, legal basis, escalation
    policy, parameters and what it reads, from the rule set."""
    from jiancha.rules.rules_doc import rules_markdown

    _write_doc(rules_markdown, rules, out)


def _write_doc(render: Callable[[Path], str], rules: Path | None, out: Path | None) -> None:
    """A document generated from the rule set, printed or written to ``out``."""
    from jiancha.rules.rulebook import DEFAULT_RULES_DIR

    try:
        text = render(rules or DEFAULT_RULES_DIR)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")


@rules_app.command("explain")
def explain(
    alert_or_case: Annotated[str, typer.Argument(help="an alert_id or a case_id")],
    events: Annotated[Path, typer.Option(help="JSON Lines file holding the case's events",
                                         exists=True, dir_okay=False)],
    until: Annotated[str | None, typer.Option(help="RFC 3339 instant the clock ends at")] = None,
    catalog: Annotated[Path | None, typer.Option(help="catalog directory")] = None,
    rules: Annotated[Path | None, typer.Option(help="rule set directory")] = None,
    calendar: Annotated[Path | None, typer.Option(help="operator calendar YAML")] = None,
) -> None:
    """Show the events and the arithmetic behind an alert (or every alert of a case)."""
    from jiancha.rules.replay import replay

    engine = _engine(catalog, rules, calendar)
    until_dt = parse_until(until)
    with events.open("rb") as f:
        lines = [line for line in f if line.strip()]
    result = replay(lines, engine, until_dt)
    alerts = [a for a in result.alerts if alert_or_case in (a.alert_id, a.case_id)]
    case_ids = {a.case_id for a in alerts} or {alert_or_case}
    case_events = [json.loads(line) for line in lines if _case_of(line) in case_ids]
    if not case_events:
        raise fail(f"no alert or case {alert_or_case!r} in {events}")
    console = Console(width=160, highlight=False)
    tz = engine.tz
    for case_id in sorted(c for c in case_ids if c):
        evs = sorted((e for e in case_events if e.get("case_id") == case_id),
                     key=lambda e: e["occurred_at"])
        item = engine.catalog.get(evs[0].get("item_code", "")) if evs else None
        console.rule(f"case {case_id}")
        if item is not None:
            dept = engine.catalog.departments.get(item.department)
            dept_name = f"{dept.name_zh} ({dept.name_en})" if dept else item.department
            console.print(f"item {item.code} {item.name_zh} ({item.name_en}), department "
                          f"{dept_name}: promised {item.promised_days} working days / legal "
                          f"{item.legal_days} {item.legal_unit} days; steps {[s.value for s in item.steps]}")
        console.print("events (event-time order):")
        for e in evs:
            when = datetime.fromisoformat(e["occurred_at"]).astimezone(tz)
            day = "working day" if engine.working_time.is_workday(when.date()) else "non-working day"
            attrs = f" {e['attributes']}" if e.get("attributes") else ""
            console.print(f"  {when:%Y-%m-%d %H:%M:%S} ({day}) {e['step']:<20} "
                          f"{e.get('actor', '-'):<14} {e['event_id']}{attrs}")
        for a in (x for x in alerts if x.case_id == case_id):
            console.print(f"\n[bold]{a.severity}[/] {a.rule}  alert_id {a.alert_id}")
            console.print(f"  {a.message_zh}\n  {a.message_en}")
            console.print(f"  basis: {a.legal_basis}; evidence: {', '.join(a.evidence)}")
            console.print(f"  violation at {a.event_time.isoformat()}, raised at "
                          f"{a.detected_at.isoformat()} (replay clock)")
            for line in _arithmetic(engine, a.details):
                console.print("  " + line)
        if not [x for x in alerts if x.case_id == case_id]:
            console.print("\nno alert for this case up to the end of the file"
                          + (f" and {until}" if until else ""))


def _case_of(line: bytes) -> str | None:
    try:
        return json.loads(line).get("case_id")
    except (ValueError, AttributeError):
        return None


def _arithmetic(engine: Any, details: dict[str, Any]) -> list[str]:
    """The numbers of an alert, and for a deadline the days that were counted. The end is
    the alert's own deadline shown by the alert's own function (``deadline_text``), so the
    explanation and the alert say the same, paused time included."""
    from jiancha.rules.checks.deadlines import deadline_text
    from jiancha.rules.messages import span_text

    out = [f"{k} = {v}" for k, v in details.items()]
    start, deadline = details.get("clock_start"), details.get("deadline")
    if not (isinstance(start, str) and isinstance(deadline, str)):
        return out
    wt = engine.working_time
    end = datetime.fromisoformat(deadline).astimezone(engine.tz)
    s = datetime.fromisoformat(start).astimezone(engine.tz).date()
    last = (end - timedelta(microseconds=1)).date()
    calendar = details.get("legal_unit") == "calendar"
    days, day = [], s + timedelta(1)
    while day <= last and len(days) < 400:
        if calendar or wt.is_workday(day):
            days.append(day.strftime("%m-%d"))
        day += timedelta(1)
    kind = "days" if calendar else "working days"
    part = "" if end.time() == time() else f"; the last to {end:%H:%M}"
    out.append(f"clock starts {s} (not counted); {kind} counted to the deadline "
               f"({len(days)}{part}): {' '.join(days)}")
    paused = details.get("paused_seconds") or 0
    if paused >= 60 and not calendar:  # as the alert's text counts it
        start_at = datetime.fromisoformat(start)
        elapsed = wt.working_seconds(end) - wt.count_start(start_at)
        out.append(f"{span_text(elapsed)[1]} from the clock start to the deadline, less "
                   f"{span_text(paused)[1]} the clock stood (lawful suspensions, Art. 45, "
                   f"not counted) = {span_text(elapsed - paused)[1]}")
    out.append(f"the limit ends at {deadline_text(end, wt)}")
    return out
