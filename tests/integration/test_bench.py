"""``jiancha bench --json`` prints every figure docs/performance.md names, from one run.

Only that the figures are there and make sense is checked here, never how fast: speed
targets are judged from the benchmark's own output, not from a timed test."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

#: the figures docs/performance.md names, each a number
REQUIRED = ("throughput_eps", "baseline_faust_eps", "baseline_aiokafka_eps", "latency_p50_ms",
            "latency_p99_ms", "deadline_lateness_p99_ms", "bytes_per_open_case", "replay_eps")


def test_the_quick_bench_prints_every_figure_and_the_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jiancha.cli", "bench", "--quick", "--events", "3000", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for key in REQUIRED:
        assert isinstance(figures.get(key), (int, float)) and figures[key] > 0, (key, figures)
    assert figures["ratio_to_faust"] == round(
        figures["throughput_eps"] / figures["baseline_faust_eps"], 2)
    assert figures["ratio_to_aiokafka"] > 0
    # the gate and case rules alone, in process: the ceiling of the ratio to stock Faust
    assert figures["case_rules_in_process_eps"] > 0
    assert figures["ceiling_ratio_to_faust"] == round(
        figures["case_rules_in_process_eps"] / figures["baseline_faust_eps"], 2)
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
