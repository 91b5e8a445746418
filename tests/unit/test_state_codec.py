"""Case states in the table: format 2 (msgpack) gives back exactly the state encoded, and
records of the earlier formats (1, and orjson) are still read (a table an older worker
wrote)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.record import Record
from jiancha.agents.supervisor import Supervisor
from jiancha.producers.contract import Step, parse_event
from jiancha.rules.case import CaseState, Fact
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.ingest import Gate
from jiancha.rules.state_codec import (
    APPLICANT,
    ATTRIBUTE_CODES,
    FORMAT,
    decode_state,
    encode_state,
)
from tests.events import event
from tests.unit.test_gate_worker import ENGINE, NOW, MemorySink

SAMPLE = Path(__file__).parent.parent / "fixtures" / "case_state_orjson.json"
#: records of format 1 with what they hold (``exactly``): states of the strategies below
FORMAT_1 = Path(__file__).parent.parent / "fixtures" / "case_states_format1.jsonl"
T0 = 1_794_790_800.0  # 2026-11-16 09:00 +08:00

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)
NAMES = st.sampled_from(["applicant", "gongan", "gongan-h1", "gongshang", "h2", "", "经办人-1"])
#: times as the engine has them: whole seconds, Kafka milliseconds, microseconds, any double
TIMES = st.one_of(
    st.integers(-3 * 86400, 90 * 86400).map(lambda s: T0 + s),
    st.integers(-10**10, 10**10).map(lambda ms: (int(T0) * 1000 + ms) / 1000),
    st.integers(0, 10**12).map(lambda us: T0 + us / 1e6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -1.5, 2.0**53, 2.0**60, 1e300, -1e-300]))
#: numbered ids (``dept-17``, a department's own, leading zeros, beyond 64 bits) and any
#: other text
EVENT_IDS = st.text("ab-120", max_size=6) | st.text(max_size=130) | st.builds(
    lambda stem, n, zeros: f"{stem}{'0' * zeros}{n}",
    st.sampled_from(["gongan-", "", "x1y", "gongan-h1-", "-", "经办人-1-"]),
    st.integers(0, 10**20), st.integers(0, 2))
#: applicant ids: hashes as the simulator and the bench write them, and near misses
APPLICANT_IDS = st.one_of(
    st.binary(max_size=33).map(bytes.hex), st.binary(max_size=33).map(lambda b: f"sha256:{b.hex()}"),
    st.sampled_from(["sha256:", "sha256:ABCD", "abc", "ab cd", "sha256:0g", "sha256:sha256:ab"]),
    st.text(max_size=8))


@st.composite
def facts(draw: st.DrawFn) -> Fact:
    at = draw(TIMES)
    received = draw(st.sampled_from([at]) | TIMES | st.integers(0, 10**7).map(
        lambda ms: at + ms / 1000))
    attrs = draw(st.dictionaries(st.sampled_from(ATTRIBUTE_CODES) | st.text(max_size=6), JSON,
                                 max_size=4))
    if draw(st.booleans()):
        attrs["applicant_id"] = draw(APPLICANT_IDS)
    return Fact(draw(EVENT_IDS), draw(st.sampled_from(list(Step))), at, draw(NAMES),
                draw(NAMES), attrs, received)


STATES = st.builds(
    CaseState, st.text(max_size=40), st.text(max_size=20), st.integers(-1, 2**31),
    st.lists(facts(), max_size=8),
    st.dictionaries(st.text(max_size=30), st.integers(0, 3), max_size=4),
    st.dictionaries(st.text(max_size=30), st.text(max_size=20), max_size=4))


def exactly(state: CaseState) -> list[Any]:
    """Everything a state holds, with the types of its numbers (1.0 is not 1)."""
    return [state.case_id, state.item_code, state.partition, state.raised, state.sources,
            [(f.event_id, f.step, repr(f.at), f.actor, f.department, repr(f.attrs),
              repr(f.received)) for f in state.facts]]


@settings(max_examples=300, deadline=None, database=None)
@given(STATES)
def test_a_state_comes_back_exactly(state: CaseState) -> None:
    raw = encode_state(state)
    assert raw[0] == FORMAT
    assert exactly(decode_state(raw, state.case_id)) == exactly(state)
    assert exactly(decode_state(raw, state.case_id.encode())) == exactly(state)


def fresh(state: CaseState, facts: list[Fact] | None = None) -> CaseState:
    """A copy of ``state`` with nothing written yet (``facts``: in place of its own)."""
    return CaseState(state.case_id, state.item_code, state.partition,
                     list(state.facts if facts is None else facts), dict(state.raised),
                     dict(state.sources))


@settings(max_examples=300, deadline=None, database=None)
@given(STATES, st.data())
def test_a_state_written_again_writes_its_new_facts_as_a_whole_record_would(
        state: CaseState, data: st.DataObject) -> None:
    """The worker writes a case after each batch that touched it: only the facts added
    since are encoded, from the state's own last write or from the record it was read
    from, and the record is the one the whole state would make."""
    facts = state.facts
    cuts = sorted(data.draw(st.lists(st.integers(0, len(facts)), max_size=3)))
    growing = fresh(state, facts[:cuts[0]] if cuts else facts)
    for cut in [*cuts[1:], len(facts)]:
        assert encode_state(growing) == encode_state(fresh(growing))
        if data.draw(st.booleans()):  # read back from its record, as the next batch does
            growing = decode_state(encode_state(growing), state.case_id)
        growing.facts.extend(facts[len(growing.facts):cut])
    assert encode_state(growing) == encode_state(state) == encode_state(fresh(state))
    assert exactly(decode_state(encode_state(growing), state.case_id)) == exactly(state)


def test_a_state_whose_facts_were_replaced_is_written_whole() -> None:
    first = Fact("gongan-1", Step.submitted, T0, APPLICANT, "gongan", {}, T0)
    state = CaseState("C1", "GA-0002", 0, [first])
    encode_state(state)
    other = Fact("x-9", Step.accepted, T0 + 60, "h1", "gongshang", {"days": 3}, T0 + 61)
    for facts in ([other], [], [other, first]):
        state.facts = list(facts)
        assert encode_state(state) == encode_state(fresh(state))


def test_a_record_that_keeps_nothing_is_of_the_facts_as_they_are_now() -> None:
    """Sharded replay sets a fact's ``received`` after the gate may have encoded its case
    (the size of a large event's case): that record keeps nothing."""
    first = Fact("gongan-1", Step.submitted, T0, APPLICANT, "gongan", {}, T0)
    state = CaseState("C1", "GA-0002", 0, [first])
    provisional = encode_state(state, keep=False)
    assert state.written is None
    first.received = T0 + 3.5  # when its line was read, known now
    assert encode_state(state) == encode_state(fresh(state)) != provisional


def test_a_record_of_format_1_is_read_and_written_anew() -> None:
    for line in FORMAT_1.read_text().splitlines():
        record = orjson.loads(line)
        raw = bytes.fromhex(record["record"])
        assert raw[0] == 1
        state = decode_state(raw)
        assert repr(exactly(state)) == record["state"]
        again = encode_state(state)
        assert again[0] == FORMAT
        assert repr(exactly(decode_state(again, state.case_id))) == record["state"]


def test_a_record_of_format_2_is_read_with_its_key() -> None:
    state = CaseState("C1", "GA-0002", 0, [Fact("gongan-1", Step.submitted, T0, APPLICANT,
                                                  "gongan", {}, T0)])
    with pytest.raises(ValueError, match="with its key"):
        decode_state(encode_state(state))


def test_a_record_of_the_orjson_format_is_read_and_written_anew() -> None:
    raw = SAMPLE.read_bytes().rstrip(b"\n")
    state = decode_state(raw, "not read: the record holds its id")
    assert exactly(state) == exactly(CaseState.decode(raw))
    assert (state.case_id, state.item_code, state.partition) == ("GZ2026-0002030", "GS-0006", 5)
    assert len(state.facts) == 13 and state.facts[0].step is Step.submitted
    assert state.facts[1].received == state.facts[1].at + 3.217
    assert state.sources == {"sup-6e799c57f848a56e88336334": "supplement.repeated"}
    again = encode_state(state)
    assert again[0] == FORMAT and exactly(decode_state(again, state.case_id)) == exactly(state)
    assert len(again) < len(raw) / 2


def test_an_open_case_takes_few_bytes() -> None:
    """An open case as the bench measures it (submitted, accepted, reviewed)."""
    facts = [Fact(f"gongan-{370368 + i}", step, T0, actor, "gongan", attrs, T0)
             for i, (step, actor, attrs) in enumerate([
                 (Step.submitted, "applicant", {"applicant_id": "sha256:0123456789abcdef"}),
                 (Step.accepted, "gongan-h1", {}),
                 (Step.reviewed, "gongan-h1", {"opinion": "agree"})])]
    state = CaseState("GZ2026-00123456", "GA-0002", 3, facts)
    assert len(encode_state(state)) <= 72 < len(state.encode()) / 4


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format 3 is unknown"):
        decode_state(b"\x03\x90", "C1")


def test_the_worker_reads_an_orjson_record_and_writes_the_case_anew() -> None:
    """A table an older worker wrote: the case's next event finds its facts (a repeat is
    refused) and leaves the case in the current format."""
    first = event("C1", "submitted", "2026-11-30 09:00", event_id="e1")
    old = ENGINE.ingest(None, parse_event(first), parse_event(first).occurred_at)
    old.partition = 0
    table = {b"C1": old.encode()}
    clock = SimulatedClock(NOW, 1.0, time.time())
    worker = Supervisor(ENGINE, Gate(ENGINE.catalog), clock, MemorySink(), EngineMetrics())
    dead: list[str] = []

    async def dead_letter(record: Record, reason: str, detail: str) -> None:
        dead.append(reason)

    for doc in (first, event("C1", "accepted", "2026-11-30 10:00", event_id="e2")):
        asyncio.run(worker.on_event(b"C1", orjson.dumps(doc), 0, 1, None, table, dead_letter))
    assert dead == ["duplicate_event_id"]
    assert table[b"C1"][0] == FORMAT
    assert [f.event_id for f in decode_state(table[b"C1"], b"C1").facts] == ["e1", "e2"]
