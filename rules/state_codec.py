"""Case states as the case table stores them: one changelog record per case.

The first byte says the format. Format 2 is msgpack, with no repeated keys: a state is an
array ``[item_code, partition, base, names, facts, raised?, sources?]`` and each fact an
array ``[event_id, doing, at, attrs?, received?, department?]`` (``?``: left out at
the end of the array when empty; ``nil`` where a later one follows). The case id is the
record's key, not repeated in the record: :func:`decode_state` is given it.

- ``base``: the first fact's time in whole epoch seconds; a fact's ``at`` is the whole
  seconds after it (an integer) or the epoch seconds themselves (a float: a fraction, or
  zero); ``received`` is left out when it equals ``at``, else milliseconds after ``base``
  (an integer) or the epoch seconds (a float) when it is no whole millisecond;
- ``event_id`` as an integer: a numbered id (``gongan-17``) by its number, the difference
  to the previous fact's number when that fact's id was numbered with the same stem, else
  the number itself after the stem ``<department>-`` (the simulator's and many departments'
  ids); any other id as it is;
- ``doing`` is who did which step: the actor's index in ``names`` times 32 plus the step's
  code in :data:`STEP_CODES` (one byte for the first four names);
- the actor and ``department`` index ``names``, the case's distinct names (0 is
  ``applicant``, never listed; the first fact's department is listed first); a fact's
  ``department`` is left out when it is the previous fact's (the first fact's: name 1);
- ``attrs`` names the attributes the
  contract defines by their code in :data:`ATTRIBUTE_CODES` (any other name stays text);
  an ``applicant_id`` of lowercase hex digits is kept as their bytes (msgpack ``bin``; an
  extension of type 1 when it begins ``sha256:``).

A state keeps what its record holds of its facts (``CaseState.written``: their entries
and the context the next is written in), so a case written again encodes only the facts
added since; a state read from a record of this format starts with that record's entries.

Format 1 (an array ``[case_id, item_code, partition, base, names, facts, raised?,
sources?]``, each fact ``[event_id, step, at, actor, department, attrs?, received?]``, an
integer ``event_id`` replacing the previous id's trailing digits) and the records written
before it, the orjson document of :meth:`~rules.case.CaseState.encode` (they begin with
``{``), are still read; a case is written in format 2 the next time it changes.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from msgspec.msgpack import Ext

from jiancha.producers.contract import Step

from .case import CaseState, Fact
from .summary import CaseSummary

FORMAT = 2
_FORMAT_BYTE = bytes([FORMAT])
_FORMAT_1 = 1
_ORJSON = ord("{")

#: step codes (formats 1 and 2): append a new step, never reorder
STEP_CODES: tuple[Step, ...] = tuple(Step(name) for name in (
    "submitted", "supplement_requested", "supplement_received", "accepted",
    "rejected_at_intake", "reviewed", "suspended", "resumed", "extended", "decided",
    "fee_charged", "delivered", "completed", "withdrawn"))
_STEP_CODE = {step: code for code, step in enumerate(STEP_CODES)}
#: a fact's step and actor in one integer (format 2): room for 32 steps
_STEP_BITS = 5
_STEP_MASK = (1 << _STEP_BITS) - 1
#: attribute codes (formats 1 and 2: the contract's, and the applicant's id the engine adds)
ATTRIBUTE_CODES: tuple[str, ...] = ("applicant_id", "items", "opinion", "reason", "days",
                                    "approved_by", "outcome", "amount", "fee_code")
_ATTRIBUTE_CODE = {name: code for code, name in enumerate(ATTRIBUTE_CODES)}
_APPLICANT_ID = _ATTRIBUTE_CODE["applicant_id"]
#: the prefix of an applicant id kept as an extension of type 1 (format 2)
_SHA256 = "sha256:"
_SHA256_EXT = 1
APPLICANT = "applicant"
#: offsets beyond this are written as the time itself (msgpack integers have 64 bits)
_FITS = 2**62
_FITS_MS = 2**52
_DIGITS = "0123456789"


class _Fact(msgspec.Struct, array_like=True, gc=False):
    event_id: str | int
    doing: int
    at: int | float
    attrs: dict[Any, Any] | None = None
    received: int | float | None = None
    department: int | None = None


class _State(msgspec.Struct, array_like=True, gc=False):
    item_code: str
    partition: int
    base: int
    names: list[str]
    facts: list[_Fact]
    raised: dict[str, int] = {}
    sources: dict[str, str] = {}


class _Fact1(msgspec.Struct, array_like=True, gc=False):
    event_id: str | int
    step: int
    at: int | float
    actor: int
    department: int
    attrs: dict[Any, Any] | None = None
    received: int | float | None = None


class _State1(msgspec.Struct, array_like=True, gc=False):
    case_id: str
    item_code: str
    partition: int
    base: int
    names: list[str]
    facts: list[_Fact1]
    raised: dict[str, int] = {}
    sources: dict[str, str] = {}


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_State)
_decoder_1 = msgspec.msgpack.Decoder(_State1)


def _numbered(event_id: str) -> tuple[str, int] | None:
    """``gongan-17`` as (``gongan-``, 17), when the number is written as Python writes it
    (no leading zero) and fits in 64 bits with room for a difference."""
    stem = event_id.rstrip(_DIGITS)
    number = event_id[len(stem):]
    if number and len(number) <= 18 and (number[0] != "0" or number == "0"):
        return stem, int(number)
    return None


def _applicant_id(value: Any) -> Any:
    """An applicant id of lowercase hex digits as their bytes (with ``sha256:`` before
    them: an extension), else as it is."""
    if type(value) is str:
        digits = value[len(_SHA256):] if value.startswith(_SHA256) else value
        if digits and len(digits) % 2 == 0:
            try:
                raw = bytes.fromhex(digits)
            except ValueError:
                return value
            if raw.hex() == digits:
                return raw if digits is value else Ext(_SHA256_EXT, raw)
    return value


def _applicant_id_text(value: Any) -> Any:
    if type(value) is bytes:
        return value.hex()
    if type(value) is Ext and value.code == _SHA256_EXT:
        return _SHA256 + bytes(value.data).hex()
    return value


class _Written:
    """What a state's record holds of its facts so far, kept on the state
    (``CaseState.written``, never encoded itself): the facts' entries, and the running
    context in which the next fact is written (the names listed, the previous numbered id,
    the previous department). Facts are only appended to a state, and not changed once
    written, so a case written again after each batch that touched it (the worker's
    write) encodes only its new facts; a state read from its record starts with the
    record's own entries. (A fact's ``received`` may change while replay holds it back:
    what encodes a case then keeps nothing, see :func:`encode_state`.)"""

    __slots__ = ("base", "department", "last", "listed", "n", "names", "number", "out", "stem")

    def __init__(self, base: int, names: dict[str, int], listed: list[str]) -> None:
        self.base = base
        self.names = names  # name -> its index; 0 is the applicant, never listed
        self.listed = listed
        #: the entries (lists written here, or the record's own structs) of the first ``n``
        #: facts, the ``n``-th being ``last``
        self.out: list[Any] = []
        self.n = 0
        self.last: Fact | None = None
        self.stem: str | None = None  # of the previous fact's numbered id
        self.number = 0
        self.department = 1  # the previous fact's

    @classmethod
    def starting(cls, first: Fact) -> _Written:
        base = math.floor(first.at) if abs(first.at) < _FITS else 0
        names = {APPLICANT: 0}
        listed: list[str] = []
        if names.setdefault(first.department, 1) == 1:
            listed.append(first.department)
        return cls(base, names, listed)

    def covers(self, facts: list[Fact]) -> bool:
        """Whether its entries are of the first of ``facts`` (the state's own list, which
        only grows)."""
        n = self.n
        return 0 < n <= len(facts) and facts[n - 1] is self.last

    def add(self, f: Fact) -> None:
        """Write the entry of ``f``, the fact after those it covers."""
        written = write_entry(f, self.base, self.names, self.listed, self.stem, self.number,
                              self.department)
        if written is NotImplemented:  # a time the compiled writer leaves to Python
            written = write_entry_py(f, self.base, self.names, self.listed, self.stem,
                                     self.number, self.department)
        entry, self.stem, self.number, self.department = written
        self.out.append(entry)
        self.n += 1
        self.last = f


def write_entry_py(f: Fact, base: int, names: dict[str, int], listed: list[str],
                   stem: str | None, number: int, department: int
                   ) -> tuple[list[Any], str | None, int, int]:
    """The record entry of ``f`` written after a fact whose numbered id had ``stem`` and
    ``number`` (``stem`` None: not numbered) and whose department was name
    ``department``, with those three after it; a name not in ``names`` yet is given the
    next index and listed. The oracle of the compiled :func:`write_entry`."""
    event_id: str | int = f.event_id
    numbered = _numbered(event_id)
    if numbered is not None:
        new_stem, new_number = numbered
        if stem is not None:
            if new_stem == stem:
                event_id = new_number - number
        elif new_stem == f"{f.department}-":
            event_id = new_number
        stem, number = new_stem, new_number
    else:
        stem = None
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
            if ms / 1000 == received and -_FITS < ms - base * 1000 < _FITS:
                later = ms - base * 1000
    attrs: dict[Any, Any] | None = None
    if f.attrs:
        attribute_code = _ATTRIBUTE_CODE.get
        attrs = {attribute_code(k, k): v for k, v in f.attrs.items()}
        if _APPLICANT_ID in attrs:
            attrs[_APPLICANT_ID] = _applicant_id(attrs[_APPLICANT_ID])
    actor = _name(names, listed, f.actor)
    named = _name(names, listed, f.department)
    entry: list[Any] = [event_id, actor << _STEP_BITS | _STEP_CODE[f.step], when]
    if named != department:
        entry += (attrs, later, named)
        department = named
    elif later is not None:
        entry += (attrs, later)
    elif attrs is not None:
        entry.append(attrs)
    return entry, stem, number, department


def _name(names: dict[str, int], listed: list[str], name: str) -> int:
    index = names.get(name)
    if index is None:
        index = names[name] = len(names)
        listed.append(name)
    return index


def encode_state(state: CaseState, *, keep: bool = True) -> bytes:
    """The record of ``state`` in the current format (its key is the case id).

    ``keep``: the state keeps what the record holds of its facts, to write only new ones
    next time; False for a record of facts that may still change (written whole, and
    nothing kept)."""
    facts = state.facts
    written: _Written | None = state.written if keep else None
    if written is None or not written.covers(facts):
        written = _Written.starting(facts[0]) if facts else None
        if keep:
            state.written = written
    if written is not None:
        for i in range(written.n, len(facts)):
            written.add(facts[i])
        doc: list[Any] = [state.item_code, state.partition, written.base, written.listed,
                          written.out]
    else:
        doc = [state.item_code, state.partition, 0, [], []]
    if state.sources:
        doc += (state.raised, state.sources)
    elif state.raised:
        doc.append(state.raised)
    # lists, not the structs: msgpack has no absent field, so trailing defaults are left out
    return _FORMAT_BYTE + _encoder.encode(doc)


def decode_state(raw: bytes, key: bytes | str | None = None) -> CaseState:
    """A state from its record in any format written so far; ``key``: the record's key,
    the case id (format 2 does not repeat it)."""
    version = raw[0] if raw else None
    if version == FORMAT:
        if key is None:
            raise ValueError("a case state of format 2 is read with its key (the case id)")
        return _decode(raw, key.decode() if type(key) is bytes else key)  # type: ignore[union-attr,arg-type]
    if version == _FORMAT_1:
        return _decode_1(raw)
    if version == _ORJSON:
        return CaseState.decode(raw)
    raise ValueError(f"case state format {version} is unknown (this engine reads formats "
                     f"up to {FORMAT})")


def _decode(raw: bytes, case_id: str) -> CaseState:
    doc = _decoder.decode(memoryview(raw)[1:])
    return _state(case_id, doc.item_code, doc.partition, doc.base, doc.names, doc.facts,
                  doc.raised, doc.sources, written=True)


def _decode_1(raw: bytes) -> CaseState:
    """Format 1, through format 2's reading: its ids written out in full."""
    doc = _decoder_1.decode(memoryview(raw)[1:])
    facts: list[_Fact] = []
    stem = ""
    for f in doc.facts:
        event_id = f.event_id
        if type(event_id) is int:
            event_id = f"{stem}{event_id}"
        else:
            stem = event_id.rstrip(_DIGITS)
        facts.append(_Fact(event_id, f.actor << _STEP_BITS | f.step, f.at, f.attrs, f.received,
                           f.department))
    return _state(doc.case_id, doc.item_code, doc.partition, doc.base, doc.names, facts,
                  doc.raised, doc.sources)


