"""The worker keeps the states of the cases it wrote last decoded, and takes one only while
the case table still holds the very record it wrote."""

from __future__ import annotations

import asyncio

import orjson

from jiancha.agents.decoded_cases import DecodedCases
from jiancha.agents.record import Record
from jiancha.rules.case import CaseState, Fact
from jiancha.rules.state_codec import decode_state, encode_state
from tests.unit.eventkit import events
from tests.unit.test_worker_parts import Worker


def test_a_state_is_taken_only_for_the_record_it_was_written_as_and_only_once() -> None:
    kept = DecodedCases(2)
    state = CaseState("C1", "T-SHORT")
    record = b"\x02the record"
    kept.put(b"C1", record, state)
    assert kept.take(b"C1", bytes(bytearray(record))) is None  # equal bytes, another record
    kept.put(b"C1", record, state)
    assert kept.take(b"C1", record) is state
    assert kept.take(b"C1", record) is None and len(kept) == 0


def test_the_least_recently_written_leave_first() -> None:
    kept = DecodedCases(2)
    records = {k: k + b"-record" for k in (b"A", b"B", b"C")}
    for k in (b"A", b"B", b"A", b"C"):  # A written again after B: B is the oldest
        kept.put(k, records[k], CaseState(k.decode(), "T-SHORT"))
    assert kept.take(b"B", records[b"B"]) is None
    assert kept.take(b"A", records[b"A"]) is not None
    assert kept.take(b"C", records[b"C"]) is not None
    nothing = DecodedCases(0)
    nothing.put(b"A", records[b"A"], CaseState("A", "T-SHORT"))
    assert len(nothing) == 0


def _reviewed(w: Worker, offset: int) -> None:
    (ev,) = events("T-SHORT", [("reviewed", "2026-03-02 11:30")], case_id="P1")
    ev["event_id"] = f"rev-{offset}"
    asyncio.run(w.intake.on_batch([Record(b"P1", orjson.dumps(ev), 0, offset, None)]))


def test_the_next_batch_of_a_case_takes_its_state_as_the_last_one_wrote_it() -> None:
    w = Worker()  # P1 submitted and accepted in one batch
    record = w.cases.data[b"P1"]
    held = w.sv.decoded.take(b"P1", record)
    assert held is not None and len(held.facts) == 2
    w.sv.decoded.put(b"P1", record, held)
    _reviewed(w, 2)
    assert w.sv.decoded.take(b"P1", w.cases.data[b"P1"]) is held and len(held.facts) == 3
    # what is written is what decoding the record would have written
    plain = Worker()
    plain.sv.decoded = DecodedCases(0)
    _reviewed(plain, 2)
    assert w.cases.data[b"P1"] == plain.cases.data[b"P1"]


def test_a_case_the_table_holds_another_record_of_is_decoded_from_it() -> None:
    """Another writer (a deadline tick, a recovery) replaced the record: the state kept is
    not the case's any more."""
    w = Worker()
    record = w.cases.data[b"P1"]
    held = w.sv.decoded.take(b"P1", record)
    assert held is not None
    stale = Fact("stale-1", held.facts[0].step, held.facts[0].at, "x", "y", {}, held.facts[0].at)
    held.facts.append(stale)  # what the table's record does not hold
    w.sv.decoded.put(b"P1", record, held)
    w.cases.data[b"P1"] = bytes(bytearray(record))  # the same case, written anew
    _reviewed(w, 2)
    after = decode_state(w.cases.data[b"P1"], b"P1")
    assert [f.event_id for f in after.facts] == [f.event_id for f in held.facts[:2]] + ["rev-2"]
    assert encode_state(after) == w.cases.data[b"P1"]
