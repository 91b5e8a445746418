"""``jiancha bench``: the engine's figures, measured in one run on the embedded stack.

Phases (each prints progress on stderr); every measured figure is the median of
``BenchConfig.runs`` runs (three; ``--quick``: one), reported with its runs:

1. workload: simulated cases of the real catalog, with violations, as wire JSON; written to
   Kafka as a backlog whose record timestamps are the times the steps were reported;
2. baselines on that backlog: a raw aiokafka consumer that only parses, and a minimal stock
   Faust agent that only parses; right after them, in process, the gate and the case rules
   alone on the same events (the most one worker could do; its ratio to stock Faust is
   the ceiling of the worker's), with its CPU time per event;
3. throughput: one ``jiancha worker`` with the full rule set and catalog on the same
   backlog, then with the case rules only, then two workers of one group splitting the
   partitions;
4. latency: a fresh worker at a fixed offered load (2,000 events/s by default) on a clock
   running one simulated day per real second, so that deadlines fall due during the run:
   event-to-alert latency measured from send to the alert's arrival in the Redis stream,
   and how late deadline alerts fire (the worker's histogram);
5. memory per open case, in process, with the worker's encoding and deadline index;
6. replay throughput and CPU time per event, in one process and sharded over the CPUs,
   each run in a process started for it (as ``jiancha replay`` runs).

Each ratio (to stock Faust, to raw aiokafka) divides two medians of the same run; the JSON
names, under ``ratios``, the figures it divides and their runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from rich.console import Console

from .embedded import EmbeddedStack, ManagedProcess, free_port, spawn

TZ = ZoneInfo("Asia/Shanghai")
EVENTS_PER_CASE = 6.4  # what the simulator averages


@dataclass
class BenchConfig:
    events: int = 60_000
    offered_eps: int = 2_000
    latency_seconds: float = 15.0
    memory_cases: tuple[int, ...] = (100_000, 1_000_000)
    partitions: int = 8
    #: runs of each measured figure; the figure is their median (one run depends on what
    #: else the machine does meanwhile), the runs are reported beside it
    runs: int = 3
    #: measure only this phase, not every figure: ``latency``, or ``ceiling`` (the
    #: baselines and the gate and the case rules in process: a minute, for work on the core)
    only: str | None = None

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(events=15_000, latency_seconds=6.0, memory_cases=(100_000,), runs=1)


@dataclass
class Results:
    #: each figure (a median of its runs), the ratios, and ``runs``: each figure's runs
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def measured(self, key: str, runs: list[float | None], ndigits: int = 0) -> float | None:
        """Record the median of ``runs`` as ``key`` and the runs under ``runs``; a run that
        measured nothing (None) counts as infinitely bad, and the figure is None if the
        median is."""
        self.figures.setdefault("runs", {})[key] = [_rounded(r, ndigits) for r in runs]
        median = statistics.median(float("inf") if r is None else r for r in runs)
        self.figures[key] = None if median == float("inf") else _rounded(median, ndigits)
        return self.figures[key]

    def ratio(self, name: str, of: str, to: str) -> None:
        """``name`` = figure ``of`` / figure ``to`` (medians), with the runs it came from."""
        f = self.figures
        if not f.get(of) or not f.get(to):
            f[name] = None
            return
        f[name] = ratio(f[of], f[to])
        f.setdefault("ratios", {})[name] = {"of": of, "to": to, "of_runs": f["runs"][of],
                                            "to_runs": f["runs"][to]}


def ratio(of: float, to: float) -> float:
    """``of`` / ``to`` to three significant digits (a parse-only consumer is a hundred times
    faster than the worker: two decimals would say 0)."""
    return float(f"{of / to:.3g}")


def run_bench(config: BenchConfig, console: Console) -> Results:
    res = Results()
    say = console.print
    runs = config.runs
    median = f" (median of {runs} runs)" if runs > 1 else ""

    def each_run(what: str, measure: Any) -> list[Any]:
        out = []
        for run in range(runs):
            out.append(measure(run))
            if runs > 1:
                say(f"    {what}, run {run + 1} of {runs}: {_show(out[-1])}")
        return out

    from jiancha.rules.state_codec import COMPILED

    #: whether case records were read by the compiled reader (rules/_native.c)
    res.figures["compiled_record_reader"] = COMPILED
    with EmbeddedStack() as stack:
        say(f"[bold]jiancha bench[/]: broker {stack.bootstrap}, redis {stack.redis_url}; "
            f"{config.events:,} events, {config.partitions} partitions, {os.cpu_count()} cores"
            f", each figure the median of {runs} run{'s' if runs > 1 else ''}; case records "
            f"read by {'compiled code (rules/_native.c)' if COMPILED else 'Python'}")
        if config.only == "latency":
            _latency_figures(res, stack, config, say, each_run)
            return res
        lines, history_end, anchor = _workload(config.events)
        n = len(lines)
        say(f"  workload: {n:,} events of simulated cases (with violations)")
        asyncio.run(_produce_backlog(stack, "bench-backlog", lines, history_end, anchor, config))
        say("  backlog written to Kafka")

        def aiokafka_eps(run: int) -> float:
            seen, seconds = asyncio.run(_aiokafka_baseline(stack, "bench-backlog", n))
            if seen != n:
                raise RuntimeError(f"the aiokafka baseline read {seen:,} of {n:,} events")
            return seen / seconds

        res.measured("baseline_aiokafka_eps", each_run("raw aiokafka", aiokafka_eps))
        say(f"  baseline raw aiokafka consumer (parse only): "
            f"{res.figures['baseline_aiokafka_eps']:,} events/s{median}")
        res.measured("baseline_faust_eps", each_run(
            "stock Faust", lambda run: _faust_baseline(stack, "bench-backlog", n)))
        say(f"  baseline minimal stock Faust agent (parse only): "
            f"{res.figures['baseline_faust_eps']:,} events/s{median}")
        # measured right after the baselines, so that the ratio compares runs made at the
        # same machine speed
        core = each_run("the gate and the case rules in process",
                        lambda run: _case_rules_in_process(lines))
        res.measured("case_rules_in_process_eps", [eps for eps, _ in core])
        res.measured("case_rules_in_process_us_per_event_cpu", [cpu for _, cpu in core], 1)
        res.ratio("ceiling_ratio_to_faust", "case_rules_in_process_eps", "baseline_faust_eps")
        say(f"  the gate and the case rules alone, in process (no Kafka, Redis, state "
            f"encoding, windows or indicators): {res.figures['case_rules_in_process_eps']:,} "
            f"events/s, {res.figures['case_rules_in_process_us_per_event_cpu']} µs of CPU "
            f"per event, {res.figures['ceiling_ratio_to_faust']}x stock Faust: the most one "
            f"worker could reach")
        stored = each_run("the same, each case read from its record and written back",
                          lambda run: _case_rules_in_process(lines, stored=True))
        res.measured("case_rules_stored_us_per_event_cpu", [cpu for _, cpu in stored], 1)
        say(f"  the same with each event's case read from its record and written back (as a "
            f"worker does once per batch): {res.figures['case_rules_stored_us_per_event_cpu']}"
            f" µs of CPU per event")
        if config.only == "ceiling":
            res.ratio("ceiling_ratio_to_aiokafka", "case_rules_in_process_eps",
                      "baseline_aiokafka_eps")
            return res
        res.measured("throughput_eps", each_run("one worker", lambda run: _worker_throughput(
            stack, "bench-backlog", n, history_end, anchor, config, say, run=run)))
        say(f"  [bold]one worker, full rule set: {res.figures['throughput_eps']:,} events/s"
            f"[/]{median}")
        asyncio.run(_produce_backlog(stack, "bench-backlog-2", lines, history_end, anchor, config))
        res.measured("throughput_case_rules_only_eps", each_run(
            "case rules only", lambda run: _worker_throughput(
                stack, "bench-backlog-2", n, history_end, anchor, config, say,
                extensions="[]", run=run)))
        say(f"  one worker, case rules only (JIANCHA_EXTENSIONS=[]: no windows, complaints, "
            f"indicators): {res.figures['throughput_case_rules_only_eps']:,} events/s{median}")
        asyncio.run(_produce_backlog(stack, "bench-backlog-3", lines, history_end, anchor, config))
        res.measured("throughput_2_workers_eps", each_run(
            "two workers", lambda run: _worker_throughput(
                stack, "bench-backlog-3", n, history_end, anchor, config, say, workers=2,
                run=run)))
        res.ratio("scale_out_2_workers", "throughput_2_workers_eps", "throughput_eps")
        say(f"  scale-out: two workers of one group, full rule set: "
            f"{res.figures['throughput_2_workers_eps']:,} events/s{median} "
            f"({res.figures['scale_out_2_workers']}x one worker; {os.cpu_count()} cores shared "
            f"with the broker and Redis)")
        _latency_figures(res, stack, config, say, each_run)
    for cases in config.memory_cases:
        per_case = _memory_per_open_case(cases)
        res.figures[f"bytes_per_open_case_{_label(cases)}"] = round(per_case)
        say(f"  memory: {per_case:,.0f} bytes per open case at {cases:,} open cases")
    res.figures["bytes_per_open_case"] = max(
        v for k, v in res.figures.items() if k.startswith("bytes_per_open_case_"))
    from jiancha.rules.replay_parallel import replay_workers

    workers = replay_workers()
    workdir = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    workload = workdir / "workload.jsonl"
    workload.write_bytes(b"\n".join(lines))
    try:
        for name, shards in (("replay_sequential", 1), ("replay", workers)):
            timed = each_run(name.replace("_", " "), lambda run, name=name, shards=shards:
                             _replay_in_own_process(workload, shards,
                                                    name == "replay_sequential" and run == 0))
            res.measured(f"{name}_eps", [eps for eps, _ in timed])
            res.measured(f"{name}_us_per_event_cpu", [cpu for _, cpu in timed], 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    res.figures["replay_workers"] = workers
    f = res.figures
    say(f"  replay: {f['replay_eps']:,} events/s sharded by case over {workers} processes "
        f"({f['replay_us_per_event_cpu']} µs of CPU per event, all processes), "
        f"{f['replay_sequential_eps']:,} in one ({f['replay_sequential_us_per_event_cpu']} "
        f"µs){median}")
    for prefix, figure in (("ceiling_", "case_rules_in_process_eps"), ("", "throughput_eps"),
                           ("replay_", "replay_eps")):
        if prefix != "ceiling_":
            res.ratio(f"{prefix}ratio_to_faust", figure, "baseline_faust_eps")
        res.ratio(f"{prefix}ratio_to_aiokafka", figure, "baseline_aiokafka_eps")
    return res


def _latency_figures(res: Results, stack: EmbeddedStack, config: BenchConfig, say: Any,
                     each_run: Any) -> None:
    latency = each_run("latency", lambda run: _latency(stack, config, say, run))
    for key in ("latency_p50_ms", "latency_p99_ms", "deadline_lateness_p99_ms"):
        res.measured(key, [lat[key] for lat in latency], 1)
    for key in ("offered_eps", "achieved_send_eps", "latency_alerts",
                "latency_alerts_expected"):
        res.figures[key] = latency[len(latency) // 2][key]


#: the targets (issue 25): figure -> (comparison, bound)
TARGETS: dict[str, tuple[str, float]] = {
    "ceiling_ratio_to_faust": (">=", 5),
    "ratio_to_faust": (">=", 2.5),
    "replay_ratio_to_faust": (">=", 5),
    "latency_p99_ms": ("<=", 50),
    "deadline_lateness_p99_ms": ("<=", 100),
    "bytes_per_open_case": ("<=", 300),
}


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return f"{value[0]:,.0f} events/s, {value[1]:.1f} µs of CPU per event"
    if isinstance(value, dict):
        return f"p50 {value['latency_p50_ms']} ms, p99 {value['latency_p99_ms']} ms"
    return f"{value:,.0f} events/s"


def _rounded(x: float | None, ndigits: int) -> float | None:
    if x is None:
        return None
    return round(x) if ndigits == 0 else round(x, ndigits)


def _label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 else f"{n // 1_000}k"


# --- workload -------------------------------------------------------------------------------


def _workload(n_events: int) -> tuple[list[bytes], datetime, float]:
    from jiancha.rules.calendar import OfficialCalendar
    from jiancha.rules.catalog import load_catalog
    from jiancha.rules.counted_time import WorkingTime
    from jiancha.settings import DEFAULT_CATALOG_DIR

    from .simulator import generate_cases

    history_end = datetime(2026, 11, 18, 13, 0, tzinfo=TZ)
    catalog = load_catalog(DEFAULT_CATALOG_DIR)
    calendar = OfficialCalendar()
    calendar.announce = False  # the bench's engines say which years they lack, once
    working_time = WorkingTime(calendar, TZ)
    cases = max(10, int(n_events / EVENTS_PER_CASE))
    for _ in range(4):  # cases still open at the end report fewer events: add some
        # submitted over the first 30 working days of the 60 days: most are complete by the end
        events = [e for e in generate_cases(catalog, start=history_end - timedelta(days=60),
                                            cases=cases, seed=2026, violations=0.05, days=30,
                                            working_time=working_time)
                  if e.occurred_at <= history_end]
        if len(events) >= n_events:
            break
        cases = int(cases * n_events / max(len(events), 1) * 1.05) + 1
    events = events[:n_events]
    return [orjson.dumps(e.wire_dict()) for e in events], history_end, time.time()


async def _produce_backlog(stack: EmbeddedStack, topic: str, lines: list[bytes],
                           history_end: datetime, anchor: float, config: BenchConfig) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, config.partitions, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = []
        for raw in lines:
            d = orjson.loads(raw)
            occurred = datetime.fromisoformat(d["occurred_at"])
            # reported on the spot: the record time is when the step happened
            real = anchor + (occurred - history_end).total_seconds()
            futures.append(await producer.send(topic, raw, key=d["case_id"].encode(),
                                               timestamp_ms=int(real * 1000)))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# --- baselines ------------------------------------------------------------------------------


async def _aiokafka_baseline(stack: EmbeddedStack, topic: str, n: int) -> tuple[int, float]:
    """A raw aiokafka consumer that parses each record of ``topic`` until it has read ``n``
    (or none came for 10 s): the records read, and the seconds from the first fetch that
    brought any to the last."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.bootstrap, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20,
                                fetch_max_bytes=32 << 20)
    await consumer.start()
    seen, first, last = 0, 0.0, 0.0
    try:
        idle_since = time.monotonic()
        while seen < n and time.monotonic() - idle_since < 10:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batch:
                continue
            idle_since = time.monotonic()
            if not first:
                first = time.perf_counter()
            for records in batch.values():
                for r in records:
                    orjson.loads(r.value)
                seen += len(records)
            last = time.perf_counter()
    finally:
        await consumer.stop()
    return seen, last - first