def _state(case_id: str, item_code: str, partition: int, base: int, listed: list[str],
           kept: list[_Fact], raised: dict[str, int], sources: dict[str, str], *,
           written: bool = False) -> CaseState:
    """The state a record holds; ``written``: the record is of the current format, and
    the state keeps its facts' entries to write it again."""
    names = [APPLICANT, *listed]
    facts, entries, stem, number, department, by_step = read_facts(kept, names, base, written)
    state = CaseState(case_id, item_code, partition, facts, raised, sources)
    if by_step is not None:  # in time order: its summary is its facts by step
        state.summary = CaseSummary(None, by_step, len(facts))
    if written and facts:
        numbered = {name: i for i, name in enumerate(names)}
        if len(numbered) == len(names) and names[0] == APPLICANT:  # as written here
            record = state.written = _Written(base, numbered, listed)
            record.out, record.n, record.last = entries, len(facts), facts[-1]
            record.stem, record.number, record.department = stem, number, department
    return state


def read_facts_py(kept: list[_Fact], names: list[str], base: int, written: bool
                  ) -> tuple[list[Fact], list[list[Any]] | None, str | None, int, int,
                             dict[Step, list[Fact]] | None]:
    """A record's facts from their entries (``names``: the applicant, then the names the
    record lists), with the entries as written (no trailing nil) if ``written``, the
    context the next fact is written in (the stem and number of the last numbered id, and
    the last department), and the facts of each step if they are in time order (the
    case's summary, ``rules.summary``), else None. The oracle of the compiled
    :func:`read_facts`."""
    base_ms = base * 1000
    facts: list[Fact] = []
    entries: list[list[Any]] | None = [] if written else None  # ``kept`` as written
    stem: str | None = None  # of the previous fact's numbered id
    number = 0
    department = 1
    by_step: dict[Step, list[Fact]] | None = {}
    previous_at = -math.inf
    for f in kept:
        changed = f.department
        if changed is not None:
            department = changed
        event_id = f.event_id
        if type(event_id) is int:
            if stem is None:
                stem = f"{names[department]}-"
                number = event_id
            else:
                number += event_id
            event_id = f"{stem}{number}"
        else:
            numbered = _numbered(event_id)
            if numbered is None:
                stem = None
            else:
                stem, number = numbered
        at = f.at
        at = float(base + at) if type(at) is int else at
        received = f.received
        if received is None:
            received = at
        elif type(received) is int:
            received = (base_ms + received) / 1000
        attrs = f.attrs
        if attrs:
            attrs = {ATTRIBUTE_CODES[k] if type(k) is int else k: v for k, v in attrs.items()}
            if "applicant_id" in attrs:
                attrs["applicant_id"] = _applicant_id_text(attrs["applicant_id"])
        else:
            attrs = {}
        doing = f.doing
        if entries is not None:
            entry = [f.event_id, doing, f.at]
            if f.department is not None:
                entry += (f.attrs, f.received, f.department)
            elif f.received is not None:
                entry += (f.attrs, f.received)
            elif f.attrs is not None:
                entry.append(f.attrs)
            entries.append(entry)
        step = STEP_CODES[doing & _STEP_MASK]
        fact = Fact(event_id, step, at, names[doing >> _STEP_BITS], names[department], attrs,
                    received)
        facts.append(fact)
        if by_step is not None:
            if at != at or at < previous_at:  # NaN, or out of order: sorted when first read
                by_step = None
            else:
                previous_at = at
                by_step.setdefault(step, []).append(fact)
    return facts, entries, stem, number, department, by_step


def _compiled() -> Any:
    """The compiled part of the rules (``rules/_native.c``), configured; None when the
    extension was not built (no C compiler at install): the Python functions then."""
    try:
        from . import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    _native.configure(Fact, STEP_CODES, ATTRIBUTE_CODES, Ext, _SHA256_EXT, _SHA256, _Fact,
                      _STEP_CODE, _ATTRIBUTE_CODE)
    return _native


_NATIVE = _compiled()
#: :func:`read_facts_py` and :func:`write_entry_py`, compiled where the extension was built
read_facts: Any = read_facts_py if _NATIVE is None else _NATIVE.read_facts
write_entry: Any = write_entry_py if _NATIVE is None else _NATIVE.write_entry
#: whether the compiled parts are in use (``jiancha bench`` says so)
COMPILED = _NATIVE is not None
