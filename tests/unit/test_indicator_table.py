"""The worker's indicator book (agents/indicators.py ``TableBook``): what it writes to its
table over several commit intervals is what replay's book counts, whether an accumulator
it wrote is taken again as it is or read back from the table (a recovery)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from jiancha.agents.indicators import TableBook
from jiancha.rules.factory import build_engine
from jiancha.rules.indicators import Acc, IndicatorBook
from jiancha.rules.ingest import Gate
from jiancha.rules.replay import replay
from tests.unit.eventkit import TEST_CATALOG
from tests.unit.test_indicators import UNTIL, october


class _Table:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}


class _Changelog:
    """Writes the table's store, as ``CoalescedChangelog.set`` does."""

    def __init__(self, table: _Table) -> None:
        self.table = table

    def set(self, key: bytes, value: bytes, partition: int) -> None:
        self.table.data[key] = value

    def send(self) -> None:
        return None


def _counted_in_table(recover_every: int | None) -> dict[tuple[Any, ...], Acc]:
    """The month's events into a table book, its pending updates written after every
    event; with ``recover_every``, every so many events the table's values are replaced by
    copies of themselves (as a recovery reads them from the changelog)."""
    eng = build_engine(TEST_CATALOG)
    table = _Table()
    book = TableBook(eng, table, _Changelog(table))
    book.partition = 3
    gate = Gate(eng.catalog)
    states: dict[str, Any] = {}
    for i, raw in enumerate(orjson.dumps(x) for x in october()):
        if b'"complaint_id"' in raw:
            continue
        event = gate.parse(raw, None)
        state = states[event.case_id] = eng.ingest(states.get(event.case_id), event,
                                                   event.occurred_at)
        counted = book.counted(event, state)
        if counted is not None:
            book.add(counted)
        book.write_pending()
        if recover_every and i % recover_every == 0:
            table.data = {k: bytes(bytearray(v)) for k, v in table.data.items()}
    return {tuple(orjson.loads(k)): Acc.decode(v) for k, v in table.data.items()}


def test_the_table_counts_what_replay_counts_whether_or_not_it_is_read_back() -> None:
    eng = build_engine(TEST_CATALOG)
    book = IndicatorBook(eng)
    replay((orjson.dumps(x) for x in october() if "complaint_id" not in x), eng,
           datetime.fromisoformat(UNTIL), indicators=book)
    expected = {(*key, 3): acc for key, acc in book.store.items()
                if acc.received or acc.accepted or acc.decided or acc.supplement}
    for acc in expected.values():
        acc.alerts = {}  # counted by the alert store in the worker
    kept = _counted_in_table(None)
    assert kept == expected
    assert _counted_in_table(2) == kept


def test_a_value_the_table_took_from_elsewhere_is_read_back() -> None:
    """An accumulator written is taken again as it is only while the table holds the value
    written: after a recovery put another there, or while its partition was away and its
    update not written, it is read from the table."""
    eng = build_engine(TEST_CATALOG)
    table = _Table()
    owned: set[int] | None = None
    book = TableBook(eng, table, _Changelog(table), lambda: owned)
    book.partition = 0
    gate = Gate(eng.catalog)
    submitted = next(x for x in october() if x.get("step") == "submitted")
    event = gate.parse(orjson.dumps(submitted), None)
    state = eng.ingest(None, event, event.occurred_at)
    counted = book.counted(event, state)
    assert counted is not None

    def received() -> int:
        [key] = [k for k in table.data if orjson.loads(k)[1] == "department"]
        return Acc.decode(table.data[key]).received

    book.add(counted)
    book.write_pending()
    book.add(counted)
    book.write_pending()
    assert received() == 2
    [key] = [k for k in table.data if orjson.loads(k)[1] == "department"]
    table.data[key] = Acc(received=100).encode()  # a recovery
    book.add(counted)
    book.write_pending()
    assert received() == 101
    owned = set()  # the partition moved away: the update is not written
    book.add(counted)
    book.write_pending()
    owned = None  # and back, its value as it was
    book.add(counted)
    book.write_pending()
    assert received() == 102


@settings(max_examples=300, deadline=None)
@given(counts=st.lists(st.integers(0, 10**9), min_size=10, max_size=10),
       days=st.dictionaries(st.integers(0, 10**6), st.integers(1, 10**4), max_size=40),
       alerts=st.dictionaries(st.sampled_from(["a.b", "c.d", "e"]), st.dictionaries(
           st.sampled_from(["yellow", "red", "escalated"]), st.integers(-5, 50)), max_size=3))
def test_an_accumulator_is_written_as_sorted_json_and_read_back(
        counts: list[int], days: dict[int, int], alerts: dict[str, dict[str, int]]) -> None:
    """Its record: the counts that are not zero, the histogram keyed by strings, keys
    sorted (as strings) at every level, as the table's records and the Redis mirror hold
    them."""
    acc = Acc(**dict(zip(Acc._INTS, counts, strict=True)), days=days, alerts=alerts)
    written: dict[str, Any] = {n: c for n, c in zip(Acc._INTS, counts, strict=True) if c}
    if days:
        written["days"] = {str(k): v for k, v in days.items()}
    if alerts:
        written["alerts"] = alerts
    assert acc.encode() == orjson.dumps(written, option=orjson.OPT_SORT_KEYS)
    assert Acc.decode(acc.encode()) == acc
