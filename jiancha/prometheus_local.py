"""Debian's ``prometheus`` on a free loopback port, scraping a local worker with the
repository's prometheus.yml and recording and alerting rules: for the live dashboard test
(tests/integration/test_dashboards_live.py) and the dashboard previews
(``jiancha dashboards preview``)."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from jiancha.dashboards import promql

from .embedded import ManagedProcess, free_port, spawn

PROMETHEUS_YML = Path(promql.__file__).resolve().parent / "prometheus" / "prometheus.yml"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def prometheus_config(worker_port: int, prometheus_port: int) -> dict[str, Any]:
    """The repository's prometheus.yml, with the worker found on localhost instead of by
    Docker DNS, 1 s intervals, and the rules read from the repository."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(promql.RULES_DIR / "*.yml")]
    for job in config["scrape_configs"]:
        if job["job_name"] == "jiancha":
            job.pop("dns_sd_configs")
            job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
        elif job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{prometheus_port}"]}]
    return config


def start_prometheus(workdir: Path, worker_port: int) -> tuple[ManagedProcess, str]:
    """A ready Prometheus (its process, its base URL) keeping its data under ``workdir``."""
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError("prometheus is not on PATH (Debian's prometheus package)")
    port = free_port()
    home = workdir / f"prometheus-{port}"
    home.mkdir()
    config = home / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(worker_port, port)), encoding="utf-8")
    proc = spawn(f"prometheus-{port}", [
        binary, f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
        "--log.level=warn"], workdir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{proc.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    proc.stop()
    raise TimeoutError(f"prometheus not ready:\n{proc.log_path.read_text()[-3000:]}")
