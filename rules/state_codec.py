"""Case states as the case table stores them: one changelog record per case.

The first byte says the format. Format 1 is msgpack, with no repeated keys: a state is an
array ``[case_id, item_code, partition, base, names, facts, raised?, sources?]`` and each
fact an array ``[shared, event_id_rest, step, at, actor, department, attrs?, received?]``
(``?``: left out at the end of the array when empty):

- ``base``: the first fact's time in whole epoch seconds; a fact's ``at`` is the whole
  seconds after it (an integer) or, with a fraction, the epoch seconds themselves (a
  float); ``received`` is left out when it equals ``at``, else milliseconds after ``base``
  (an integer) or the epoch seconds (a float) when it is no whole millisecond;
- ``actor`` and ``department`` index ``names``, the case's distinct names (0 is
  ``applicant``, never listed);
- ``step`` is the step's code in :data:`STEP_CODES`; ``attrs`` names the attributes the
  contract defines by their code in :data:`ATTRIBUTE_CODES` (any other name stays text);
- ``shared``: how many characters the event id shares with the previous fact's, whose
  rest ``event_id_rest`` is.

Records written before format 1 are the orjson document of
:meth:`~rules.case.CaseState.encode` (they begin with ``{``): they are still read, and a
case is written in format 1 the next time it changes.
"""

from __future__ import annotations

import math
import os
from typing import Any

import msgspec

from jiancha.producers.contract import Step
from jiancha.rules.case import CaseState, Fact

FORMAT = 1
_FORMAT_BYTE = bytes([FORMAT])
_ORJSON = ord("{")

#: step codes of format 1: append a new step, never reorder
STEP_CODES: tuple[Step, ...] = tuple(Step(name) for name in (
    "submitted", "supplement_requested", "supplement_received", "accepted",
    "rejected_at_intake", "reviewed", "suspended", "resumed", "extended", "decided",
    "fee_charged", "delivered", "completed", "withdrawn"))
_STEP_CODE = {step: code for code, step in enumerate(STEP_CODES)}
#: attribute names of format 1 (the contract's, and the applicant's id the engine adds)
ATTRIBUTE_CODES: tuple[str, ...] = ("applicant_id", "items", "opinion", "reason", "days",
                                    "approved_by", "outcome", "amount", "fee_code")
_ATTRIBUTE_CODE = {name: code for code, name in enumerate(ATTRIBUTE_CODES)}
APPLICANT = "applicant"
#: offsets beyond this are written as the time itself (msgpack integers have 64 bits)
_FITS = 2**62


class _Fact(msgspec.Struct, array_like=True, gc=False):
    shared: int
    event_id: str
    step: int
    at: int | float
    actor: int
    department: int
    attrs: dict[Any, Any] | None = None
    received: int | float | None = None


class _State(msgspec.Struct, array_like=True, gc=False):
    case_id: str
    item_code: str
    partition: int
    base: int
    names: list[str]
    facts: list[_Fact]
    raised: dict[str, int] = {}
    sources: dict[str, str] = {}


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_State)


def encode_state(state: CaseState) -> bytes:
    """The record of ``state`` in the current format."""
    facts = state.facts
    base = math.floor(facts[0].at) if facts and abs(facts[0].at) < _FITS else 0
    base_ms = base * 1000
    names: dict[str, int] = {APPLICANT: 0}
    out: list[list[Any]] = []
    previous = ""
    for f in facts:
        at = float(f.at)
        offset = int(at) - base if at.is_integer() and not _negative_zero(at) else None
        if offset is not None and abs(offset) >= _FITS:
            offset = None
        received = f.received
        if received == at:
            later: int | float | None = None
        else:
            ms = round(received * 1000) \
                if abs(received) < _FITS and not _negative_zero(received) else None
            later = ms - base_ms if ms is not None and ms / 1000 == received \
                and abs(ms - base_ms) < _FITS else float(received)
        attrs = {_ATTRIBUTE_CODE.get(k, k): v for k, v in f.attrs.items()} if f.attrs else None
        event_id = f.event_id
        shared = len(os.path.commonprefix((previous, event_id)))  # noqa: RUF071 - characters
        previous = event_id
        actor = names.setdefault(f.actor, len(names))
        department = names.setdefault(f.department, len(names))
        fact: list[Any] = [shared, event_id[shared:], _STEP_CODE[f.step],
                           at if offset is None else offset, actor, department]
        if later is not None:
            fact += (attrs, later)
        elif attrs is not None:
            fact.append(attrs)
        out.append(fact)
    doc: list[Any] = [state.case_id, state.item_code, state.partition, base, list(names)[1:],
                      out]
    if state.sources:
        doc += (state.raised, state.sources)
    elif state.raised:
        doc.append(state.raised)
    # lists, not the structs: msgpack has no absent field, so trailing defaults are left out
    return _FORMAT_BYTE + _encoder.encode(doc)


def _negative_zero(x: float) -> bool:
    return x == 0 and math.copysign(1.0, x) < 0


def decode_state(raw: bytes) -> CaseState:
    """A state from its record in any format written so far."""
    version = raw[0] if raw else None
    if version == _ORJSON:
        return CaseState.decode(raw)
    if version != FORMAT:
        raise ValueError(f"case state format {version} is unknown (this engine reads formats "
                         f"up to {FORMAT})")
    doc = _decoder.decode(memoryview(raw)[1:])
    base = doc.base
    base_ms = base * 1000
    names = [APPLICANT, *doc.names]
    facts: list[Fact] = []
    previous = ""
    for f in doc.facts:
        event_id = previous[:f.shared] + f.event_id if f.shared else f.event_id
        previous = event_id
        at = f.at
        at = float(base + at) if type(at) is int else at
        received = f.received
        if received is None:
            received = at
        elif type(received) is int:
            received = (base_ms + received) / 1000
        attrs = f.attrs
        attrs = {ATTRIBUTE_CODES[k] if type(k) is int else k: v for k, v in attrs.items()} \
            if attrs else {}
        facts.append(Fact(event_id, STEP_CODES[f.step], at, names[f.actor],
                          names[f.department], attrs, received))
    return CaseState(doc.case_id, doc.item_code, doc.partition, facts, doc.raised, doc.sources)
