"""Case states as the case table stores them: one changelog record per case.

The first byte says the format. Format 1 is msgpack, with no repeated keys: a state is an
array ``[case_id, item_code, partition, base, names, facts, raised?, sources?]`` and each
fact an array ``[event_id, step, at, actor, department, attrs?, received?]`` (``?``: left
out at the end of the array when empty):

- ``base``: the first fact's time in whole epoch seconds; a fact's ``at`` is the whole
  seconds after it (an integer) or the epoch seconds themselves (a float: a fraction, or
  zero); ``received`` is left out when it equals ``at``, else milliseconds after ``base``
  (an integer) or the epoch seconds (a float) when it is no whole millisecond;
- ``event_id`` as an integer: the previous fact's id with its trailing digits replaced by
  this number (``gongan-17`` after ``gongan-16``), else the id itself;
- ``actor`` and ``department`` index ``names``, the case's distinct names (0 is
  ``applicant``, never listed);
- ``step`` is the step's code in :data:`STEP_CODES`; ``attrs`` names the attributes the
  contract defines by their code in :data:`ATTRIBUTE_CODES` (any other name stays text).

Records written before format 1 are the orjson document of
:meth:`~rules.case.CaseState.encode` (they begin with ``{``): they are still read, and a
case is written in format 1 the next time it changes.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from jiancha.producers.contract import Step

from .case import CaseState, Fact

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
_FITS_MS = 2**52
_DIGITS = "0123456789"


class _Fact(msgspec.Struct, array_like=True, gc=False):
    event_id: str | int
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
    attribute_code = _ATTRIBUTE_CODE.get
    out: list[list[Any]] = []
    previous_stem = None
    for f in facts:
        event_id: str | int = f.event_id
        stem = event_id.rstrip(_DIGITS)
        if stem == previous_stem:
            number = event_id[len(stem):]
            if number and len(number) <= 18 and (number[0] != "0" or number == "0"):
                event_id = int(number)
        previous_stem = stem
        at = float(f.at)
        when: int | float = at
        if at and at.is_integer():  # zero stays a float: -0.0 comes back as it was
            offset = int(at) - base
            if -_FITS < offset < _FITS:
                when = offset
        received = f.received
        later: int | float | None = None
        if received != at:
            later = float(received)
            if received and abs(received) < _FITS_MS:
                ms = round(received * 1000)
                if ms / 1000 == received and -_FITS < ms - base_ms < _FITS:
                    later = ms - base_ms
        attrs = {attribute_code(k, k): v for k, v in f.attrs.items()} if f.attrs else None
        fact: list[Any] = [event_id, _STEP_CODE[f.step], when,
                           names.setdefault(f.actor, len(names)),
                           names.setdefault(f.department, len(names))]
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
    stem = ""
    for f in doc.facts:
        event_id = f.event_id
        if type(event_id) is int:
            event_id = f"{stem}{event_id}"
        else:
            stem = event_id.rstrip(_DIGITS)
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
