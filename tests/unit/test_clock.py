"""The clocks' epoch readings (the repartition judges every record with them) agree with
their datetime readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from jiancha.rules.clock import Clock, EventTimeClock, SimulatedClock, WallClock

SHANGHAI = timezone(timedelta(hours=8))


@pytest.mark.parametrize("clock", [
    WallClock(),
    SimulatedClock(datetime(2026, 3, 2, 9, tzinfo=SHANGHAI), speed=60.0, anchor=1_700_000_000.5),
    EventTimeClock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC)),
], ids=["wall", "simulated", "event-time"])
def test_epoch_readings_match_datetime_readings(clock: Clock) -> None:
    for unix_time in (1_700_000_000.5, 1_700_003_600.25, 1_800_000_000.0):
        assert clock.at_epoch(unix_time) == pytest.approx(clock.at(unix_time).timestamp(), abs=1e-6)
    before = clock.now().timestamp()
    reading = clock.now_epoch()
    after = clock.now().timestamp()
    assert before - 1e-6 <= reading <= after + 1e-6


def test_event_time_clock_keeps_its_epoch_with_its_moves() -> None:
    clock = EventTimeClock()
    moves = [datetime(2026, 3, 2, 9, 30, tzinfo=SHANGHAI), datetime(2026, 3, 2, 1, 29, tzinfo=UTC),
             datetime(2026, 3, 2, 1, 31, tzinfo=UTC), datetime(2026, 3, 2, 9, 31, tzinfo=SHANGHAI)]
    for i, instant in enumerate(moves):
        # given or not, the epoch decides the same way a datetime comparison would
        clock.advance(instant, instant.timestamp() if i % 2 else None)
        assert clock.now() == max(moves[: i + 1])
        assert clock.now_epoch() == clock.now().timestamp()
    assert clock.now() is moves[2]  # an equal instant in another zone does not replace it
