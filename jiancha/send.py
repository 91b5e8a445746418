"""Send a JSON Lines file of approval-step events (``jiancha send events.jsonl``).

Every line is validated on its own: a bad line is reported with its line number and the
fields at fault, and the other lines are still sent, keyed by ``case_id`` and signed with
their department's key when the keys file has one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from aiokafka.structs import RecordMetadata
from rich.console import Console
from rich.progress import Progress

from jiancha.producers.client import ProducerDeliveryError, ProducerValidationError, producer_from_config
from jiancha.producers.keys import DepartmentKeys

if TYPE_CHECKING:
    from jiancha.settings import ProducerSettings

__all__ = ["SendReport", "send_file"]


@dataclass
class SendReport:
    sent: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)
    #: valid events the broker did not acknowledge (also listed in ``errors``)
    failed: int = 0

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.failed


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


async def send_file(
    path: Path,
    settings: ProducerSettings,
    *,
    progress: bool = True,
    keys: DepartmentKeys | None = None,
) -> SendReport:
    """Validate, sign and send every line of ``path`` to ``settings.events_topic``."""
    path = Path(path)
    report = SendReport()
    total = _count_lines(path)
    bar = Progress(console=Console(stderr=True), disable=not progress, transient=False)
    task = bar.add_task(f"sending {path.name}", total=total)

    def delivered(lineno: int, event_id: str, fut: asyncio.Future[RecordMetadata]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if fut.cancelled() or exc is not None:
            report.failed += 1
            report.errors.append(f"line {lineno}: event {event_id} not delivered: {exc}")
        else:
            report.sent += 1
        bar.advance(task)

    def invalid(lineno: int, why: str) -> None:
        report.invalid += 1
        report.errors.append(f"line {lineno}: {why}")
        bar.advance(task)

    producer = producer_from_config(settings.producer_config(), department=None, keys=keys)
    with bar:
        await producer.start()
        try:
            with path.open("rb") as fh:
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        raw = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        invalid(lineno, f"not valid JSON ({exc})")
                        continue
                    try:
                        record = producer.encode(raw)
                    except ProducerValidationError as exc:
                        invalid(lineno, "; ".join(f"{f}: {m}" for f, m in exc.problems))
                        continue
                    try:
                        fut = await producer.submit_encoded(record)
                    except ProducerDeliveryError as exc:
                        report.failed += 1
                        report.errors.append(f"line {lineno}: event {record.event_id} "
                                             f"not delivered: {exc.failures[0][1]}")
                        bar.advance(task)
                        continue
                    fut.add_done_callback(lambda f, n=lineno, e=record.event_id: delivered(n, e, f))
            await producer.flush()
        finally:
            await producer.stop()
    return report
