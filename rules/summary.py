"""A case's summary: its facts in event-time order and by step, the counters the checks
read instead of every fact, and the counted deadlines of a paused clock.

It is kept in the case state (``CaseState.summary``) and caught up fact by fact when the
case is next read (``rules.findings.CaseView``): a fact that arrives in event-time order
is appended to its step, a late one inserted at its place. While the facts arrived in
event-time order (the usual) the state's own list is their order; the first late one
makes a sorted copy. It is never encoded: a state loaded from storage, or cut to a
prefix, builds it again from its facts (:func:`summary_from_facts`, also the oracle the
tests hold the kept one to).

The values derived from these (clock start, pauses, process facts) are computed when a
check first asks and kept here until a fact of a step they read arrives
(``rules.findings.kept``).

Whoever changes a fact's ``received`` (replay sets it once the clock is known) does so
before the case is next read; the summary reads it then.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from operator import attrgetter, is_
from typing import TYPE_CHECKING, Any

from jiancha.producers.contract import APPLICANT_STEPS, Step

from .case import Fact

if TYPE_CHECKING:
    from .counted_time import WorkingTime

_AT = attrgetter("at")

#: the steps the clock start and the pauses read: a fact of one drops the counted deadlines
CLOCK_STEPS = frozenset({Step.submitted, Step.accepted, Step.supplement_requested,
                         Step.supplement_received, Step.decided, Step.rejected_at_intake,
                         Step.withdrawn, Step.suspended, Step.resumed})


class CaseSummary:
    """What the checks read of a case, kept up to date as its facts arrive."""

    __slots__ = ("by_step", "deadlines", "drops", "handlers_", "kept", "kept_for", "max_delay_",
                 "n", "ordered")

    def __init__(self, ordered: list[Fact] | None, by_step: dict[Step, list[Fact]],
                 n: int) -> None:
        #: how many of the state's facts (arrival order) it covers
        self.n = n
        #: the facts in event-time order (ties: in arrival order); None while that is the
        #: order they arrived in (the state's own list)
        self.ordered = ordered
        #: the facts of each step, in event-time order
        self.by_step = by_step
        #: counted deadlines of a paused clock by (start, days, *pauses), with the working
        #: time that counted them
        self.deadlines: tuple[WorkingTime, dict[tuple[Any, ...], float | None]] | None = None
        #: the counters, once first read (None before)
        self.max_delay_: float | None = None
        self.handlers_: dict[str, Fact] | None = None
        #: values the checks derived from the facts (``rules.findings.kept``) by name, for
        #: the item, working time and settings in ``kept_for``; a fact drops those that
        #: read its step (``drops``)
        self.kept: dict[str, Any] = {}
        self.kept_for: tuple[Any, ...] | None = None
        self.drops: dict[Step, tuple[str, ...]] = {}

    def max_delay(self, facts: Sequence[Fact]) -> float:
        """The longest any of ``facts`` (those it covers) took to reach the engine
        (received - occurred), seconds."""
        if self.max_delay_ is None:
            self.max_delay_ = max(f.received - f.at for f in facts)
        return self.max_delay_

    def handlers(self, facts: Sequence[Fact]) -> dict[str, Fact]:
        """Each actor's earliest fact of a step the applicant does not take (``facts``:
        those it covers, in event-time order)."""
        if self.handlers_ is None:
            handlers: dict[str, Fact] = {}
            for f in facts:
                if f.step not in APPLICANT_STEPS:
                    handlers.setdefault(f.actor, f)
            self.handlers_ = handlers
        return self.handlers_

    def catch_up(self, facts: list[Fact]) -> None:
        """Add the facts of ``facts`` (the state's, arrival order) it does not cover yet."""
        for i in range(self.n, len(facts)):
            self.add(facts, i)

    def add(self, facts: list[Fact], i: int) -> None:
        """Add ``facts[i]``, the state's fact after the ``i`` it covers."""
        fact = facts[i]
        at = fact.at
        ordered = self.ordered
        if ordered is not None:
            if ordered[-1].at <= at:
                ordered.append(fact)
            else:  # reported late: after those at the same instant, which arrived before it
                insort(ordered, fact, key=_AT)
        elif i and facts[i - 1].at > at:  # the first late one: from now on a sorted copy
            self.ordered = sorted(facts[:i + 1], key=_AT)
        self.n = i + 1
        step = fact.step
        same = self.by_step.get(step)
        if same is None:
            self.by_step[step] = [fact]
        elif same[-1].at <= at:
            same.append(fact)
        else:
            insort(same, fact, key=_AT)
        if self.max_delay_ is not None and fact.received - at > self.max_delay_:
            self.max_delay_ = fact.received - at
        if self.handlers_ is not None and step not in APPLICANT_STEPS:
            earlier = self.handlers_.get(fact.actor)
            if earlier is None or at < earlier.at:
                self.handlers_[fact.actor] = fact
        if self.deadlines is not None and step in CLOCK_STEPS:
            self.deadlines = None
        kept = self.kept
        if kept:
            for name in self.drops.get(step, ()):
                kept.pop(name, None)


def summary_from_facts(facts: Sequence[Fact]) -> CaseSummary:
    """The summary of ``facts`` (arrival order), derived from all of them at once."""
    if len(facts) == 1:  # a case's first judgement: nothing to sort
        fact = facts[0]
        return CaseSummary(None, {fact.step: [fact]}, 1)
    ordered = sorted(facts, key=_AT)  # stable: ties in arrival order
    in_order = all(map(is_, ordered, facts))
    by_step: dict[Step, list[Fact]] = {}
    for f in ordered:
        same = by_step.get(f.step)
        if same is None:
            by_step[f.step] = [f]
        else:
            same.append(f)
    return CaseSummary(None if in_order else ordered, by_step, len(facts))