def _faust_baseline(stack: EmbeddedStack, topic: str, n: int) -> float:
    out = Path(tempfile.mkdtemp(prefix="bench-")) / "faust.json"
    proc = spawn("bench-faust", [sys.executable, "-m", "jiancha.bench_faust", "--broker",
                                 stack.bootstrap, "--topic", topic, "--count", str(n), "--out",
                                 str(out)], stack.workdir)
    try:
        _wait(lambda: out.exists() or proc.proc.poll() is not None, 300, "Faust baseline")
        time.sleep(0.2)
        result = json.loads(out.read_text())
        return float(result["events"] / result["seconds"])
    finally:
        proc.stop()


# --- the worker -----------------------------------------------------------------------------


def _start_worker(stack: EmbeddedStack, topic: str, env_extra: dict[str, str],
                  config: BenchConfig, group: str | None = None) -> tuple[ManagedProcess, int]:
    """A ``jiancha worker`` on ``topic``; ``group`` (the app id) shared by workers that
    split the partitions, else one of its own."""
    port = free_port()
    tag = f"{topic}-{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIANCHA_")}
    env.update(stack.env())
    env.update({
        "JIANCHA_APP_ID": group or f"bench-{tag}", "JIANCHA_EVENTS_TOPIC": topic,
        "JIANCHA_DLQ_TOPIC": f"{topic}.dlq", "JIANCHA_COMPLAINTS_TOPIC": f"{topic}.complaints",
        "JIANCHA_TOPIC_PARTITIONS": str(config.partitions), "JIANCHA_WEB_PORT": str(port),
        "JIANCHA_REDIS_PREFIX": f"{group}:" if group else f"b{port}:",
        "JIANCHA_DATA_DIR": str(stack.workdir / tag),
        "JIANCHA_KAFKA_REBALANCE_TIMEOUT_SECONDS": "4",
    })
    env.update(env_extra)
    proc = spawn(f"worker-{tag}", [sys.executable, "-m", "jiancha.cli", "worker", "--loglevel",
                                   "WARNING"], stack.workdir, env=env)
    return proc, port


