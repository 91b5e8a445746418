"""docs/settings.md names every setting a process reads."""

from __future__ import annotations

import importlib
from pathlib import Path

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "settings.md"


def _settings_classes() -> list[type[BaseSettings]]:
    for name in ("jiancha.settings", "settings"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return [obj for obj in vars(module).values()
                if isinstance(obj, type) and issubclass(obj, BaseSettings)
                and obj is not BaseSettings and obj.__module__ == module.__name__]
    raise AssertionError("no settings module")


def _variables() -> set[str]:
    names = set()
    for cls in _settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {(prefix + field).upper() for field in cls.model_fields}
    return names


def test_every_setting_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    variables = _variables()
    assert len(variables) > 50
    missing = {v for v in variables if f"`{v}`" not in text}
    assert not missing, f"settings missing from docs/settings.md: {sorted(missing)}"
