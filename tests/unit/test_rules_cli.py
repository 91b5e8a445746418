from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jiancha.rules.checks import CHECKS
from tests.events import case

ROOT = Path(__file__).resolve().parents[2]
DOMAIN_RULES = {
    "deadline.approaching", "deadline.promise_broken", "deadline.legal_broken",
    "intake.deemed_accepted", "supplement.repeated", "supplement.late",
    "suspension.unlawful_reason", "suspension.overlong", "extension.irregular", "process.skipped_step",
    "process.unknown_step", "parallel.missing_opinion", "decision.no_reason", "delivery.late",
    "fee.unauthorized", "fee.over_standard", "actor.conflict", "reporting.late",
    "reporting.backdated",
}


def _jiancha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jiancha.cli", *args], capture_output=True,
                          text=True, check=False, cwd=ROOT)


def test_every_case_rule_of_the_domain_is_implemented() -> None:
    assert set(CHECKS) >= DOMAIN_RULES


def test_rules_list_shows_every_rule_with_basis_and_thresholds() -> None:
    out = _jiancha("rules", "list", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    listed = {r["rule"]: r for r in doc["rules"]}
    assert set(listed) >= DOMAIN_RULES
    assert all(r["basis"] and r["severity"] in ("yellow", "red") for r in listed.values())
    assert listed["deadline.approaching"]["params"]["share_of_promise"] == 0.2
    assert doc["settings"]["allowed_lateness_minutes"] == 10
    # each rule's escalation policy (督办): every red after its working days, no yellow
    for rule in listed.values():
        expected = ({"working_days": 5} if rule["severity"] == "red"
                    else {"never": "a warning (yellow) does not escalate"})
        assert rule["escalation"] == expected, rule["rule"]
    table = _jiancha("rules", "list")
    assert table.returncode == 0 and "process.skipped_step" in table.stdout
    assert "escalation (督办)" in table.stdout and "after 5 working days" in table.stdout


def test_rules_explain_shows_events_and_counted_days(tmp_path: Path) -> None:
    events = case("EX-1", [("submitted", "2026-09-28 09:00"), ("accepted", "2026-09-29 10:00")])
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    out = _jiancha("rules", "explain", "EX-1", "--events", str(path), "--until",
                   "2026-12-31T00:00:00+08:00", "--catalog", str(ROOT / "tests/fixtures/catalog"))
    assert out.returncode == 0, out.stderr
    assert "deadline.promise_broken" in out.stdout
    assert "2026-09-29 10:00:00 (working day) accepted" in out.stdout
    # T-SHORT promises 1 working day: accepted Sep 29, counts Sep 30, ends 24:00 Sep 30
    assert "working days counted to the deadline (1): 09-30" in out.stdout
    alert_id = next(line.split("alert_id ")[1].strip() for line in out.stdout.splitlines()
                    if "deadline.promise_broken" in line and "alert_id" in line)
    by_id = _jiancha("rules", "explain", alert_id, "--events", str(path), "--until",
                     "2026-12-31T00:00:00+08:00", "--catalog", str(ROOT / "tests/fixtures/catalog"))
    assert alert_id in by_id.stdout
    missing = _jiancha("rules", "explain", "NOPE", "--events", str(path))
    assert missing.returncode == 2 and "NOPE" in missing.stderr
