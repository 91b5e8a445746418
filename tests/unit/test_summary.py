"""The case summary kept fact by fact (``rules.summary``) against the one derived from all
the facts at once (:func:`summary_from_facts`), and the checks reading either.

Random cases (any step in any order, arriving up to days late, lawful and unlawful
suspensions, extensions, fees, refusals) are fed to a state one fact at a time; the
case is read (its summary caught up) after some facts only, so that several facts, late
ones among them, come in between. After every read:

- the kept summary equals the full derivation: the facts in event-time order, by step,
  the longest delay, each actor's first handling;
- a prefix of the state (``CaseState.upto``, as the sharded replay reads it) shares the
  summary and equals the derivation of the prefix;
- every check finds on the kept summary exactly what it finds on a fresh one (ids, due
  instants, evidence, actors, details): the full re-evaluation is the oracle.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiancha.producers.contract import Step
from jiancha.rules.case import CaseState, Fact
from jiancha.rules.findings import CaseView, Finding
from jiancha.rules.ingest import Gate, Rejected
from jiancha.rules.summary import CaseSummary, summary_from_facts
from tests.unit.test_reads import ENGINE, random_file

GATE = Gate(ENGINE.catalog)


def _key(f: Fact) -> tuple[str, str]:
    return f.department, f.event_id


def _same_summary(kept: CaseSummary, fresh: CaseSummary, state: CaseState,
                  fresh_facts: list[Fact] | None = None) -> None:
    """``kept`` (of ``state``) and ``fresh`` (of ``fresh_facts``, the same facts decoded or
    the same list) summarise alike."""
    facts = state.facts
    other = facts if fresh_facts is None else fresh_facts
    kept_order = facts if kept.ordered is None else kept.ordered
    fresh_order = other if fresh.ordered is None else fresh.ordered
    assert kept.n == fresh.n == len(facts)
    assert [_key(f) for f in kept_order] == [_key(f) for f in fresh_order]
    assert {s: [_key(f) for f in fs] for s, fs in kept.by_step.items()} == \
        {s: [_key(f) for f in fs] for s, fs in fresh.by_step.items()}
    assert kept.max_delay(kept_order) == fresh.max_delay(fresh_order)
    assert {a: _key(f) for a, f in kept.handlers(kept_order).items()} == \
        {a: _key(f) for a, f in fresh.handlers(fresh_order).items()}


def _found(findings: Any) -> list[tuple[Any, ...]]:
    return [(f.distinct, f.event_time, f.due_at, f.evidence, f.actor, dict(f.details),
             f.corrected_at, f.holder_at) for f in findings]


def _same_findings(state: CaseState) -> None:
    """Every check on ``state`` (its kept summary) and on a copy that derives it afresh."""
    kept = ENGINE.view(state)
    fresh = ENGINE.view(CaseState(state.case_id, state.item_code, -1, list(state.facts)))
    for rule, check in ENGINE.checks.items():
        params = ENGINE.ruleset.params(rule, state.item_code)
        assert _found(check(kept, params)) == _found(check(fresh, params)), rule


def _facts(lines: list[bytes]) -> list[tuple[str, Any]]:
    """(case id, accepted event) in arrival order, received at the clock of a replay (the
    latest event time so far): late ones are reported late."""
    out = []
    seen: dict[str, CaseState] = {}
    for raw in lines:
        try:
            event = GATE.parse(raw, None)
            GATE.check_against_case(event, seen.get(event.case_id))
        except Rejected:
            continue
        seen[event.case_id] = ENGINE.ingest(seen.get(event.case_id), event, event.occurred_at)
        out.append((event.case_id, event))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_file(), st.data())
def test_the_kept_summary_is_the_full_derivation(lines: list[bytes], data: st.DataObject) -> None:
    states: dict[str, CaseState] = {}
    clock = None
    for case_id, event in _facts(lines):
        clock = event.occurred_at if clock is None else max(clock, event.occurred_at)
        # now and then received much later than the clock: reported late
        late = data.draw(st.sampled_from([0, 0, 0, 30]), label="hours late")
        state = states[case_id] = ENGINE.ingest(states.get(case_id), event,
                                                clock + timedelta(hours=late))
        if not data.draw(st.booleans(), label="read now"):
            continue  # more facts come before the case is read
        _same_findings(state)
        assert state.summary is not None
        _same_summary(state.summary, summary_from_facts(state.facts), state)
        cut = data.draw(st.integers(1, len(state.facts)), label="prefix")
        prefix = state.upto(cut)
        view = CaseView(prefix, ENGINE.catalog[prefix.item_code], ENGINE.working_time,
                        ENGINE.ruleset.settings)
        assert view.summary is prefix.summary
        _same_summary(view.summary, summary_from_facts(prefix.facts), prefix)
    for state in states.values():  # and at the end, read or not
        _same_findings(state)
        assert state.summary is not None
        _same_summary(state.summary, summary_from_facts(state.facts), state)


def test_a_state_from_storage_builds_its_summary_again() -> None:
    """The summary is not encoded: a decoded state derives it from its facts, and judges
    as the state it was encoded from."""
    events = [e for _, e in _facts([orjson.dumps(e) for e in _late_case()])]
    state = None
    for event in events:
        state = ENGINE.ingest(state, event, event.occurred_at)
        ENGINE.view(state)
    assert state is not None and state.summary is not None
    assert state.summary.ordered is not None  # a fact arrived out of order
    decoded = CaseState.decode(state.encode())
    assert decoded.summary is None and decoded == state
    _same_findings(decoded)
    assert decoded.summary is not None
    _same_summary(state.summary, decoded.summary, state, decoded.facts)


def _late_case() -> list[dict[str, Any]]:
    from tests.unit.eventkit_integrity import lawful, put_last

    return put_last(lawful("S1", "T-SIMPLE", through="completed"), "accepted")


def test_checks_return_sequences() -> None:
    """Checks are plain functions: what they find is a sequence, empty when nothing."""
    state = None
    for _, event in _facts([orjson.dumps(e) for e in _late_case()]):
        state = ENGINE.ingest(state, event, event.occurred_at)
    assert state is not None
    view = ENGINE.view(state)
    for rule, check in ENGINE.checks.items():
        found = check(view, ENGINE.ruleset.params(rule, state.item_code))
        assert isinstance(found, (list, tuple)), rule
        assert all(isinstance(f, Finding) for f in found), rule



def test_a_kept_value_lasts_until_a_fact_of_a_step_it_reads() -> None:
    """The clock start is kept across judgements while facts of steps it does not read
    arrive (a delivery), and derived again after one it reads (a decision)."""
    from tests.unit.eventkit_integrity import lawful

    state = None
    starts: dict[Step, Any] = {}
    derived_again: dict[Step, bool] = {}
    for _, event in _facts([orjson.dumps(e) for e in lawful("K1", "T-SIMPLE", through="completed")]):
        state = ENGINE.ingest(state, event, event.occurred_at)
        view = ENGINE.view(state)
        derived_again[event.step] = "clock_start_at" not in vars(view)  # not kept
        starts[event.step] = view.clock_start_at
    assert derived_again[Step.decided] and starts[Step.decided] == starts[Step.accepted]
    assert not derived_again[Step.delivered] and starts[Step.delivered] is starts[Step.decided]