def _progress(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=5) as r:
        return dict(json.loads(r.read()))


def _metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _worker_throughput(stack: EmbeddedStack, topic: str, n: int, history_end: datetime,
                       anchor: float, config: BenchConfig, say: Any,
                       extensions: str | None = None, workers: int = 1, run: int = 0) -> float:
    """Events/s of ``workers`` workers of one group on a backlog of ``n`` events: from when
    the first batch of any of them began to when the last one ended (their own wall-clock
    times, so polling costs them nothing; a whole fetch is one batch, some 20,000 events
    on a backlog, so its time must count). Started together, several workers join one
    generation; the time includes how much later one starts than the other (on the
    ``--quick`` backlog that skew can outweigh the gain). Each ``run`` is a group of its
    own: it reads the backlog from the start."""
    env = {"JIANCHA_CLOCK_START": history_end.isoformat(), "JIANCHA_CLOCK_ANCHOR": repr(anchor)}
    if extensions is not None:
        env["JIANCHA_EXTENSIONS"] = extensions
    group = f"bench-{topic}" + (f"-run{run}" if run else "")
    started = [_start_worker(stack, topic, env, config, group=group)
               for _ in range(workers)]
    try:
        last_report = time.monotonic()
        deadline = time.monotonic() + 600
        last_done, changed_at = 0, time.monotonic()
        while time.monotonic() < deadline:
            progress = []
            for proc, port in started:
                if proc.proc.poll() is not None:
                    raise RuntimeError(f"worker exited; see {proc.log_path}")
                try:
                    progress.append(_progress(port))
                except OSError:
                    progress.append({"events": 0})
            done = sum(p["events"] for p in progress)
            if done != last_done:
                last_done, changed_at = done, time.monotonic()
            # more than n: events read twice after a rebalance; wait until all are in
            if done == n or (done > n and time.monotonic() - changed_at > 2):
                first = min(p["first_at"] for p in progress if p["events"])
                last = max(p["last_at"] for p in progress if p["events"])
                if workers > 1:
                    split = ", ".join(f"{p['events']:,}" for p in progress)
                    say(f"    events per worker: {split}")
                if done > n:  # a rebalance during the run: some read again
                    say(f"    [yellow]{done - n:,} events were read twice (a rebalance); the "
                        f"figure counts every event once[/]")
                return n / max(last - first, 1e-6)
            if time.monotonic() - last_report > 5 and done:
                say(f"    {'workers' if workers > 1 else 'worker'}: {done:,.0f} / {n:,} events")
                last_report = time.monotonic()
            time.sleep(0.2)
        raise TimeoutError("the workers did not finish the backlog in 600 s")
    finally:
        for proc, _ in started:
            proc.stop()


