"""The rule set: severities, legal basis, alert text and thresholds, loaded from YAML.

A bad file fails with :class:`RuleSetError` naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_RULES_DIR = Path(__file__).resolve().parent / "ruleset"


class RuleSetError(ValueError):
    pass


@lru_cache(maxsize=64)
def _minutes(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


class RuleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allowed_lateness_minutes: float = Field(10, ge=0, le=7 * 24 * 60)
    reporting_delay_hours: float = Field(24, gt=0)
    #: the escalation period of a red rule whose policy says ``working_days: default``
    escalation_working_days: int = Field(5, ge=1, le=60)

    @property
    def allowed_lateness(self) -> timedelta:
        # asked on every evaluation: keep one timedelta per value
        return _minutes(self.allowed_lateness_minutes)


class Escalation(BaseModel):
    """A red rule's escalation policy (督办): its alert, neither corrected nor resolved by a
    person, escalates ``working_days`` working days after the violation (``default``: the
    settings' ``escalation_working_days``); or it ``never`` escalates, for the reason given."""

    model_config = ConfigDict(extra="forbid")

    working_days: Annotated[int, Field(ge=1, le=60)] | Literal["default"] | None = None
    never: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> Escalation:
        if (self.working_days is None) == (self.never is None):
            raise ValueError('give either working_days (a number or "default") or never '
                             '(the reason it never escalates)')
        return self


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Literal["yellow", "red"]
    basis: str = Field(min_length=1)
    message_zh: str = Field(min_length=1)
    message_en: str = Field(min_length=1)
    enabled: bool = True
    #: required on a red rule, refused on a yellow one (a warning never escalates)
    escalation: Escalation | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _escalation_policy(self) -> RuleConfig:
        if self.severity == "red" and self.escalation is None:
            raise ValueError("a red rule needs an escalation policy: escalation: "
                             '{working_days: default}, {working_days: N} or {never: "<reason>"}')
        if self.severity == "yellow" and self.escalation is not None:
            raise ValueError("a yellow rule never escalates: remove escalation")
        return self


class ItemOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: RuleSettings = Field(default_factory=RuleSettings)
    rules: dict[str, RuleConfig]
    item_overrides: dict[str, dict[str, ItemOverride]] = Field(default_factory=dict)
    #: performance-evaluation weights and caps (validated by ``rules.indicators``)
    scoring: dict[str, Any] = Field(default_factory=dict)

    def enabled(self, rule: str, item_code: str) -> bool:
        override = self.item_overrides.get(item_code, {}).get(rule)
        if override is not None and override.enabled is not None:
            return override.enabled
        return self.rules[rule].enabled

    def params(self, rule: str, item_code: str) -> Mapping[str, Any]:
        """The rule's parameters for an item: an item override replaces the parameters it
        names; in a parameter that is a mapping, only the keys it names."""
        base = self.rules[rule].params
        override = self.item_overrides.get(item_code, {}).get(rule)
        if not override:
            return base
        merged = {**base, **override.params}
        for key, value in override.params.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merged[key] = {**base[key], **value}
        return merged

    def escalation_days(self, rule: str) -> int | None:
        """After how many working days an uncorrected, unresolved alert of ``rule``
        escalates; None when it never does (a yellow rule, or ``escalation: {never: …}``)."""
        policy = self.rules[rule].escalation
        if policy is None or policy.working_days is None:
            return None
        if policy.working_days == "default":
            return self.settings.escalation_working_days
        return policy.working_days


def load_ruleset(source: Path | str = DEFAULT_RULES_DIR, known_rules: set[str] | None = None) -> RuleSet:
    """Load a rule set from a directory of YAML files (merged) or from one file."""
    source = Path(source)
    files = sorted(source.glob("*.yaml")) if source.is_dir() else [source]
    if not files:
        raise RuleSetError(f"{source}: no *.yaml rule files")
    merged: dict[str, Any] = {"rules": {}, "item_overrides": {}}
    origin: dict[str, Path] = {}
    for path in files:
        doc = _read(path)
        for rule, spec in (doc.pop("rules", None) or {}).items():
            if rule in origin:
                raise RuleSetError(f"{path}: rules.{rule}: already defined in {origin[rule]}")
            origin[rule] = path
            merged["rules"][rule] = spec
        for item, spec in (doc.pop("item_overrides", None) or {}).items():
            merged["item_overrides"].setdefault(item, {}).update(spec or {})
        if "settings" in doc:
            if "settings" in merged:
                raise RuleSetError(f"{path}: settings: already given in another file")
            merged["settings"] = doc.pop("settings")
        if "scoring" in doc:
            if "scoring" in merged:
                raise RuleSetError(f"{path}: scoring: already given in another file")
            merged["scoring"] = doc.pop("scoring") or {}
        if doc:
            raise RuleSetError(f"{path}: unknown key(s) {sorted(doc)}; expected rules, "
                               "settings, item_overrides, scoring")
    try:
        ruleset = RuleSet.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_where(e['loc'], origin)}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        )
        raise RuleSetError(f"{source}: {problems}") from None
    if known_rules is not None:
        unknown = sorted(set(ruleset.rules) - known_rules)
        if unknown:
            raise RuleSetError(f"{origin[unknown[0]]}: rules.{unknown[0]}: no check function has "
                               f"this name (known: {', '.join(sorted(known_rules))})")
        missing = sorted(known_rules - set(ruleset.rules))
        if missing:
            raise RuleSetError(f"{source}: rules: {', '.join(missing)} missing (every check "
                               "needs its severity, basis and messages)")
        for item, overrides in ruleset.item_overrides.items():
            for rule in overrides:
                if rule not in known_rules:
                    raise RuleSetError(f"{source}: item_overrides.{item}.{rule}: unknown rule")
    return ruleset


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RuleSetError(f"{path}: cannot read rules file: {exc}") from None
    if not isinstance(doc, dict):
        raise RuleSetError(f"{path}: expected a mapping")
    return doc


def _where(loc: tuple[Any, ...], origin: dict[str, Path]) -> str:
    if len(loc) > 1 and loc[0] == "rules" and loc[1] in origin:
        return f"{origin[loc[1]].name}: "
    return ""
