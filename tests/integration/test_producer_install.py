"""The producer library installed alone: a fresh virtual environment with ``pip install
jiancha`` (no extras) imports ``jiancha.producers`` without the engine's dependencies and
sends a signed approval event to the broker, which this test reads and verifies."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from jiancha.embedded import EmbeddedStack
from jiancha.producers.contract import parse_event, verify_signature
from tests.events import event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "gongan-key-2026"
#: what the engine needs and a department does not
ENGINE_ONLY = ("faust", "redis", "pydantic_settings", "typer", "rich", "chinese_calendar",
               "prometheus_client", "aiohttp")

PROBE = """
import importlib.util, json, sys
import jiancha.producers.client, jiancha.producers.complaints, jiancha.producers.config
spec = importlib.util.find_spec("jiancha.settings")
print(json.dumps({
    "importable": [m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None],
    "top_level": [m for m in ("settings", "rules", "agents", "producers")
                  if importlib.util.find_spec(m) is not None],
    "settings_file": spec.origin if spec else None,
}))
"""

DEPARTMENT_SYSTEM = """
import asyncio, json, sys
from jiancha.producers.client import producer_from_config
from jiancha.producers.config import ProducerConfig

async def main() -> None:
    config = ProducerConfig.from_env()
    async with producer_from_config(config, "gongan") as producer:
        await producer.send_and_wait(json.loads(sys.stdin.read()))

asyncio.run(main())
"""


def _copy_of_the_repository(where: Path) -> Path:
    """The working tree without what is not the source (the build writes into it); the link
    jiancha/settings.py stays a link, as in a checkout."""
    src = where / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        "node_modules", "tests", "deploy", "docs", ".jiancha"))
    return src


@pytest.fixture(scope="module")
def producer_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("producer-install")
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    python = where / "venv" / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         str(_copy_of_the_repository(where))],
        capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    yield python  # run it outside the repository, whose jiancha/ would shadow the installed one


def test_the_base_install_is_the_producer_library_alone(producer_venv: Path) -> None:
    probe = subprocess.run([str(producer_venv), "-c", PROBE, *ENGINE_ONLY], cwd=producer_venv.parent,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["importable"] == [], f"engine dependencies in the base install: {found['importable']}"
    assert found["top_level"] == [], "only `jiancha` is a top-level name"
    # the wheel holds the settings module's text, not the repository's link to it
    settings_file = Path(found["settings_file"])
    assert not settings_file.is_symlink()
    assert settings_file.read_text(encoding="utf-8") == (ROOT / "settings.py").read_text(encoding="utf-8")


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


async def _read_one(bootstrap: str, topic: str, timeout: float = 20.0) -> tuple[bytes, bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                record = records[0]
                assert record.key is not None and record.value is not None
                return record.key, record.value
    finally:
        await consumer.stop()
    raise AssertionError(f"nothing arrived on {topic} in {timeout}s")


def test_a_department_sends_a_signed_event_from_the_base_install(
    producer_venv: Path, stack: EmbeddedStack, tmp_path: Path
) -> None:
    topic = f"events-install-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_topic(stack.bootstrap, topic))
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"gongan: {KEY}\n", encoding="utf-8")
    sent = event("GA-2026-000001", "submitted", "2026-11-30 10:00", department="gongan")
    env = {"PATH": "/usr/bin:/bin", "JIANCHA_BROKER_URL": stack.broker_url,
           "JIANCHA_EVENTS_TOPIC": topic, "JIANCHA_DEPARTMENT_KEYS_FILE": str(keys)}

    run = subprocess.run([str(producer_venv), "-c", DEPARTMENT_SYSTEM], input=json.dumps(sent),
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr

    key, value = asyncio.run(_read_one(stack.bootstrap, topic))
    received = orjson.loads(value)
    assert key == b"GA-2026-000001"
    assert verify_signature(received, [KEY.encode()])
    assert not verify_signature(received, [b"another key"])
    assert parse_event(value).event_id == sent["event_id"]
