"""``jiancha demo``: the whole engine on this machine, nothing to install by hand.

Starts a Tansu broker and a redis-server (:mod:`jiancha.embedded`), a worker, the notifier
(alert pages, with a bureau token made for the demo) and the department simulator as child
processes, replays a couple of weeks of history so that alerts show at once, then prints
alerts live as they reach Redis. Ctrl-C (or ``--duration``) stops every process it started.
With ``screenshots`` it instead saves the alert list and a case page as PNG (headless
Chromium) once the history's alerts are there, and stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from rich.console import Console

from .embedded import EmbeddedStack, ManagedProcess, free_port, spawn

SEVERITY_STYLE = {"yellow": "bold yellow", "red": "bold red", "escalated": "bold magenta"}
HISTORY_DAYS = 12
REPORTING_DELAY = timedelta(minutes=2)  # how long after a step the history reports it
SCREENSHOT_CASES = 600


def run_demo(duration: float | None = None, speed: float = 600.0, history_cases: int = 150,
             rate: float = 1.0, console: Console | None = None, screenshots: Path | None = None,
             clock_start: datetime | None = None) -> int:
    console = console or Console(stderr=False, highlight=False)
    stop = _install_stop_handlers()
    stack = EmbeddedStack(redis_password=secrets.token_hex(8))
    procs: list[ManagedProcess] = []
    try:
        console.print("[bold]jiancha 监察[/] demo: starting the Tansu broker and redis-server …")
        stack.start()
        tz = ZoneInfo("Asia/Shanghai")
        anchor = time.time()
        clock_start = (clock_start or datetime.now(tz)).astimezone(tz).replace(microsecond=0)
        web_port = free_port()
        notifier_port = free_port()
        notifier_url = f"http://127.0.0.1:{notifier_port}"
        bureau_token = secrets.token_urlsafe(18)
        tokens_file = stack.workdir / "tokens.yaml"
        tokens_file.touch(mode=0o600)
        tokens_file.write_text(yaml.safe_dump({"tokens": [
            {"name": "demo-bureau", "role": "bureau", "token": bureau_token}]}), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("JIANCHA_")}
        env.update(stack.env())
        env.update({
            "JIANCHA_NOTIFIER_PORT": str(notifier_port),
            "JIANCHA_NOTIFIER_TOKENS_FILE": str(tokens_file),
            "JIANCHA_NOTIFIER_PUBLIC_URL": notifier_url,
            "JIANCHA_WEB_PORT": str(web_port),
            "JIANCHA_DATA_DIR": str(stack.workdir / "data"),
            "JIANCHA_CLOCK_START": clock_start.isoformat(),
            "JIANCHA_CLOCK_SPEED": str(speed),
            "JIANCHA_CLOCK_ANCHOR": repr(anchor),
            "JIANCHA_KAFKA_REBALANCE_TIMEOUT_SECONDS": "4",
        })
        console.print(f"  broker [cyan]{stack.bootstrap}[/]   redis [cyan]127.0.0.1:"
                      f"{stack.redis_port}[/] (password protected)   logs {stack.workdir}")
        console.print(f"  simulated clock starts {clock_start:%Y-%m-%d %H:%M} Asia/Shanghai, "
                      f"running {speed:g}× real time")
        worker = spawn("worker", [sys.executable, "-m", "jiancha.cli", "worker", "--loglevel",
                                  "WARNING"], stack.workdir, env=env)
        procs.append(worker)
        console.print("  starting the worker (joins the consumer group, recovers its table) …")
        _wait_ready(web_port, worker, stop)
        notifier = spawn("notifier", [sys.executable, "-m", "jiancha.cli", "notifier", "--loglevel",
                                      "WARNING"], stack.workdir, env=env)
        procs.append(notifier)
        _wait_ready(notifier_port, notifier, stop)
        console.print(f"  worker ready: metrics at [cyan]http://127.0.0.1:{web_port}/metrics[/], "
                      f"health at http://127.0.0.1:{web_port}/health")
        login = f"{notifier_url}/login?token={bureau_token}"
        console.print(f"  alert pages at [cyan]{login}[/] (a supervision-bureau token made for "
                      f"this demo; the link sets it as a cookie)", soft_wrap=True)
        if screenshots is not None:  # more cases: more chances of a case worth a picture
            history_cases = max(history_cases, SCREENSHOT_CASES)
        sent = asyncio.run(_send_history(env, clock_start, history_cases))
        console.print(f"  sent {sent} events of {history_cases} cases from the last "
                      f"{HISTORY_DAYS} days (some with violations)")
        if screenshots is not None:
            from .screenshots import demo_screenshots

            saved = demo_screenshots(stack, notifier_url, bureau_token, screenshots, stop)
            for path in saved:
                console.print(f"  saved {path}")
            return 0
        procs.append(spawn("simulator", [sys.executable, "-m", "jiancha.cli", "simulate",
                                         "--rate", str(rate)], stack.workdir, env=env))
        console.print("  department simulator running; alerts appear below. [bold]Ctrl-C[/] stops.\n")
        counts = _follow_alerts(stack, console, stop, duration, procs)
        console.print(f"\nalerts seen: {counts or 'none'}")
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        console.print("stopping the simulator, the worker, Redis and the broker …")
        for p in reversed(procs):
            p.stop(timeout=15)
        stack.stop()
        console.print("all stopped.")


def _install_stop_handlers() -> dict[str, bool]:
    flag = {"stop": False}

    def handler(signum: int, frame: object) -> None:
        flag["stop"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return flag


def _wait_ready(port: int, worker: ManagedProcess, stop: dict[str, bool], timeout: float = 120) -> None:
    """Until ``worker`` (the worker or the notifier) says it is ready on ``/health``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop["stop"]:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"the {worker.name} exited; see {worker.log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if json.loads(r.read()).get("ready"):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    if stop["stop"]:
        raise KeyboardInterrupt
    raise TimeoutError(f"the {worker.name} was not ready in {timeout}s; see {worker.log_path}")