def _latency(stack: EmbeddedStack, config: BenchConfig, say: Any, run: int = 0
             ) -> dict[str, Any]:
    """Fixed offered load on a fast clock; latency from send to the alert in Redis. Each
    ``run`` has a topic and a worker of its own."""
    topic = f"bench-live-{run}"
    speed = 86_400.0  # one simulated day per real second: deadlines fall due during the run
    start = datetime(2026, 11, 16, 9, 0, tzinfo=TZ)  # a Monday morning
    anchor = time.time() + 8.0  # the simulated clock starts once the worker is up
    asyncio.run(_create_topic(stack, topic, config.partitions))
    proc, port = _start_worker(stack, topic, {
        "JIANCHA_CLOCK_START": start.isoformat(), "JIANCHA_CLOCK_ANCHOR": repr(anchor),
        "JIANCHA_CLOCK_SPEED": str(speed), "JIANCHA_DEADLINE_TICK_SECONDS": "0.1",
    }, config)
    try:
        _wait(lambda: _ready(port), 120, "latency worker")
        say(f"  latency: offering {config.offered_eps:,} events/s for "
            f"{config.latency_seconds:g} s ...")
        sent_at, received_at, sent = asyncio.run(_offer_load(
            stack, topic, f"b{port}:alerts", config, start, speed, anchor))
        time.sleep(3)  # let deadlines of the last cases fire
        # an alert that never came (within 30 s after the load) counts as infinitely late
        lat = sorted((received_at[k] - sent_at[k]) * 1000 if k in received_at else float("inf")
                     for k in sent_at)
        text = _metrics_text(port)
    finally:
        proc.stop()
    out = {
        "offered_eps": config.offered_eps,
        "achieved_send_eps": round(sent / config.latency_seconds),
        "latency_p50_ms": _finite(statistics.median(lat)) if lat else None,
        "latency_p99_ms": _finite(lat[int(len(lat) * 0.99) - 1]) if lat else None,
        "latency_alerts": len(received_at),
        "latency_alerts_expected": len(sent_at),
        "deadline_lateness_p99_ms": _histogram_p99_ms(text, "jiancha_deadline_lateness_seconds"),
    }
    missing = (" (p99 None: over 1% never came, the worker is saturated)"
               if out["latency_p99_ms"] is None else "")
    say(f"    event-to-alert latency p50 {out['latency_p50_ms']} ms, p99 {out['latency_p99_ms']}"
        f" ms; {len(received_at):,} of {len(sent_at):,} alerts arrived{missing}; deadline"
        f" alerts p99 {out['deadline_lateness_p99_ms']} ms late (histogram bucket bound)")
    return out


