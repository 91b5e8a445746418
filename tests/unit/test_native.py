"""The compiled part of the rules (``rules/_native.c``) against the Python it replaces.

``rules.state_codec.read_facts`` and ``write_entry`` are the compiled reader of a record's
facts and writer of a fact's entry where the extension was built, else ``read_facts_py``
and ``write_entry_py``; the Python functions are the oracle. Every record reads the same
either way (each fact's values and their types, the context the next fact is written in)
and every state is written to the same bytes; an entry no record of this engine holds
fails the same way, and a fact the writer leaves to Python (a time that is no float) is
written by Python.
"""

from __future__ import annotations

import shutil
import struct
import sysconfig
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.msgpack import Ext

from jiancha.rules import state_codec
from jiancha.rules.case import CaseState, Fact
from jiancha.rules.state_codec import (
    _Fact,
    _Written,
    decode_state,
    encode_state,
    read_facts_py,
    write_entry_py,
)
from jiancha.rules.summary import summary_from_facts
from tests.unit.test_state_codec import STATES, facts

NATIVE = state_codec._compiled()
COMPILED = None if NATIVE is None else NATIVE.read_facts


def _c_compiler() -> str | None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(compiler)


def test_the_compiled_part_is_built_and_used_where_there_is_a_c_compiler() -> None:
    if _c_compiler() is None:
        pytest.skip("no C compiler here: pip install builds the rules without rules/_native.c")
    assert COMPILED is not None, (
        "rules/_native.c was not built although a C compiler is here: install the project "
        "again (pip install -e .) and read the compiler's error")
    assert state_codec.COMPILED and state_codec.read_facts is not read_facts_py
    assert state_codec.write_entry is not write_entry_py


def _values(state: CaseState) -> list[Any]:
    """Everything a read gives, floats by their bits (-0.0 is not 0.0)."""
    def exact(value: Any) -> Any:
        return (type(value).__name__, struct.pack("<d", value) if type(value) is float else value)

    written = state.written
    return [state.case_id, state.item_code, state.partition, state.raised, state.sources,
            [(f.event_id, f.step, exact(f.at), f.actor, f.department,
              {k: exact(v) for k, v in f.attrs.items()}, exact(f.received))
             for f in state.facts],
            None if written is None else (
                written.base, written.names, written.listed, written.out, written.n,
                written.stem, written.number, written.department,
                written.last is (state.facts[-1] if state.facts else None))]


def _read(raw: bytes, key: str, reader: Any) -> CaseState:
    saved = state_codec.read_facts
    state_codec.read_facts = reader
    try:
        return decode_state(raw, key)
    finally:
        state_codec.read_facts = saved


def _written(state: CaseState, writer: Any) -> bytes:
    saved = state_codec.write_entry
    state_codec.write_entry = writer
    try:
        return encode_state(state, keep=False)
    finally:
        state_codec.write_entry = saved


needs_compiled = pytest.mark.skipif(COMPILED is None, reason="rules/_native.c not built")


@needs_compiled
@settings(max_examples=400, deadline=None, database=None)
@given(STATES)
def test_a_state_is_written_to_the_same_bytes_compiled_as_in_python(state: CaseState) -> None:
    assert _written(state, NATIVE.write_entry) == _written(state, write_entry_py)


@needs_compiled
@settings(max_examples=400, deadline=None, database=None)
@given(STATES)
def test_a_record_reads_the_same_compiled_as_in_python(state: CaseState) -> None:
    raw = _written(state, write_entry_py)
    compiled = _read(raw, state.case_id, COMPILED)
    python = _read(raw, state.case_id, read_facts_py)
    assert _values(compiled) == _values(python)
    # the summary a read gives (facts in time order) is the one built from the facts
    for read in (compiled, python):
        if read.summary is not None:
            built = summary_from_facts(read.facts)
            assert read.summary.n == built.n and read.summary.ordered is built.ordered is None
            assert _positions(read.summary.by_step, read.facts) == \
                _positions(built.by_step, read.facts)
        else:
            assert summary_from_facts(read.facts).ordered is not None  # out of order only
    assert encode_state(compiled) == raw  # and it is written again as it was


def _outcome(reader: Any, kept: list[_Fact], names: list[str], base: int, written: bool) -> Any:
    try:
        facts, entries, stem, number, department, by_step = reader(kept, names, base, written)
    except Exception as exc:  # the failure itself is compared
        return ("raised", type(exc), str(exc))
    state = CaseState("c", "i", 0, facts)
    return ("read", _values(state), entries, stem, number, department, _positions(by_step, facts))


def _positions(by_step: dict[Any, list[Fact]] | None, facts: list[Fact]) -> Any:
    """The facts of each step by their place among ``facts``."""
    if by_step is None:
        return None
    place = {id(f): i for i, f in enumerate(facts)}
    return {step: [place[id(f)] for f in same] for step, same in by_step.items()}