async def _send_history(env: dict[str, str], now: datetime, cases: int) -> int:
    """Backfill two weeks of history, each event stamped with the (simulated) time it was
    reported, so the worker judges it as it would have live."""
    from dataclasses import replace

    from jiancha.producers.client import producer_from_config
    from jiancha.rules.catalog import load_catalog
    from jiancha.rules.clock import SimulatedClock
    from jiancha.settings import SimulatorSettings

    from .simulator import generate_cases

    settings = SimulatorSettings.of_variables(env)
    assert settings.clock_start is not None
    clock = SimulatedClock(settings.clock_start, settings.clock_speed, settings.clock_anchor)
    start = now - timedelta(days=HISTORY_DAYS)
    events = [e for e in generate_cases(load_catalog(settings.catalog_dir), start=start,
                                        cases=cases, seed=7, violations=0.2)
              if e.occurred_at <= now]
    async with producer_from_config(settings.producer_config()) as producer:
        acks = []
        for e in events:
            reported = e.occurred_at + REPORTING_DELAY
            record = replace(producer.encode(e),
                             timestamp_ms=int(clock.real_time_of(min(reported, now)) * 1000))
            acks.append(await producer.submit_encoded(record))
        await asyncio.gather(*acks)
    return len(events)


def _follow_alerts(stack: EmbeddedStack, console: Console, stop: dict[str, bool],
                   duration: float | None, procs: list[ManagedProcess]) -> dict[str, int]:
    import redis

    r = redis.Redis(port=stack.redis_port, password=stack.redis_password, decode_responses=True)
    last = "0-0"
    counts: dict[str, int] = {}
    ends = time.monotonic() + duration if duration else None
    while not stop["stop"] and (ends is None or time.monotonic() < ends):
        for p in procs:
            if p.proc.poll() is not None:
                console.print(f"[red]{p.name} exited ({p.proc.returncode}); see {p.log_path}[/]")
                return counts
        reply = r.xread({"jc:alerts": last}, count=200, block=500)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                last = entry_id
                alert = json.loads(fields["alert"])
                counts[alert["severity"]] = counts.get(alert["severity"], 0) + 1
                _print_alert(console, alert)
    return counts


def _print_alert(console: Console, a: dict) -> None:  # type: ignore[type-arg]
    style = SEVERITY_STYLE.get(a["severity"], "bold")
    console.print(f"[{style}]{a['severity']:>9}[/] {a['event_time'][:16]} "
                  f"[cyan]{a['rule']:<26}[/] {a.get('department') or '-':<10} "
                  f"{a['message_zh']}", soft_wrap=True)
