"""``jiancha replay`` as a user runs it: a file of events in, sorted alerts out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.events import case

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "tests" / "fixtures" / "catalog"


def _write(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))
    return path


def _replay(events_file: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "jiancha.cli", "replay", str(events_file), "--until",
         "2026-12-31T00:00:00+08:00", "--catalog", str(CATALOG), *extra],
        capture_output=True, check=False, cwd=ROOT,
    )


def _events() -> list[dict]:
    skipped = case("R-SKIP", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                              ("decided", "2026-11-30 15:00")])
    open_case = case("R-OPEN", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                                ("reviewed", "2026-11-30 11:00")])
    clean = case("R-CLEAN", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                             ("reviewed", "2026-11-30 11:00"), ("decided", "2026-11-30 12:00"),
                             ("delivered", "2026-12-01 09:00"), ("completed", "2026-12-01 10:00")])
    return skipped + open_case + clean


def test_replay_raises_the_expected_alerts(tmp_path: Path) -> None:
    out = _replay(_write(tmp_path / "events.jsonl", _events()))
    assert out.returncode == 0, out.stderr.decode()
    alerts = [json.loads(line) for line in out.stdout.splitlines()]
    red = {(a["rule"], a["case_id"]) for a in alerts if a["severity"] == "red"}
    assert ("process.skipped_step", "R-SKIP") in red
    assert ("deadline.promise_broken", "R-OPEN") in red
    assert not [a for a in alerts if a["case_id"] == "R-CLEAN" and a["severity"] != "yellow"]
    broken = next(a for a in alerts if a["rule"] == "deadline.promise_broken")
    assert broken["event_time"] == "2026-12-02T00:00:00+08:00"  # 24:00 of the 1st working day
    assert "1" in broken["message_zh"] and broken["legal_basis"]
    keys = [(a["event_time"], a["alert_id"]) for a in alerts]
    assert keys == sorted(keys)
    assert b"alerts" in out.stderr


def test_replay_is_byte_identical_across_runs(tmp_path: Path) -> None:
    events = _write(tmp_path / "events.jsonl", _events())
    first, second = _replay(events), _replay(events)
    assert first.returncode == 0
    assert first.stdout == second.stdout and first.stdout


def test_replay_reports_bad_lines_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, _events())
    with path.open("a") as f:
        f.write("{broken\n")
    out = _replay(path)
    assert out.returncode == 0
    assert b"line 13: invalid_json" in out.stderr
    assert out.stdout


def test_a_check_that_raises_fails_the_replay_naming_the_rule(tmp_path: Path) -> None:
    """The check raises in the replay's process (an operator's rule set gives a maximum that
    is not a number): the alerts are written, the summary names the rule, the exit code is
    not 0."""
    from tests.faulty_rules import rules_with_a_failing_check

    rules = rules_with_a_failing_check(tmp_path)
    events = case("R-SUS", [("submitted", "2026-11-30 09:00"), ("accepted", "2026-11-30 10:00"),
                            ("decided", "2026-11-30 15:00")])
    events[1:1] = [{**events[1], "event_id": "R-SUS-s", "step": "suspended",
                    "occurred_at": "2026-11-30T10:30:00+08:00",
                    "attributes": {"reason": "inspection"}}]
    out = _replay(_write(tmp_path / "e.jsonl", events), "--rules", str(rules), "--workers", "1")
    assert out.returncode == 1, out.stderr
    assert "rule checks raised (each logged with its case): suspension.overlong" in out.stderr.decode()
    assert "rule suspension.overlong failed on case R-SUS" in out.stderr.decode()
    assert b'"process.skipped_step"' in out.stdout  # the other rules went on


def test_replay_bad_until_is_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "jiancha.cli", "replay",
                          str(_write(tmp_path / "e.jsonl", [])), "--until", "tomorrow"],
                         capture_output=True, check=False, cwd=ROOT)
    assert out.returncode == 2 and b"--until" in out.stderr


def test_catalog_export_with_catalog_dir() -> None:
    out = subprocess.run([sys.executable, "-m", "jiancha.cli", "catalog", "export", "--json",
                          "--catalog", str(CATALOG)], capture_output=True, check=True, cwd=ROOT)
    items = json.loads(out.stdout)
    assert {i["code"] for i in items} >= {"T-SHORT", "T-FEE", "T-JOINT"}
    assert set(items[0]) == {"code", "name_zh", "name_en", "department", "legal_days",
                             "promised_days", "steps", "fee_standard", "joint", "co_departments",
                             "legal_unit", "legal_basis", "promised_source", "extension_days_max",
                             "extension_basis", "fee_basis", "verified", "verification_note",
                             "volume_share"}
