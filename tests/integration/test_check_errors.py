"""A check that raises in the worker is loud: logged with rule and case, counted in
``jiancha_check_errors_total{rule}``, shown as degraded on ``/health``; the other rules go
on. The check deliberately raises here: an operator's rule set gives a maximum that is not
a number (the rule set does not type a rule's parameters)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.events import case, event
from tests.faulty_rules import rules_with_a_failing_check
from tests.metric_samples import total
from tests.wait import wait_for

pytestmark = pytest.mark.integration


def test_a_failing_check_is_logged_counted_and_degrades_health(stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.conftest import WorkerSpec

    rules = rules_with_a_failing_check(tmp_path)
    spec = WorkerSpec(stack, extra_env={
        "JIANCHA_CLOCK_START": "2026-12-01T09:00:00+08:00",
        "JIANCHA_CLOCK_SPEED": "60",
        "JIANCHA_CLOCK_ANCHOR": str(time.time()),
        "JIANCHA_RULES_DIR": str(rules),
    }, partitions=1)
    worker = spec.start_worker()
    try:
        assert worker.health()["status"] == "ok"
        spec.send([*case("CE-1", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00")]),
                   event("CE-1", "suspended", "2026-11-30 11:00", reason="inspection"),
                   *case("CE-1", [("decided", "2026-12-01 08:00")])])
        # the other rules go on: the skipped review is raised
        spec.wait_alerts(lambda alerts: any(
            a["case_id"] == "CE-1" and a["rule"] == "process.skipped_step" for a in alerts))
        health = wait_for(lambda: (h := worker.health())["status"] != "ok" and h, timeout=20,
                          what="the worker's health to leave ok")
        assert health["status"] == "degraded"
        assert set(health["check_errors"]) == {"suspension.overlong"}
        assert health["check_errors"]["suspension.overlong"] >= 1
        assert total(worker.metrics(), "jiancha_check_errors_total", rule="suspension.overlong") >= 1
        assert "rule suspension.overlong failed on case CE-1" in worker.log()
    finally:
        worker.stop()
