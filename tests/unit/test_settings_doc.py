"""docs/settings.md is what `jiancha settings --markdown` writes, and names every setting of
every process, each with a description."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

from jiancha import settings
from jiancha.cli import app
from jiancha.settings_cli import field_names, markdown

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "settings.md"


def _settings_classes() -> list[type[BaseSettings]]:
    return [obj for obj in vars(settings).values()
            if isinstance(obj, type) and issubclass(obj, BaseSettings)
            and obj is not BaseSettings and obj.__module__ == settings.__name__]


def _variables() -> set[str]:
    return {settings.ENV_PREFIX + field.upper() for cls in _settings_classes() for field in cls.model_fields}


def test_every_setting_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    variables = _variables()
    assert len(variables) > 50
    missing = {v for v in variables if f"`{v}`" not in text}
    assert not missing, f"settings missing from docs/settings.md: {sorted(missing)}"


def test_the_doc_is_what_the_command_writes() -> None:
    assert DOC.read_text(encoding="utf-8") == markdown(), (
        "docs/settings.md is stale: run 'jiancha settings --markdown > docs/settings.md'")


def test_every_setting_is_described_where_it_is_defined() -> None:
    undescribed = {f"{cls.__name__}.{name}" for cls in _settings_classes()
                   for name, field in cls.model_fields.items() if not field.description}
    assert not undescribed


def test_every_process_class_is_listed_and_every_field_belongs_to_a_part_or_a_process() -> None:
    listed = {p.settings for p in settings.PROCESSES.values()}
    processes = {cls for cls in _settings_classes() if cls not in settings.PARTS
                 and cls is not settings.JianchaSettings}
    assert processes == listed
    for process in settings.PROCESSES.values():
        assert sorted(field_names(process)) == sorted(process.settings.model_fields)


@pytest.mark.parametrize("process", ["worker", "notifier"])
def test_the_command_lists_one_process(process: str) -> None:
    result = CliRunner().invoke(app, ["settings", "--process", process])
    assert result.exit_code == 0, result.output
    shown = {line.split()[0] for line in result.output.splitlines() if line.startswith("  JIANCHA_")}
    assert shown == {settings.ENV_PREFIX + f.upper()
                     for f in settings.PROCESSES[process].settings.model_fields}
    assert "JIANCHA_REDIS_URL" in shown
    assert ("JIANCHA_KAFKA_FETCH_MAX_WAIT_MS" in shown) == (process == "worker")
    assert ("JIANCHA_NOTIFIER_SMTP_HOST" in shown) == (process == "notifier")


def test_the_command_refuses_an_unknown_process() -> None:
    result = CliRunner().invoke(app, ["settings", "--process", "nobody"])
    assert result.exit_code == 2 and "worker" in result.output
