"""``jiancha demo`` as a newcomer runs it: alerts within 60 s, nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from tests.wait import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ALERT_LINE = re.compile(r"^\s*(yellow|red|escalated) \d{4}-\d\d-\d\dT\d\d:\d\d (\S+)", re.M)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def _alert_list(login: str) -> str:
    """The page the printed login link leads to (its cookie kept, as a browser does)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    with opener.open(login, timeout=10) as resp:
        assert resp.status == 200 and resp.url.endswith("/alerts") and "token" not in resp.url
        return str(resp.read().decode())


def test_demo_shows_alerts_within_60s_and_stops_everything() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIANCHA_")}
    env["COLUMNS"] = "200"
    proc = subprocess.Popen([sys.executable, "-m", "jiancha.cli", "demo"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        wait_for(lambda: ALERT_LINE.search("".join(lines)) or proc.poll() is not None,
                 timeout=60, what="an alert printed by the demo", interval=0.2)
        ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", "".join(lines))]
        login = re.search(r"alert pages at (http://127\.0\.0\.1:\d+/login\?token=\S+)", "".join(lines))
        listed = _alert_list(login.group(1)) if login else ""
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=60)
        reader.join(10)
    text = "".join(lines)
    assert ALERT_LINE.search(text), text
    assert "metrics at http://127.0.0.1:" in text
    assert login is not None, text
    assert 'class="alert-row"' in listed and "督查机构" in listed  # the bureau's alert list
    assert proc.returncode == 0, text
    assert "all stopped." in text
    rules = {m.group(2) for m in ALERT_LINE.finditer(text)}
    assert rules, text
    for port in ports:
        assert not _listening(port), f"port {port} still open after the demo"
        assert not _processes_mentioning(f"127.0.0.1:{port}"), port
    workdir = re.search(r"logs\s+(\S+)", text)
    if workdir:
        assert not _processes_mentioning(workdir.group(1))
