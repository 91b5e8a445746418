"""The window records' forwarding in the worker (agents/windows.py ``Repartition``): a
batch of records handed over at once comes back in order from the messages sent, one per
department and at most ``BATCH_MAX`` records each; a rejected record moves the upstream
progress only; the watermark's progress counts a forwarded record once it is sent."""

from __future__ import annotations

from typing import Any

from jiancha.agents import windows
from jiancha.agents.record import Record
from jiancha.agents.windows import BATCH_MAX, Repartition
from jiancha.rules.clock import SimulatedClock
from tests.unit.eventkit import t


class _Target:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes, float]] = []

    def get_topic_name(self) -> str:
        return "windows-by-department"

    def send_soon(self, key: bytes, value: bytes, timestamp: float | None = None,
                  partition: int | None = None) -> None:
        self.sent.append((key, value, timestamp or 0.0))


class _Message:
    def __init__(self, value: bytes) -> None:
        self.value = value


def test_a_batch_of_records_comes_back_in_order_per_department() -> None:
    clock = SimulatedClock(t("2026-03-20 09:00"), 1.0, 1_000_000.0)
    target = _Target()
    rep = Repartition(Any, clock, "events", target, 8)  # type: ignore[arg-type]
    now = clock.at_epoch(1_000_200.0)
    records: list[tuple[Any, str | None, Any]] = []
    for i in range(2 * BATCH_MAX + 3):
        department = "gongan" if i % 4 else "shuiwu"
        records.append((Record(b"C", b"{}", i % 2, i, 1_000_000.0 + i / 10),
                        None if i == 5 else department, [f"e-{i}", i]))
    rep.forward_batched(records, now)
    assert target.sent  # a department's batch full: sent at once
    rep.flush_batches()
    back: dict[bytes, list[Any]] = {}
    for key, value, stamp in target.sent:
        got = rep.batch(_Message(value))
        assert got is not None and 0 < len(got) <= BATCH_MAX
        assert stamp == max(r[0] for r in got)
        back.setdefault(key, []).extend(got)
    assert len(target.sent) > len(back)  # more than one message for a department
    for department in ("gongan", "shuiwu"):
        expected = [[1_000_000.0 + i / 10, i % 2, i, [f"e-{i}", i]]
                    for i, (_, d, _) in enumerate(records) if d == department]
        assert back[department.encode()] == expected
    # every partition's progress: its last record, judged by the clock, once sent
    last = {0: 2 * BATCH_MAX + 2, 1: 2 * BATCH_MAX + 1}
    assert rep.up_time == {p: clock.at_epoch(1_000_000.0 + i / 10) for p, i in last.items()}
    assert rep.up_offset == last


def test_a_rejected_record_moves_the_progress_only() -> None:
    clock = SimulatedClock(t("2026-03-20 09:00"), 1.0, 1_000_000.0)
    target = _Target()
    rep = Repartition(Any, clock, "events", target, 8)  # type: ignore[arg-type]
    rep.forward_batched([(Record(b"C", b"x", 3, 7, 1_000_050.0), None, None)],
                        clock.at_epoch(1_000_100.0))
    assert rep.up_offset == {3: 7} and rep.up_time == {3: clock.at_epoch(1_000_050.0)}
    rep.flush_batches()
    assert target.sent == []


def test_an_unreadable_batch_is_skipped() -> None:
    rep = Repartition(Any, SimulatedClock(t("2026-03-20 09:00")), "events", _Target(), 8)  # type: ignore[arg-type]
    assert rep.batch(_Message(windows.BATCH + b"{not json")) == []
    assert rep.batch(_Message(windows.BATCH + b'{"a": 1}')) == []
