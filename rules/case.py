"""Per-case state: the facts (accepted events) of one case and the alerts already raised.

Rules are pure functions of the facts, so the state stores facts only; every deadline
is derived from them again after a restart. The table stores a state in the binary format
of ``rules/state_codec.py``; :meth:`CaseState.encode` and :meth:`CaseState.decode` are the
earlier JSON format, which that codec still reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any, Protocol, runtime_checkable

import orjson

from jiancha.producers.contract import Step

_STEPS = {s.value: s for s in Step}
#: microseconds east of UTC of each fixed-offset zone a fact's time came in: its epoch
#: seconds are then summed from its fields, without the slower ``datetime.timestamp()``
_OFFSETS: dict[tzinfo, int] = {}
_MICROSECOND = timedelta(microseconds=1)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
#: ``CaseState.raised`` of an alert a later event proved wrong (it may be raised again)
RETRACTED = 0


@runtime_checkable
class StepEvent(Protocol):
    """An event as the rules read it: the contract's
    :class:`~jiancha.producers.contract.ApprovalEvent`, or the gate's
    :class:`~jiancha.rules.ingest.GateEvent` (the same fields, decoded faster)."""

    @property
    def case_id(self) -> str: ...
    @property
    def item_code(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def department(self) -> str: ...
    @property
    def step(self) -> Step: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def applicant_id(self) -> str | None: ...
    @property
    def attributes(self) -> dict[str, Any]: ...
    @property
    def effective_actor(self) -> str: ...


@dataclass(slots=True)
class Fact:
    """One accepted event of a case, as the rules see it."""

    event_id: str
    step: Step
    at: float  # occurred_at, epoch seconds
    actor: str
    department: str
    attrs: dict[str, Any]
    received: float  # when the engine received it, epoch seconds

    @property
    def known_at(self) -> float:
        """From when the engine can know of it: when it happened, or when it was received
        if that is earlier (a producer's clock ahead of the worker's, or a Kafka timestamp
        cut to the millisecond). A finding about the event itself is due then; waiting for
        ``at`` would hold its alert back until a deadline tick."""
        return self.received if self.received < self.at else self.at

    @classmethod
    def from_event(cls, ev: StepEvent, received: datetime,
                   received_ts: float | None = None) -> Fact:
        attrs = ev.attributes
        attrs = dict(attrs) if attrs else {}  # the fact's own: one is added below
        applicant_id = ev.applicant_id
        if applicant_id is not None:
            attrs["applicant_id"] = applicant_id  # for the conflict-of-duties rule
        occurred = ev.occurred_at
        offset = fixed_offset_us(occurred.tzinfo)
        if offset is None:
            at = occurred.timestamp()
        else:  # datetime.timestamp()'s own sum (whole microseconds over 10**6), unrolled
            at = (((occurred.toordinal() - _EPOCH_DAY) * 86400 + occurred.hour * 3600
                   + occurred.minute * 60 + occurred.second) * 1_000_000
                  + occurred.microsecond - offset) / 1_000_000
        if received_ts is None:  # received when it occurred (replay): not converted twice
            received_ts = at if received is occurred else received.timestamp()
        return cls(ev.event_id, ev.step, at, ev.effective_actor, ev.department, attrs,
                   received_ts)

    def encode(self) -> list[Any]:
        # the step as it is: orjson writes a StrEnum as its value (``.value`` is a slow
        # property, and a case's every fact is encoded again each time it changes)
        return [self.event_id, self.step, self.at, self.actor, self.department,
                self.attrs or None, self.received]

    @classmethod
    def decode(cls, raw: list[Any]) -> Fact:
        eid, step, at, actor, dept, attrs, received = raw
        return cls(eid, _STEPS[step], at, actor, dept, attrs or {}, received)


@dataclass(slots=True)
class CaseState:
    case_id: str
    item_code: str
    partition: int = -1
    facts: list[Fact] = field(default_factory=list)
    raised: dict[str, int] = field(default_factory=dict)  # alert_id -> severity rank
    #: alert_id -> the rule that raised it, for the alerts a later event may retract (a
    #: retracted alert keeps its entry with rank ``RETRACTED``)
    sources: dict[str, str] = field(default_factory=dict)
    #: what the checks read of the facts (``rules.summary``): kept as facts arrive, never
    #: encoded (built again from the facts when missing or behind); not copied by
    #: ``dataclasses.replace``, which may give the copy other facts. A
    #: ``rules.summary.CaseSummary``, typed loosely here: that module builds on this one.
    summary: Any = field(default=None, init=False, compare=False, repr=False)
    #: what its record holds of its facts so far, to write it again with only the facts
    #: added since (``rules.state_codec``): never encoded, typed loosely as ``summary``
    written: Any = field(default=None, init=False, compare=False, repr=False)

    def has_event(self, department: str, event_id: str) -> bool:
        for f in self.facts:  # noqa: SIM110 - any() over a generator cost twice as much here
            if f.event_id == event_id and f.department == department:
                return True
        return False

    def upto(self, n: int) -> CaseState:
        """The state as it was with its first ``n`` facts (itself when it has no more;
        the alerts raised are shared)."""
        facts = self.facts
        if n == len(facts):
            return self
        state = CaseState(self.case_id, self.item_code, self.partition, facts[:n],
                          self.raised, self.sources)
        summary = self.summary
        if summary is not None and summary.n <= n:
            # facts are only appended: it goes on to cover the prefix (and is read there)
            summary.catch_up(state.facts)
            state.summary = summary
        return state

    def encode(self) -> bytes:
        doc = {"c": self.case_id, "i": self.item_code, "p": self.partition,
               "f": [f.encode() for f in self.facts], "r": self.raised}
        if self.sources:  # most cases raise nothing: no key at all
            doc["s"] = self.sources
        raw = orjson.dumps(doc)
        # orjson's result keeps its whole growth buffer (about 4 KiB); the table holds one
        # of these per case, so keep an exact-size copy
        return bytes(memoryview(raw))

    @classmethod
    def decode(cls, raw: bytes) -> CaseState:
        d = orjson.loads(raw)
        return cls(d["c"], d["i"], d["p"], [Fact.decode(f) for f in d["f"]], d["r"],
                   d.get("s") or {})


def fixed_offset_us(zone: tzinfo | None) -> int | None:
    """Microseconds east of UTC of a fixed-offset zone (a ``datetime.timezone``, as the
    times of events carry), kept per zone; None for any other zone."""
    offset = _OFFSETS.get(zone)  # type: ignore[arg-type]
    if offset is None and type(zone) is timezone:
        offset = _OFFSETS[zone] = zone.utcoffset(None) // _MICROSECOND
    return offset


def epoch_to_dt(ts: float, tz: Any = UTC) -> datetime:
    return datetime.fromtimestamp(ts, tz)
