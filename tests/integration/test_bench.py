"""``jiancha bench --json`` prints every figure docs/performance.md names, from one run.

Only that the figures are there and make sense is checked here, never how fast: speed
targets are judged from the benchmark's own output, not from a timed test."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from jiancha.bench import TZ, BenchConfig, _aiokafka_baseline, _produce_backlog, ratio
from jiancha.embedded import EmbeddedStack
from jiancha.rules import state_codec

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

#: the figures docs/performance.md names, each a number (the targets' among them)
REQUIRED = ("throughput_eps", "baseline_faust_eps", "baseline_aiokafka_eps", "latency_p50_ms",
            "latency_p99_ms", "deadline_lateness_p99_ms", "bytes_per_open_case", "replay_eps",
            "case_rules_in_process_eps", "case_rules_in_process_us_per_event_cpu",
            "case_rules_stored_us_per_event_cpu",
            "replay_us_per_event_cpu", "replay_sequential_us_per_event_cpu")
RATIOS = {"ceiling_ratio_to_faust": ("case_rules_in_process_eps", "baseline_faust_eps"),
          "ceiling_ratio_to_aiokafka": ("case_rules_in_process_eps", "baseline_aiokafka_eps"),
          "ratio_to_faust": ("throughput_eps", "baseline_faust_eps"),
          "ratio_to_aiokafka": ("throughput_eps", "baseline_aiokafka_eps"),
          "replay_ratio_to_faust": ("replay_eps", "baseline_faust_eps"),
          "replay_ratio_to_aiokafka": ("replay_eps", "baseline_aiokafka_eps")}


def test_the_quick_bench_prints_every_figure_and_the_ratios(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jiancha.cli", "bench", "--quick", "--events", "3000", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for key in REQUIRED:
        assert isinstance(figures.get(key), (int, float)) and figures[key] > 0, (key, figures)
        if key != "bytes_per_open_case":  # counted, not timed: one run
            assert len(figures["runs"][key]) == 1  # --quick: one run of each
    for name, (of, to) in RATIOS.items():
        assert figures[name] == ratio(figures[of], figures[to]), name
        assert figures["ratios"][name] == {"of": of, "to": to, "of_runs": figures["runs"][of],
                                           "to_runs": figures["runs"][to]}
    # parsing alone is faster than the worker's whole work
    assert figures["baseline_aiokafka_eps"] > figures["throughput_eps"]
    assert figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert figures["latency_alerts"] == figures["latency_alerts_expected"] > 0
    # progress while it runs, and the table of figures against the targets at the end
    for phase in ("baseline raw aiokafka consumer", "baseline minimal stock Faust agent",
                  "the gate and the case rules alone, in process",
                  "one worker, full rule set", "latency:", "memory:", "replay:"):
        assert phase in done.stderr, phase
    assert "figure" in done.stderr and "target" in done.stderr
    years = re.findall(r"no official holiday calendar for (\d{4})", done.stderr)
    assert len(years) == len(set(years))  # once a year, not once per process
    # the table docs/performance.md holds, from that output
    out = tmp_path / "bench.json"
    out.write_text(done.stdout)
    table = subprocess.run([sys.executable, "-m", "jiancha.cli", "bench", "--markdown-from",
                            str(out)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert table.stdout.startswith("| figure | median | runs | target | met |")
    for key in (*REQUIRED, *RATIOS):
        assert f"(`{key}`)" in table.stdout, key


def test_the_ceiling_phase_measures_the_baselines_and_the_core_only() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jiancha.cli", "bench", "--quick", "--events", "3000", "--only",
         "ceiling", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("baseline_aiokafka_eps", "baseline_faust_eps", "case_rules_in_process_eps",
                "case_rules_in_process_us_per_event_cpu", "case_rules_stored_us_per_event_cpu"):
        assert isinstance(figures.get(key), (int, float)) and figures[key] > 0, (key, figures)
    for name in ("ceiling_ratio_to_faust", "ceiling_ratio_to_aiokafka"):
        of, to = RATIOS[name]
        assert figures[name] == ratio(figures[of], figures[to]), name
    # no worker, latency, memory or replay phase ran
    assert not {"throughput_eps", "latency_p99_ms", "bytes_per_open_case",
                "replay_eps"} & figures.keys()
    assert "one worker, full rule set" not in done.stderr
    assert "only the ceiling phase was measured" in done.stderr
    # which reader of case records ran, in the figures and in the progress
    assert figures["compiled_record_reader"] is state_codec.COMPILED
    said = " ".join(done.stderr.split())  # the console wraps its lines
    assert ("case records read by compiled code" in said) is state_codec.COMPILED


def test_the_aiokafka_baseline_reads_each_event_once(stack: EmbeddedStack) -> None:
    """On a backlog over 8 partitions, the raw consumer counts every record once: the
    count it reports is the number produced, whatever the batches hold."""
    config = BenchConfig(partitions=8)
    lines = [orjson.dumps({"case_id": f"C{i % 97}", "occurred_at": "2026-11-18T09:00:00+08:00",
                           "n": i}) for i in range(2_000)]
    history_end = datetime(2026, 11, 18, 13, 0, tzinfo=TZ)
    asyncio.run(_produce_backlog(stack, "bench-count", lines, history_end, time.time(), config))
    seen, seconds = asyncio.run(_aiokafka_baseline(stack, "bench-count", len(lines) * 2))
    assert seen == len(lines)  # asked for more than there are: it read them all, once
    assert seconds > 0
    seen, _ = asyncio.run(_aiokafka_baseline(stack, "bench-count", len(lines)))
    assert seen == len(lines)
