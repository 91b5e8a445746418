"""A fact's epoch seconds: summed from the time's fields for a fixed-offset zone, the same
float as ``datetime.timestamp()`` to the last bit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from jiancha.producers.contract import Step
from jiancha.rules.case import Fact
from jiancha.rules.ingest import GateEvent

OFFSETS = st.one_of(
    st.just(UTC), st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m))),
    st.integers(-86_399_999_999, 86_399_999_999).map(
        lambda us: timezone(timedelta(microseconds=us))))


def _event(when: datetime) -> GateEvent:
    return GateEvent(1, "e-1", "C-1", "T-SHORT", "gongan", Step.accepted, when, "clerk")


@settings(max_examples=3000, deadline=None, database=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), OFFSETS)
def test_a_facts_time_is_the_timestamp(local: datetime, zone: timezone) -> None:
    when = local.replace(tzinfo=zone)
    for _ in range(2):  # the zone's offset unknown, then known
        fact = Fact.from_event(_event(when), when)
        assert fact.at == when.timestamp() == fact.received, when
        assert Fact.from_event(_event(when), when + timedelta(seconds=1)).received \
            == (when + timedelta(seconds=1)).timestamp()


def test_a_zone_with_rules_is_asked_each_time() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    for when in (datetime(2026, 3, 29, 1, 59, tzinfo=berlin), datetime(2026, 3, 29, 3, 0,
                                                                     tzinfo=berlin),
                 datetime(2026, 7, 1, 12, 0, tzinfo=berlin), datetime(2026, 12, 1, tzinfo=berlin)):
        assert Fact.from_event(_event(when), when).at == when.timestamp()