def _finite(ms: float) -> float | None:
    return round(ms, 1) if ms != float("inf") else None


async def _create_topic(stack: EmbeddedStack, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, partitions, 1)])
    await admin.close()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return bool(json.loads(r.read()).get("ready"))
    except OSError:
        return False


async def _offer_load(stack: EmbeddedStack, topic: str, stream: str, config: BenchConfig,
                      start: datetime, speed: float, anchor: float
                      ) -> tuple[dict[str, float], dict[str, float], int]:
    """Cases of four steps; one in ten is refused without a reason (an immediate alert);
    one in five stays open (its promise deadline falls due during the run)."""
    import redis.asyncio as aioredis
    from aiokafka import AIOKafkaProducer

    while time.time() < anchor:
        await asyncio.sleep(0.05)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=2)
    await producer.start()
    r = aioredis.Redis.from_url(stack.redis_url)
    sent_at: dict[str, float] = {}
    received_at: dict[str, float] = {}
    stop = asyncio.Event()

    async def read_alerts() -> None:
        last = "$"
        while not stop.is_set() or len(received_at) < len(sent_at):
            reply = await r.xread({stream: last}, count=1000, block=200)
            now = time.time()
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    alert = orjson.loads(fields[b"alert"])
                    for ev in alert["evidence"]:
                        if ev in sent_at and ev not in received_at:
                            received_at[ev] = now
            if stop.is_set() and time.time() > deadline_at:
                break

    deadline_at = time.time() + config.latency_seconds + 30
    reader = asyncio.create_task(read_alerts())
    sent, n_case, tick = 0, 0, 0.01
    per_tick = config.offered_eps * tick
    t0 = time.perf_counter()
    budget = 0.0
    while time.perf_counter() - t0 < config.latency_seconds:
        budget += per_tick
        while budget >= 1:
            n_case += 1
            for raw, alert_event in _live_case(n_case, start + timedelta(
                    seconds=(time.time() - anchor) * speed)):
                await producer.send(topic, raw, key=f"L{n_case}".encode())
                if alert_event:
                    sent_at[alert_event] = time.time()
                sent += 1
                budget -= 1
        await asyncio.sleep(max(0.0, t0 + (sent / config.offered_eps) - time.perf_counter()))
    await producer.flush()
    stop.set()
    await reader
    await producer.stop()
    await r.aclose()
    return sent_at, received_at, sent


def _live_case(n: int, now: datetime) -> list[tuple[bytes, str | None]]:
    case_id, item = f"L{n}", "GA-0002"
    base = {"schema_version": 1, "case_id": case_id, "item_code": item, "department": "gongan"}
    at = now.isoformat()
    steps: list[tuple[dict[str, Any], str | None]] = [
        ({"step": "submitted", "actor": "applicant", "applicant_id": f"sha256:{n}"}, None),
        ({"step": "accepted", "actor": "gongan-h1"}, None),
    ]
    if n % 5 != 0:  # one in five stays open: its deadlines fall due during the run
        steps.append(({"step": "reviewed", "actor": "gongan-h1",
                       "attributes": {"opinion": "agree"}}, None))
        if n % 10 == 1:
            steps.append(({"step": "decided", "actor": "gongan-h2",
                           "attributes": {"outcome": "deny"}}, f"L{n}-4"))  # no reason: alert
        else:
            steps.append(({"step": "decided", "actor": "gongan-h2",
                           "attributes": {"outcome": "grant"}}, None))
    out = []
    for i, (extra, alert_id) in enumerate(steps, 1):
        ev = {**base, **extra, "event_id": f"L{n}-{i}", "occurred_at": at}
        out.append((orjson.dumps(ev), alert_id))
    return out


