"""An alert's wire JSON (``Alert.to_json``) is pydantic's JSON mode byte for byte, whatever
its times' zones and precision and whatever its details hold."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from jiancha.producers.contract import Alert


class Colour(enum.Enum):
    red = "red"


zones = st.one_of(st.just(UTC), st.integers(-14 * 60, 14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))))
instants = st.builds(lambda d, z: d.replace(tzinfo=z),
                     st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
                     zones)
leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                   st.dates(min_value=date(1990, 1, 1)), instants, st.just(Colour.red),
                   st.text("ab", max_size=3).map(str.encode), st.frozensets(st.integers(0, 3), max_size=2))
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers(0, 9)), inner, max_size=3)),
    max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(instants, instants, st.dictionaries(st.text(max_size=6), values, max_size=4),
       st.lists(st.text(max_size=6), max_size=3), st.one_of(st.none(), st.text(max_size=5)))
def test_the_wire_json_is_pydantics(detected: datetime, event_time: datetime,
                                    details: dict[str, Any], evidence: list[str],
                                    actor: str | None) -> None:
    alert = Alert(alert_id="a-1", rule="deadline.legal_broken", severity="red", case_id="C1",
                  actor=actor, detected_at=detected, event_time=event_time, message_zh="文",
                  message_en="text", legal_basis="basis", evidence=evidence, details=details)
    for a in (alert, alert.model_copy(update={"status": "retracted"})):
        assert _written(a.to_json) == _written(lambda a=a: orjson.dumps(a.model_dump(mode="json")))


def _written(write: Any) -> bytes | str:
    """The JSON, or the error's type when there is none (an integer beyond 64 bits)."""
    try:
        return bytes(write())
    except TypeError as exc:
        return type(exc).__name__
