"""The bench's figures: a figure is the median of its runs and keeps them; a ratio names
the figures and runs it divides; the table marks each target met or not; the profile's
buckets add up to the CPU time they divide."""

from __future__ import annotations

import subprocess
import sys

from jiancha.bench import (
    TARGETS,
    Results,
    _histogram_p99_ms,
    _workload,
    markdown,
    profile_buckets,
    ratio,
)


def test_a_figure_is_the_median_of_its_runs_and_a_ratio_names_its_runs() -> None:
    res = Results()
    assert res.measured("throughput_eps", [9_000.4, 12_000.0, 10_000.2]) == 10_000
    res.measured("baseline_faust_eps", [4_000.0, 5_000.0, 6_000.0])
    res.ratio("ratio_to_faust", "throughput_eps", "baseline_faust_eps")
    f = res.figures
    assert f["runs"]["throughput_eps"] == [9_000, 12_000, 10_000]
    assert f["ratio_to_faust"] == 2.0
    assert f["ratios"]["ratio_to_faust"] == {
        "of": "throughput_eps", "to": "baseline_faust_eps",
        "of_runs": [9_000, 12_000, 10_000], "to_runs": [4_000, 5_000, 6_000]}
    # a run that measured nothing counts as the worst; the median of mostly nothing is none
    assert res.measured("latency_p99_ms", [40.0, None, None], 1) is None
    assert res.measured("latency_p50_ms", [40.0, None, 30.04], 1) == 40.0
    assert f["runs"]["latency_p50_ms"] == [40.0, None, 30.0]
    assert ratio(2_000, 1_333_873) == 0.0015  # three significant digits, not 0.0


def test_the_table_marks_each_target() -> None:
    res = Results()
    res.measured("baseline_faust_eps", [5_000.0])
    res.measured("replay_eps", [30_000.0])
    res.measured("latency_p99_ms", [60.0], 1)
    res.ratio("replay_ratio_to_faust", "replay_eps", "baseline_faust_eps")
    rows = {line.split(" | ")[0].split("(`")[1].rstrip("`)"): line
            for line in markdown(res.figures).splitlines()[2:]}
    assert rows["replay_ratio_to_faust"].endswith("| 30,000 over 5,000 | ≥ 5× | yes |")
    assert rows["latency_p99_ms"].endswith("| 60.0 | ≤ 50 ms | no |")
    assert set(TARGETS) >= {"replay_ratio_to_faust", "latency_p99_ms"}


def test_the_profile_buckets_divide_the_cpu_time() -> None:
    lines, _, _ = _workload(1_500)
    rows = dict(profile_buckets(lines))
    assert rows["the case rules (ingest, checks, findings, deadlines, calendar)"] > 0
    assert rows["the gate (JSON, the contract's model, catalog, duplicates)"] > 0
    assert rows["the window rules"] > 0
    assert all(us >= 0 for us in rows.values())


def test_the_lateness_p99_is_the_bound_of_the_bucket_it_falls_in() -> None:
    name = "jiancha_deadline_lateness_seconds"
    counts = {"0.05": 90, "0.075": 99, "0.1": 100, "+Inf": 100}
    text = "\n".join(f'{name}_bucket{{le="{le}"}} {n}.0' for le, n in counts.items())
    assert _histogram_p99_ms(text, name) == 75.0


def test_the_bench_measures_only_a_phase_it_knows() -> None:
    done = subprocess.run([sys.executable, "-m", "jiancha.cli", "bench", "--only", "memory"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "no phase 'memory'" in done.stderr
    assert "'latency' or 'ceiling'" in done.stderr
