"""Integration fixtures: a real Tansu broker and a real redis-server on free ports, and
real worker processes (``jiancha worker``) started with per-test topics and group ids."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from jiancha.embedded import EmbeddedStack, ManagedProcess, free_port, spawn

ROOT = Path(__file__).resolve().parents[2]
TEST_CATALOG = ROOT / "tests" / "fixtures" / "catalog"


@pytest.fixture(scope="package")  # one broker and Redis for every integration test
def stack() -> Iterator[EmbeddedStack]:
    with EmbeddedStack() as s:
        yield s


@dataclass
class WorkerSpec:
    """Everything one supervised test scenario shares: topics, group id, Redis prefix."""

    stack: EmbeddedStack
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    extra_env: dict[str, str] = field(default_factory=dict)
    partitions: int = 4

    @property
    def app_id(self) -> str:
        """The workers' app id, which is their consumer group id."""
        return f"jc-{self.tag}"

    @property
    def events_topic(self) -> str:
        return f"events-{self.tag}"

    @property
    def dlq_topic(self) -> str:
        return f"events-{self.tag}.dlq"

    @property
    def complaints_topic(self) -> str:
        return f"complaints-{self.tag}"

    @property
    def complaints_dlq_topic(self) -> str:
        return f"complaints-{self.tag}.dlq"

    def topic_settings(self):  # type: ignore[no-untyped-def]
        """Settings naming this spec's topics (to create them before a worker starts)."""
        from jiancha.settings import WorkerSettings

        return WorkerSettings.load(broker_url=self.stack.broker_url, events_topic=self.events_topic,
                             dlq_topic=self.dlq_topic, complaints_topic=self.complaints_topic,
                             complaints_dlq_topic=self.complaints_dlq_topic,
                             topic_partitions=self.partitions)

    def backfill(self, events: list, clock: Any,  # type: ignore[type-arg]
                 read_at: list | None = None) -> None:  # type: ignore[type-arg]
        """Create the topics, then send contract events each stamped with the (simulated)
        time it happened, as if reported on the spot, or with its ``read_at`` (the time it
        reached Kafka): a backlog the worker catches up on."""
        from dataclasses import replace

        from jiancha.agents.topics import ensure_topics
        from jiancha.producers.client import DepartmentProducer

        async def go() -> None:
            await ensure_topics(self.topic_settings())
            async with DepartmentProducer(self.stack.bootstrap, None, topic=self.events_topic) as p:
                acks = []
                for i, e in enumerate(events):
                    sent = e.occurred_at if read_at is None else read_at[i]
                    ts = int(clock.real_time_of(sent) * 1000)
                    acks.append(await p.submit_encoded(replace(p.encode(e), timestamp_ms=ts)))
                await asyncio.gather(*acks)

        asyncio.run(go())

    @property
    def prefix(self) -> str:
        return f"t{self.tag}:"

    def env(self, web_port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JIANCHA_")}
        env.update(self.stack.env())
        env.update({
            "JIANCHA_APP_ID": self.app_id,
            "JIANCHA_EVENTS_TOPIC": self.events_topic,
            "JIANCHA_DLQ_TOPIC": self.dlq_topic,
            "JIANCHA_COMPLAINTS_TOPIC": self.complaints_topic,
            "JIANCHA_COMPLAINTS_DLQ_TOPIC": self.complaints_dlq_topic,
            "JIANCHA_TOPIC_PARTITIONS": str(self.partitions),
            "JIANCHA_REDIS_PREFIX": self.prefix,
            "JIANCHA_CATALOG_DIR": str(TEST_CATALOG),
            "JIANCHA_WEB_PORT": str(web_port),
            "JIANCHA_DATA_DIR": str(self.stack.workdir / f"data-{self.tag}-{web_port}"),
            "JIANCHA_KAFKA_REBALANCE_TIMEOUT_SECONDS": "4",
            "JIANCHA_KAFKA_SESSION_TIMEOUT_SECONDS": "6",
            "JIANCHA_DEADLINE_TICK_SECONDS": "0.1",
        })
        env.update(self.extra_env)
        return env

    def start_worker(self, name: str = "worker", wait: bool = True) -> Worker:
        port = free_port()
        proc = spawn(f"{name}-{self.tag}-{port}",
                     [sys.executable, "-m", "jiancha.cli", "worker", "--loglevel", "WARNING"],
                     self.stack.workdir, env=self.env(port))
        worker = Worker(proc, port)
        if wait:
            worker.wait_ready()
        return worker

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.stack.redis_port, decode_responses=True)

    def alerts(self) -> list[dict]:
        r = self.redis()
        return [json.loads(fields["alert"]) for _, fields in r.xrange(f"{self.prefix}alerts")]

    def wait_alerts(self, predicate, timeout: float = 30.0) -> list[dict]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alerts = self.alerts()
            if predicate(alerts):
                return alerts
            time.sleep(0.1)
        raise AssertionError(f"condition not met in {timeout}s; alerts: {self.alerts()}")

    def send(self, events: list[dict], raw: list[tuple[bytes | None, bytes]] = ()) -> None:  # type: ignore[assignment]
        from aiokafka import AIOKafkaProducer

        async def go() -> None:
            p = AIOKafkaProducer(bootstrap_servers=self.stack.bootstrap)
            await p.start()
            try:
                for e in events:
                    await p.send_and_wait(self.events_topic, json.dumps(e).encode(),
                                          key=e["case_id"].encode())
                for key, value in raw:
                    await p.send_and_wait(self.events_topic, value, key=key)
            finally:
                await p.stop()

        asyncio.run(go())


@dataclass
class Worker:
    proc: ManagedProcess
    web_port: int

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/health", timeout=2) as r:
            return json.loads(r.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=2) as r:
            return r.read().decode()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.proc.log_path.read_text()[-3000:]}")
            try:
                if self.health().get("ready"):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready:\n{self.proc.log_path.read_text()[-3000:]}")

    def log(self) -> str:
        return self.proc.log_path.read_text()

    def stop(self) -> None:
        self.proc.stop(timeout=30)


@pytest.fixture
def spec(stack: EmbeddedStack) -> WorkerSpec:
    return WorkerSpec(stack)
