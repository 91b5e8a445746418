"""Loud failures: a rule check that raises is logged with rule and case, counted (and
reported to the engine's hook: the worker's metric), and retried when its case is next
judged (its bit stays pending and the case scheduled). The suite's guard
(tests/conftest.py) fails a test after which a check raised; every test here makes a check
raise on purpose and says so with the ``check_errors`` marker."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jiancha.producers.contract import Step, parse_event
from jiancha.rules.case import CaseState
from jiancha.rules.checks import CHECKS
from jiancha.rules.engine import CHECK_RETRY_SECONDS, Engine
from jiancha.rules.findings import CaseView, Finding, declared_reads, reads
from jiancha.rules.schedule import Due
from tests.conftest import CheckErrorWatch
from tests.unit.eventkit_integrity import at, drop, engine, ev, lawful, run

RULE = "fee.unauthorized"
pytestmark = pytest.mark.check_errors


class Flaky:
    """``fee.unauthorized`` that raises the first ``failures`` times it sees a fee
    (``calls`` counts those)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        real = CHECKS[RULE]
        steps = declared_reads(real)
        assert steps is not None

        @reads(*steps)
        def check(case: CaseView, params: Mapping[str, Any]) -> Iterable[Finding]:
            if not case.all(Step.fee_charged):
                return real(case, params)
            self.calls += 1
            if self.calls <= self.failures:
                raise ZeroDivisionError("a faulty rule")
            return real(case, params)

        self.check = check


def _engine(failures: int, **kw: Any) -> tuple[Engine, Flaky]:
    base = engine()
    flaky = Flaky(failures)
    return Engine(base.catalog, base.ruleset, base.working_time,
                  checks={**CHECKS, RULE: flaky.check}, **kw), flaky


def _charged(case_id: str = "F") -> list[dict[str, Any]]:
    return [*lawful(case_id), ev(case_id, "fee_charged", "12:00")]


def test_a_raising_check_is_logged_counted_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    eng, _ = _engine(failures=10**6, on_check_error=seen.append)
    with caplog.at_level(logging.ERROR, logger="jiancha.rules.engine"):
        alerts = run(drop(_charged(), "reviewed"), "2024-03-05 09:00", eng)
    assert RULE not in {a.rule for a in alerts}
    assert "process.skipped_step" in {a.rule for a in alerts}  # the other rules go on
    assert eng.check_errors[RULE] >= 1 and seen.count(RULE) == eng.check_errors[RULE]
    assert set(eng.check_errors) == {RULE}
    logged = [r for r in caplog.records if r.name == "jiancha.rules.engine"]
    assert logged and all(f"rule {RULE} failed on case F" in r.getMessage() for r in logged)
    assert logged[0].exc_info is not None  # with the traceback


def test_a_failed_check_waits_and_its_case_stays_scheduled() -> None:
    eng, flaky = _engine(failures=1)
    state: CaseState | None = None
    due = Due(None, 0)
    events = _charged()
    for e in events:
        event = parse_event(e)
        state = eng.ingest(state, event, event.occurred_at)
        now = event.occurred_at
        _, due = eng.judge(state, now, event.step, due)
    assert state is not None and flaky.calls == 1 and eng.check_errors == {RULE: 1}
    fee_bit = next(bit for rule, _, _, _, bit, _ in eng._plan("T-SHORT") if rule == RULE)
    charged = at("12:00").timestamp()
    assert due.pending & fee_bit and due.at == charged + CHECK_RETRY_SECONDS
    # a later fact of a step the check does not read: not run, still waiting
    late = parse_event(ev("F", "supplement_requested", "2024-03-04 12:00:30", items=["x"]))
    state = eng.ingest(state, late, late.occurred_at)
    alerts, due = eng.judge(state, late.occurred_at, Step.supplement_requested, due)
    assert flaky.calls == 1 and due.pending & fee_bit and due.at == charged + CHECK_RETRY_SECONDS
    # the wake-up runs it again: the alert it missed is raised
    wake = at("12:00") + timedelta(seconds=CHECK_RETRY_SECONDS)
    alerts, due = eng.judge(state, wake, before=due)
    assert flaky.calls == 2 and [a.rule for a in alerts] == [RULE]
    assert not due.pending & fee_bit or due.at is None or due.at > wake.timestamp()


def test_a_check_that_keeps_failing_is_retried_ever_less_often() -> None:
    eng, flaky = _engine(failures=10**6)
    state: CaseState | None = None
    for e in _charged():
        event = parse_event(e)
        state = eng.ingest(state, event, event.occurred_at)
    assert state is not None
    charged = at("12:00").timestamp()
    _, due = eng.judge(state, at("12:00"))
    retries = []
    while due.at is not None and len(retries) < 6:
        retries.append(due.at - charged)
        _, due = eng.judge(state, datetime.fromtimestamp(due.at, UTC), before=due)
    assert retries == [60, 120, 240, 480, 960, 1920]
    assert eng.check_errors == {RULE: 1 + 6} and flaky.calls == 1 + 6


def test_replay_retries_a_failed_check_and_raises_what_it_missed() -> None:
    eng, flaky = _engine(failures=1)
    alerts = run(_charged(), "2024-03-05 09:00", eng)
    assert flaky.calls >= 2 and eng.check_errors == {RULE: 1}
    assert [a.rule for a in alerts if a.rule == RULE] == [RULE]


def test_the_suites_guard_fails_on_a_check_error(check_error_watch: CheckErrorWatch) -> None:
    eng, _ = _engine(failures=10**6)
    run(_charged(), "2024-03-05 09:00", eng)
    with pytest.raises(pytest.fail.Exception, match=rf"a rule check raised during this test.*{RULE}"):
        check_error_watch.verify()


def test_the_guard_sees_an_engine_dropped_before_the_test_ends(
        check_error_watch: CheckErrorWatch) -> None:
    def judge_and_forget() -> None:
        eng, _ = _engine(failures=10**6)
        run(_charged(), "2024-03-05 09:00", eng)

    judge_and_forget()
    gc.collect()
    assert set(check_error_watch.new_errors()) == {RULE}
    with pytest.raises(pytest.fail.Exception):
        check_error_watch.verify()


@pytest.mark.check_errors
def test_the_guard_counts_only_errors_since_the_test_started(
        check_error_watch: CheckErrorWatch) -> None:
    eng, _ = _engine(failures=10**6)
    run(_charged("F1"), "2024-03-05 09:00", eng)
    watch = CheckErrorWatch()  # as the next test's guard would start
    assert watch.new_errors() == {}
    watch.verify()
    run(_charged("F2"), "2024-03-05 09:00", eng)
    assert set(watch.new_errors()) == {RULE}
