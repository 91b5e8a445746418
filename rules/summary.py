"""A case's summary: its facts in event-time order, indexed by step, with the counters and
derived values (clock start, pauses, deadlines, …) the checks read.

It is kept in the case state (``CaseState.summary``) and caught up fact by fact: a fact
that arrives in event-time order is appended, a late one inserted at its place, and only
the derived values that read its step are dropped (computed again when next read). It is
never encoded: a state loaded from storage, or cut to a prefix, builds it again from its
facts (:func:`summary_from_facts`, also the oracle the tests hold the kept one to).

Whoever changes a fact's ``received`` (replay sets it once the clock is known) does so
before the first judgement that sees the fact; the summary reads it then.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from jiancha.producers.contract import APPLICANT_STEPS, Step
from jiancha.rules.case import Fact

_AT = attrgetter("at")

#: derived values (by name) to drop when a fact of a step arrives; filled by
#: ``rules.findings.kept`` from what each derived value reads
DROPS: dict[Step, tuple[str, ...]] = {}
#: derived values to drop when a fact becomes the first (earliest) of its step
FIRST_DROPS: list[str] = []


class CaseSummary:
    """What the checks read of a case, kept up to date as its facts arrive."""

    __slots__ = (
        "by_step",
        "deadlines",
        "derived",
        "env",
        "facts",
        "handlers",
        "max_delay",
        "n",
    )

    def __init__(self) -> None:
        #: how many of the state's facts (arrival order) it covers
        self.n = 0
        #: the facts in event-time order (ties: in arrival order)
        self.facts: list[Fact] = []
        #: the same, by step
        self.by_step: dict[Step, list[Fact]] = {}
        #: the longest a fact took to reach the engine (received - occurred), seconds
        self.max_delay = float("-inf")
        #: each actor's earliest fact of a step the applicant does not take
        self.handlers: dict[str, Fact] = {}
        #: derived values by name (``rules.findings.kept``), dropped when a fact of a step
        #: they read arrives
        self.derived: dict[str, Any] = {}
        #: counted deadlines by (start, days, *pauses), dropped with the clock or pauses
        self.deadlines: dict[tuple[Any, ...], float | None] = {}
        #: what the derived values were computed with (working time, settings, item)
        self.env: tuple[Any, ...] | None = None

    def catch_up(self, facts: Sequence[Fact]) -> None:
        """Add the facts of ``facts`` (the state's, arrival order) it does not cover yet."""
        for i in range(self.n, len(facts)):
            self.add(facts[i])
        self.n = len(facts)

    def add(self, fact: Fact) -> None:
        at = fact.at
        facts = self.facts
        if not facts or facts[-1].at <= at:
            facts.append(fact)
        else:  # reported late: after those at the same instant, which arrived before it
            insort(facts, fact, key=_AT)
        step = fact.step
        same = self.by_step.get(step)
        first = False
        if same is None:
            self.by_step[step] = [fact]
            first = True
        elif same[-1].at <= at:
            same.append(fact)
        else:
            insort(same, fact, key=_AT)
            first = same[0] is fact
        delay = fact.received - at
        if delay > self.max_delay:
            self.max_delay = delay
        if step not in APPLICANT_STEPS:
            handlers = self.handlers
            earlier = handlers.get(fact.actor)
            if earlier is None or at < earlier.at:
                handlers[fact.actor] = fact
        derived = self.derived
        if derived:
            for name in DROPS.get(step, ()):
                derived.pop(name, None)
            if first:
                for name in FIRST_DROPS:
                    derived.pop(name, None)
        if self.deadlines and step in _CLOCK_STEPS:
            self.deadlines.clear()

    def same_as(self, other: CaseSummary) -> bool:
        """Whether both summarise the same facts alike (derived values: those computed in
        both)."""
        common = self.derived.keys() & other.derived.keys()
        return (self.n == other.n and self.facts == other.facts
                and self.by_step == other.by_step and self.max_delay == other.max_delay
                and self.handlers == other.handlers
                and all(self.derived[k] == other.derived[k] for k in common))


#: the steps the counted deadlines depend on (``DROPS`` of the clock start and pauses)
_CLOCK_STEPS: set[Step] = set()


def summary_from_facts(facts: Sequence[Fact]) -> CaseSummary:
    """The summary of ``facts`` (arrival order), derived from all of them at once."""
    s = CaseSummary()
    s.n = len(facts)
    s.facts = sorted(facts, key=_AT)  # stable: ties in arrival order
    for f in s.facts:
        s.by_step.setdefault(f.step, []).append(f)
        if f.step not in APPLICANT_STEPS:
            s.handlers.setdefault(f.actor, f)
    if facts:
        s.max_delay = max(f.received - f.at for f in facts)
    return s


def register(name: str, reads: frozenset[Step], *, on_first: bool = False,
             clock: bool = False) -> None:
    """Drop the derived value ``name`` when a fact of a step in ``reads`` arrives (and,
    ``on_first``, when a fact becomes the first of its step); ``clock``: the counted
    deadlines depend on it."""
    for step in reads:
        DROPS[step] = (*DROPS.get(step, ()), name)
        if clock:
            _CLOCK_STEPS.add(step)
    if on_first:
        FIRST_DROPS.append(name)