def _histogram_p99_ms(text: str, name: str) -> float | None:
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le),
                            float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= 0.99 * total:
            return round(bound * 1000, 1)
    return None


# --- in process -------------------------------------------------------------------------------


def _memory_per_open_case(n: int) -> float:
    """An open case (submitted, accepted, reviewed) as the worker keeps it: the encoded
    state in the table's store, keyed by its case id's bytes, and its entry in its
    partition's deadline index, keyed by the same bytes object (as the worker does)."""
    from jiancha.producers.contract import parse_event
    from jiancha.rules.factory import build_engine
    from jiancha.rules.schedule import DeadlineIndex, Due
    from jiancha.rules.state_codec import encode_state
    from jiancha.settings import DEFAULT_CATALOG_DIR

    engine = build_engine(DEFAULT_CATALOG_DIR)
    engine.working_time.calendar.announce = False  # (the first in-process run said so)
    t = datetime(2026, 11, 16, 9, 0, tzinfo=TZ)
    templates = [
        {"schema_version": 1, "event_id": "e1", "case_id": "X", "item_code": "GA-0002",
         "department": "gongan", "step": "submitted", "occurred_at": t.isoformat(),
         "actor": "applicant", "applicant_id": "sha256:0123456789abcdef"},
        {"schema_version": 1, "event_id": "e2", "case_id": "X", "item_code": "GA-0002",
         "department": "gongan", "step": "accepted", "occurred_at": t.isoformat(),
         "actor": "gongan-h1"},
        {"schema_version": 1, "event_id": "e3", "case_id": "X", "item_code": "GA-0002",
         "department": "gongan", "step": "reviewed", "occurred_at": t.isoformat(),
         "actor": "gongan-h1", "attributes": {"opinion": "agree"}},
    ]
    # one case through the engine; the others are copies with their own ids, submitted a
    # little later each, over 20 days (what the store holds is the encoded state: the same
    # size, built much faster for 1M cases)
    template = None
    for tpl in templates:
        ev = parse_event(tpl)
        template = engine.ingest(template, ev, ev.occurred_at)
    assert template is not None
    waits = engine.next_due(template)
    assert waits.at is not None
    store: dict[bytes, bytes] = {}
    indexes: dict[int, DeadlineIndex[bytes]] = {p: DeadlineIndex() for p in range(8)}
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        case_id = f"GZ2026-{i:08d}"
        later = float(i * 61 % (20 * 86400))
        state = dataclasses.replace(
            template, case_id=case_id, partition=i % 8, raised=dict(template.raised),
            facts=[dataclasses.replace(f, event_id=f"gongan-{i * 3 + j}", at=f.at + later,
                                       received=f.received + later)
                   for j, f in enumerate(template.facts)])
        key = case_id.encode()
        store[key] = encode_state(state)
        indexes[state.partition].put(key, Due(waits.at + later, waits.pending))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n


def _fresh_engine(announce: bool) -> Any:
    """An engine with no warm caches; ``announce``: whether it says which years have no
    official calendar (only the first in-process run of the bench says so)."""
    from jiancha.rules.calendar import OfficialCalendar
    from jiancha.rules.factory import build_engine
    from jiancha.settings import DEFAULT_CATALOG_DIR

    engine = build_engine(DEFAULT_CATALOG_DIR)
    if isinstance(engine.working_time.calendar, OfficialCalendar):
        engine.working_time.calendar.announce = announce
    return engine


def _case_rules_in_process(lines: list[bytes], stored: bool = False) -> tuple[float, float]:
    """Events/s, and µs of CPU per event, of the work one worker cannot skip for an event,
    and nothing else: the gate (JSON, contract, catalog, duplicates) and the case rules
    (ingest, then judge with the deadline index), in one process, on a fresh engine. No
    Kafka, no Redis, no state encoding, no deadline ticks, no windows, complaints or
    indicators: an upper bound for one worker, with the collector set as the worker sets
    it.

    ``stored``: each event's case read from its record and written back after (what a
    worker does for a case once per batch it is in: the state decoded, its summary and
    kept values built again, the state encoded), not kept decoded between events."""
    import gc

    from jiancha.rules.case import CaseState
    from jiancha.rules.clock import EventTimeClock
    from jiancha.rules.collector import tuned_collector
    from jiancha.rules.ingest import Gate, Rejected
    from jiancha.rules.schedule import DeadlineIndex
    from jiancha.rules.state_codec import decode_state, encode_state

    engine = _fresh_engine(announce=False)
    gate = Gate(engine.catalog)
    cases: dict[str, CaseState] = {}
    records: dict[str, bytes] = {}
    index = DeadlineIndex()
    clock = EventTimeClock()
    gc.collect()
    with tuned_collector():
        t0, cpu0 = time.perf_counter(), time.process_time()
        for raw in lines:
            try:
                event = gate.parse(raw, None)
                if stored:
                    record = records.get(event.case_id)
                    state = None if record is None else decode_state(record, event.case_id)
                else:
                    state = cases.get(event.case_id)
                gate.check_against_case(event, state)
            except Rejected:
                continue
            state = engine.ingest(state, event, event.occurred_at)
            clock.advance(event.occurred_at, state.facts[-1].at)
            _, due = engine.judge(state, clock.now(), event.step, index.get(event.case_id),
                                  now_ts=clock.now_epoch())
            index.put(event.case_id, due)
            if stored:
                records[event.case_id] = encode_state(state)
            else:
                cases[event.case_id] = state
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return len(lines) / wall, cpu / len(lines) * 1e6


