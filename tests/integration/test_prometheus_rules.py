"""The Prometheus rules in dashboards/prometheus/rules/: ``promtool check rules``, their
unit tests in dashboards/prometheus/tests/ (``promtool test rules``), and conventions
(every alert is tested firing, has a severity, a Chinese summary and an English
description). The promtool tests skip when promtool is missing (.ci/install-tools
installs Debian's prometheus package)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from jiancha.dashboards import promql

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "dashboards" / "prometheus"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))
PROMTOOL = shutil.which("promtool")
CJK = re.compile(r"[\u4e00-\u9fff]")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is missing: apt-get install prometheus (bash .ci/install-tools does)",
)


def _alert_rules() -> list[dict]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out += [r for r in group["rules"] if "alert" in r]
    return out


def _tests() -> list[dict]:
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in TEST_FILES]


def test_there_are_recording_and_alerting_rules() -> None:
    assert {p.name for p in RULE_FILES} == {"jiancha-recording.yml", "jiancha-alerts.yml"}
    assert len(promql.recorded()) >= 8
    names = {r["alert"] for r in _alert_rules()}
    assert {"JianchaConsumerLagGrowing", "JianchaDeadLetterRateHigh", "JianchaWorkerDown",
            "JianchaDepartmentSilent"} <= names


def test_rules_are_mounted_by_the_prometheus_config() -> None:
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_alert_conventions() -> None:
    for rule in _alert_rules():
        name = rule["alert"]
        assert name.startswith("Jiancha"), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert CJK.search(rule["annotations"]["summary"]), f"{name}: summary is in Chinese"
        assert re.search(r"[A-Za-z]{3,} [A-Za-z]{2,}", rule["annotations"]["description"]), name
        assert "$value" not in str(rule["annotations"]), f"{name}: unit tests pin the text"


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    fired: set[str] = set()
    for test_file in _tests():
        for case in test_file["tests"]:
            for t in case.get("alert_rule_test", []):
                if t.get("exp_alerts"):
                    fired.add(t["alertname"])
    missing = {r["alert"] for r in _alert_rules()} - fired
    assert not missing, f"alerts without a unit test that fires them: {sorted(missing)}"


def test_unit_tests_load_every_rule_file() -> None:
    for path, test_file in zip(TEST_FILES, _tests(), strict=True):
        loaded = {(path.parent / f).resolve() for f in test_file["rule_files"]}
        assert loaded == {p.resolve() for p in RULE_FILES}, path.name


@needs_promtool
def test_promtool_check_rules() -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", *map(str, RULE_FILES)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(test_file: Path) -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "test", "rules", str(test_file)],
                          capture_output=True, text=True, timeout=120, cwd=test_file.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
