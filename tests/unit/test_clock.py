"""The clocks' epoch readings (the repartition judges every record with them) agree with
their datetime readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from rules.clock import Clock, EventTimeClock, SimulatedClock, WallClock

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