def _replay(lines: list[bytes], engine: Any, workers: int) -> tuple[float, float]:
    """Events/s of ``jiancha replay`` (windows and all) over the workload, and µs of CPU per
    event, of this process and its shards (the children it waited for meanwhile)."""
    import resource

    from jiancha.rules.replay_parallel import replay_parallel

    def cpu() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    t0, cpu0 = time.perf_counter(), cpu()
    replay_parallel(lines, engine, datetime(2026, 12, 31, tzinfo=TZ), workers=workers)
    wall, used = time.perf_counter() - t0, cpu() - cpu0
    return len(lines) / wall, used / len(lines) * 1e6


def _replay_in_own_process(workload: Path, workers: int, announce: bool
                           ) -> tuple[float, float]:
    """:func:`_replay` of the lines of ``workload`` in a process started for it, as
    ``jiancha replay`` runs: in the bench's own process, after its other phases, the shards
    forked from a larger and older heap, and cost more CPU per event."""
    code = ("import sys; from jiancha import bench; "
            "bench.replay_in_this_process(sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1')")
    done = subprocess.run([sys.executable, "-c", code, str(workload), str(workers),
                           "1" if announce else "0"], stdout=subprocess.PIPE, check=True)
    eps, cpu = json.loads(done.stdout.splitlines()[-1])
    return float(eps), float(cpu)


def replay_in_this_process(workload: str, workers: int, announce: bool) -> None:
    """The child of :func:`_replay_in_own_process`: prints [events/s, µs of CPU per event]."""
    lines = Path(workload).read_bytes().split(b"\n")
    print(json.dumps(_replay(lines, _fresh_engine(announce), workers)), flush=True)


#: where the CPU time of replay goes, by the file (or function) it is spent in; builtins
#: count for the file that called them
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("alert rendering (texts, the Alert model)",
     ("engine.py:_render", "windows.py:render_alert", "rules/messages.py", "pydantic/main.py")),
    ("the gate (JSON, the contract's model, catalog, duplicates)",
     ("rules/ingest.py", "producers/contract.py", "pydantic")),
    ("the case rules (ingest, checks, findings, deadlines, calendar)",
     ("rules/engine.py", "rules/checks/", "rules/findings.py", "rules/case.py",
      "rules/counted_time.py", "rules/calendar.py", "rules/schedule.py", "rules/driver.py",
      "rules/clock.py", "rules/memo.py")),
    ("the window rules", ("rules/windows.py",)),
    ("replay's own loop", ("rules/replay.py",)),
)


def profile_buckets(lines: list[bytes]) -> list[tuple[str, float]]:
    """µs of CPU per event by bucket (:data:`BUCKETS`, plus the cyclic collector and the
    rest) of an in-process replay of ``lines``: the shares of a cProfile run (which
    inflates code of many small calls) scaled to an unprofiled run's CPU time."""
    import cProfile
    import gc
    import pstats

    def bucket(file: str, name: str) -> str:
        for label, marks in BUCKETS:
            if any(m in f"{file}:{name}" for m in marks):
                return label
        return "the rest"

    collecting = [0.0, 0.0]  # the collector's time; when the current collection began

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[1] = time.process_time()
        else:
            collecting[0] += time.process_time() - collecting[1]

    _, plain = _replay(lines, _fresh_engine(announce=False), 1)
    profiler = cProfile.Profile()
    gc.callbacks.append(on_gc)
    try:
        profiler.runcall(_replay, lines, _fresh_engine(announce=False), 1)
    finally:
        gc.callbacks.remove(on_gc)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    spent: dict[str, float] = {}
    for (file, _, name), (_, _, tottime, _, callers) in stats.items():
        if file == "~" and callers:  # a builtin: its time goes to its callers' buckets
            for (c_file, _, c_name), caller in callers.items():
                key = bucket(c_file, c_name)
                spent[key] = spent.get(key, 0.0) + caller[2]
        else:
            key = bucket(file, name)
            spent[key] = spent.get(key, 0.0) + tottime
    total = sum(spent.values())
    gc_share = collecting[0] / (total + collecting[0])
    rows = [(label, plain * (1 - gc_share) * spent.get(label, 0.0) / total)
            for label in [b[0] for b in BUCKETS] + ["the rest"]]
    return [*rows, ("the cyclic garbage collector", plain * gc_share)]


