"""A case's summary: its facts in event-time order, indexed by step, with the counters the
checks read, the counted deadlines, and the case's view (``rules.findings.CaseView``),
which keeps the values derived from the facts (clock start, pauses, process facts, …).

It is kept in the case state (``CaseState.summary``) and caught up fact by fact when the
case is next read: a fact that arrives in event-time order is appended, a late one
inserted at its place; a fact of a step that a derived value reads retires the view (its
values are derived again when next read), and one of a clock-start or pause step the
counted deadlines. It is never encoded: a state loaded from storage, or cut
to a prefix, builds it again from its facts (:func:`summary_from_facts`, also the oracle
the tests hold the kept one to).

Whoever changes a fact's ``received`` (replay sets it once the clock is known) does so
before the case is next read; the summary reads it then.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from jiancha.producers.contract import APPLICANT_STEPS, Step
from jiancha.rules.case import Fact

if TYPE_CHECKING:
    from jiancha.rules.findings import CaseView

_AT = attrgetter("at")

#: the steps some derived value reads (filled by ``rules.findings.kept``): a fact of one,
#: or one that becomes the first of its step (the process facts), retires the kept view
#: and what it derived
DERIVED_READS: set[Step] = set()
#: the steps the counted deadlines depend on (those of the clock start and the pauses)
CLOCK_STEPS: set[Step] = set()


class CaseSummary:
    """What the checks read of a case, kept up to date as its facts arrive."""

    __slots__ = ("by_step", "deadlines", "facts", "handlers_", "max_delay_", "n", "view")

    def __init__(self, facts: list[Fact], by_step: dict[Step, list[Fact]], n: int) -> None:
        #: how many of the state's facts (arrival order) it covers
        self.n = n
        #: the facts in event-time order (ties: in arrival order)
        self.facts = facts
        #: the same, by step
        self.by_step = by_step
        #: counted deadlines by (start, days, *pauses), dropped with the clock or pauses
        self.deadlines: dict[tuple[Any, ...], float | None] | None = None
        #: the counters below, once first read (None before)
        self.max_delay_: float | None = None
        self.handlers_: dict[str, Fact] | None = None
        #: the view that keeps the derived values (``rules.findings.kept``) of these facts
        self.view: CaseView | None = None

    @property
    def max_delay(self) -> float:
        """The longest a fact took to reach the engine (received - occurred), seconds."""
        if self.max_delay_ is None:
            self.max_delay_ = max(f.received - f.at for f in self.facts)
        return self.max_delay_

    @property
    def handlers(self) -> dict[str, Fact]:
        """Each actor's earliest fact of a step the applicant does not take."""
        if self.handlers_ is None:
            handlers: dict[str, Fact] = {}
            for f in self.facts:
                if f.step not in APPLICANT_STEPS:
                    handlers.setdefault(f.actor, f)
            self.handlers_ = handlers
        return self.handlers_

    def catch_up(self, facts: Sequence[Fact]) -> None:
        """Add the facts of ``facts`` (the state's, arrival order) it does not cover yet."""
        add = self.add
        for i in range(self.n, len(facts)):
            add(facts[i])
        self.n = len(facts)

    def add(self, fact: Fact) -> None:
        """Add one fact (``n`` is the caller's to count)."""
        at = fact.at
        facts = self.facts
        if not facts or facts[-1].at <= at:
            facts.append(fact)
        else:  # reported late: after those at the same instant, which arrived before it
            insort(facts, fact, key=_AT)
        step = fact.step
        same = self.by_step.get(step)
        first = same is None
        if first:
            self.by_step[step] = [fact]
        elif same[-1].at <= at:  # type: ignore[index]
            same.append(fact)  # type: ignore[union-attr]
        else:
            insort(same, fact, key=_AT)  # type: ignore[arg-type]
            first = same[0] is fact  # type: ignore[index]
        if self.max_delay_ is not None and fact.received - at > self.max_delay_:
            self.max_delay_ = fact.received - at
        if self.handlers_ is not None and step not in APPLICANT_STEPS:
            earlier = self.handlers_.get(fact.actor)
            if earlier is None or at < earlier.at:
                self.handlers_[fact.actor] = fact
        if self.view is not None and (first or step in DERIVED_READS):
            # derive again what it reads: a fresh view costs less than dropping values one
            # by one (and those a fact leaves valid are cheap to derive)
            self.view = None
        if self.deadlines and step in CLOCK_STEPS:
            self.deadlines.clear()


def summary_from_facts(facts: Sequence[Fact]) -> CaseSummary:
    """The summary of ``facts`` (arrival order), derived from all of them at once."""
    ordered = sorted(facts, key=_AT)  # stable: ties in arrival order
    by_step: dict[Step, list[Fact]] = {}
    for f in ordered:
        same = by_step.get(f.step)
        if same is None:
            by_step[f.step] = [f]
        else:
            same.append(f)
    return CaseSummary(ordered, by_step, len(facts))


def register(reads: frozenset[Step], *, clock: bool = False) -> None:
    """A derived value reads the facts of ``reads``; ``clock``: the counted deadlines
    depend on it."""
    DERIVED_READS.update(reads)
    if clock:
        CLOCK_STEPS.update(reads)
