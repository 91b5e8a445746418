"""The rule set: severities, legal basis, alert text and thresholds, loaded from YAML.

A bad file fails with :class:`RuleSetError` naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "rules.yaml"


class RuleSetError(ValueError):
    pass


class RuleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allowed_lateness_minutes: float = Field(10, ge=0, le=7 * 24 * 60)
    reporting_delay_hours: float = Field(24, gt=0)
    escalation_working_days: int = Field(5, ge=1, le=60)

    @property
    def allowed_lateness(self) -> timedelta:
        return timedelta(minutes=self.allowed_lateness_minutes)


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Literal["yellow", "red"]
    basis: str = Field(min_length=1)
    message_zh: str = Field(min_length=1)
    message_en: str = Field(min_length=1)
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)


class ItemOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: RuleSettings = Field(default_factory=RuleSettings)
    rules: dict[str, RuleConfig]
    item_overrides: dict[str, dict[str, ItemOverride]] = Field(default_factory=dict)

    def enabled(self, rule: str, item_code: str) -> bool:
        override = self.item_overrides.get(item_code, {}).get(rule)
        if override is not None and override.enabled is not None:
            return override.enabled
        return self.rules[rule].enabled

    def params(self, rule: str, item_code: str) -> Mapping[str, Any]:
        base = self.rules[rule].params
        override = self.item_overrides.get(item_code, {}).get(rule)
        return {**base, **override.params} if override else base


def load_ruleset(path: Path | str = DEFAULT_RULES_FILE, known_rules: set[str] | None = None) -> RuleSet:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleSetError(f"{path}: cannot read rules file: {exc}") from None
    try:
        ruleset = RuleSet.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RuleSetError(f"{path}: {problems}") from None
    if known_rules is not None:
        unknown = sorted(set(ruleset.rules) - known_rules)
        if unknown:
            raise RuleSetError(f"{path}: rules.{unknown[0]}: no check function has this name "
                               f"(known: {', '.join(sorted(known_rules))})")
        missing = sorted(known_rules - set(ruleset.rules))
        if missing:
            raise RuleSetError(f"{path}: rules: {', '.join(missing)} missing (every check "
                               "needs its severity, basis and messages)")
        for item, overrides in ruleset.item_overrides.items():
            for rule in overrides:
                if rule not in known_rules:
                    raise RuleSetError(f"{path}: item_overrides.{item}.{rule}: unknown rule")
    return ruleset