def profile_markdown(events: int) -> str:
    """The buckets of :func:`profile_buckets` over the bench's workload, in Markdown."""
    lines, _, _ = _workload(events)
    rows = profile_buckets(lines)
    total = sum(us for _, us in rows)
    out = ["| where | µs of CPU per event | share |", "| --- | ---: | ---: |"]
    out += [f"| {label} | {us:.1f} | {us / total:.0%} |" for label, us in rows]
    out.append(f"| all (replay in one process, {len(lines):,} events) | {total:.1f} | |")
    return "\n".join(out) + "\n"


def _wait(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not done in {timeout}s")


#: the rows of the figures' table: (what, figure, unit); a ratio's unit is "x"
ROWS: tuple[tuple[str, str, str], ...] = (
    ("baseline: raw aiokafka consumer, parse only", "baseline_aiokafka_eps", "events/s"),
    ("baseline: minimal stock Faust agent, parse only", "baseline_faust_eps", "events/s"),
    ("the gate and the case rules alone, in one process", "case_rules_in_process_eps",
     "events/s"),
    ("  CPU per event", "case_rules_in_process_us_per_event_cpu", "µs"),
    ("  to stock Faust", "ceiling_ratio_to_faust", "x"),
    ("  to raw aiokafka", "ceiling_ratio_to_aiokafka", "x"),
    ("  CPU per event, each case read from its record and written back",
     "case_rules_stored_us_per_event_cpu", "µs"),
    ("one worker, full rule set", "throughput_eps", "events/s"),
    ("  to stock Faust", "ratio_to_faust", "x"),
    ("  to raw aiokafka", "ratio_to_aiokafka", "x"),
    ("one worker, case rules only", "throughput_case_rules_only_eps", "events/s"),
    ("two workers of one group", "throughput_2_workers_eps", "events/s"),
    ("  to one worker", "scale_out_2_workers", "x"),
    ("replay, sharded over the cores", "replay_eps", "events/s"),
    ("  CPU per event (all processes)", "replay_us_per_event_cpu", "µs"),
    ("  to stock Faust", "replay_ratio_to_faust", "x"),
    ("  to raw aiokafka", "replay_ratio_to_aiokafka", "x"),
    ("replay, one process", "replay_sequential_eps", "events/s"),
    ("  CPU per event", "replay_sequential_us_per_event_cpu", "µs"),
    ("event-to-alert latency p50 at the offered load", "latency_p50_ms", "ms"),
    ("event-to-alert latency p99 at the offered load", "latency_p99_ms", "ms"),
    ("deadline alerts late, p99 (histogram bucket bound)", "deadline_lateness_p99_ms", "ms"),
    ("memory per open case (the largest count measured)", "bytes_per_open_case", "B"),
)


def _value(value: Any, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit == "x":
        return f"{value:g}×"
    return f"{value:,} {unit}"


def table(figures: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The figures' table: what, the median, the runs it came from (a ratio: the runs of
    the figures it divides), the target, and whether it is met."""
    rows = []
    runs, ratios = figures.get("runs", {}), figures.get("ratios", {})
    for what, key, unit in ROWS:
        if key not in figures:
            continue
        value = figures[key]
        if key in ratios:
            r = ratios[key]
            came_from = (" / ".join(f"{x:,}" for x in r["of_runs"]) + " over "
                         + " / ".join(f"{x:,}" for x in r["to_runs"]))
        else:
            came_from = " / ".join("—" if x is None else f"{x:,}" for x in runs.get(key, []))
        target, met = "", ""
        if key in TARGETS:
            op, bound = TARGETS[key]
            target = ("≥ " if op == ">=" else "≤ ") + _value(bound, unit)
            met = "yes" if _met(value, op, bound) else "no"
        rows.append((f"{what} (`{key}`)", _value(value, unit), came_from, target, met))
    return rows


def _met(value: float | None, op: str, bound: float) -> bool:
    return value is not None and (value >= bound if op == ">=" else value <= bound)


def markdown(figures: dict[str, Any]) -> str:
    """The figures' table in Markdown (docs/performance.md holds the latest run's)."""
    out = ["| figure | median | runs | target | met |", "| --- | ---: | --- | --- | --- |"]
    out += ["| " + " | ".join((what.replace("  ", "↳ ", 1), *rest)) + " |"
            for what, *rest in table(figures)]
    return "\n".join(out) + "\n"


def report(res: Results, console: Console) -> bool:
    """Print the figures against the targets; True when every target is met."""
    rows = [(what.rsplit(" (`", 1)[1].rstrip("`)"), value, came_from, target, met)
            for what, value, came_from, target, met in table(res.figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    console.print()
    for row in [("figure", "median", "runs", "target", "met"), *rows]:
        key, value, came_from, target, met = row
        colour = {"yes": "green", "no": "red"}.get(met)
        console.print(f"{key:<{widths[0]}}  {value:>{widths[1]}}  {came_from:<{widths[2]}}  "
                      f"{target:<{widths[3]}}  " + (f"[{colour}]{met}[/]" if colour else met),
                      soft_wrap=True, markup=True)
    return all(_met(res.figures.get(key), op, bound) for key, (op, bound) in TARGETS.items())