BIG = st.integers(-(2**70), 2**70)
SMALL = st.integers(-40, 40)
ATTRIBUTES = st.dictionaries(
    SMALL | st.sampled_from(["applicant_id", "items", "x"]),
    st.none() | st.booleans() | BIG | st.text(max_size=4) | st.binary(max_size=4)
    | st.builds(Ext, st.integers(0, 3), st.binary(max_size=4)), max_size=4)
ENTRIES = st.builds(
    _Fact, st.text("ab-09", max_size=8) | BIG | SMALL, BIG | st.integers(-5, 2**12),
    BIG | SMALL | st.floats(), st.none() | ATTRIBUTES, st.none() | BIG | SMALL | st.floats(),
    st.none() | st.integers(-6, 6) | BIG)


@needs_compiled
@settings(max_examples=600, deadline=None, database=None)
@given(st.lists(ENTRIES, max_size=5), st.lists(st.text(max_size=3), min_size=1, max_size=5),
       BIG | st.integers(-(2**45), 2**45) | SMALL, st.booleans())
def test_any_entries_read_the_same_or_fail_the_same(kept: list[_Fact], names: list[str],
                                                     base: int, written: bool) -> None:
    """Entries no record of this engine holds (an actor or step beyond the names, numbers
    past 64 bits) included: the compiled reader does what the Python does."""
    assert _outcome(COMPILED, kept, names, base, written) == \
        _outcome(read_facts_py, kept, names, base, written)


def _entry_outcome(writer: Any, fact: Fact, context: tuple[Any, ...]) -> Any:
    base, names, listed, stem, number, department = context
    names, listed = dict(names), list(listed)  # each writer lists new names in its own
    try:
        written = writer(fact, base, names, listed, stem, number, department)
    except Exception as exc:  # the failure itself is compared
        return ("raised", type(exc), str(exc), names, listed)
    if written is NotImplemented:
        return written
    entry, stem, number, department = written
    exact = [(type(v).__name__, struct.pack("<d", v) if type(v) is float else v) for v in entry]
    return ("written", exact, stem, number, department, names, listed)


ODD_FACTS = st.builds(
    Fact, st.text("ab-09", max_size=8), st.sampled_from(list(state_codec.STEP_CODES)),
    BIG | SMALL | st.floats(), st.sampled_from(["applicant", "x", "ab-"]),
    st.sampled_from(["ab", "x", "ab-"]), st.none() | ATTRIBUTES,
    BIG | SMALL | st.floats())


@needs_compiled
@settings(max_examples=600, deadline=None, database=None)
@given(facts() | ODD_FACTS, BIG | st.integers(-(2**45), 2**45) | SMALL,
       st.none() | st.sampled_from(["ab-", "x", ""]), BIG | SMALL, st.integers(0, 4))
def test_any_fact_is_written_the_same_or_left_to_python(
        fact: Fact, base: int, stem: str | None, number: int, department: int) -> None:
    """The compiled writer gives the Python writer's entry and context, lists the same
    new names, or leaves the fact to it (NotImplemented); never another entry."""
    context = (base, {"applicant": 0, "ab": 1, "x": 2}, ["ab", "x"], stem, number, department)
    compiled = _entry_outcome(NATIVE.write_entry, fact, context)
    if compiled is not NotImplemented:
        assert compiled == _entry_outcome(write_entry_py, fact, context)


@needs_compiled
def test_the_usual_fact_is_written_by_the_compiled_writer() -> None:
    """A fact with float times, as the worker and replay make them, is not left to Python."""
    written = _Written.starting(Fact("gongan-7", state_codec.STEP_CODES[0], 1.7e9, "applicant",
                                     "gongan", {"applicant_id": "ab"}, 1.7e9 + 0.25))
    fact = Fact("gongan-8", state_codec.STEP_CODES[5], 1.7e9 + 60, "li", "gongan", {}, 1.7e9 + 61)
    assert NATIVE.write_entry(fact, written.base, written.names, written.listed, "gongan-", 7,
                              1) is not NotImplemented


@needs_compiled
@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(ENTRIES, max_size=4), st.integers(-(2**45), 2**45))
def test_entries_that_are_not_the_record_structs_are_read_by_their_attributes(
        kept: list[_Fact], base: int) -> None:
    """Entries of another type (read by attribute, not in place) read as the structs do."""
    class Entry:
        def __init__(self, entry: _Fact) -> None:
            for name in entry.__struct_fields__:
                setattr(self, name, getattr(entry, name))

    names = ["applicant", "ab", "x"]
    assert _outcome(COMPILED, [Entry(e) for e in kept], names, base, True) == \
        _outcome(COMPILED, kept, names, base, True)
