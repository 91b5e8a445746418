"""Routing of alerts to receivers, from YAML (``rules/routing.yaml``; ``JIANCHA_NOTIFIER_ROUTING_FILE``).

::

    defaults:                      # timing of every route unless the route overrides it
      group_wait: 30s              # wait this long for more alerts of the same group
      group_interval: 5m           # then at most one notification per group this often
      repeat_interval: 4h          # remind about still-open red/escalated alerts (0: never)
      working_hours_only: [yellow] # these severities are held until the next working hour
    working_hours: {start: "09:00", end: "18:00"}   # on working days of the official calendar
    contacts:                      # per department: {contact.x} in channel configs
      gongan: {email: lianluo@gongan.example.gov.cn, webhook: https://oa.gongan.example/hook}
    handlers:                      # per handler (经办人) id: {handler.x}
      h1: {email: h1@gongan.example.gov.cn}
    receivers:
      bureau:   {channels: [{type: stream}, {type: email, to: [duban@jiancha.example.gov.cn]}]}
      contact:  {channels: [{type: webhook, url: "{contact.webhook}", secret_env: JC_HOOK_KEY}]}
      handler:  {channels: [{type: email, to: ["{handler.email}"]}]}
    routes:                        # in order; the first match ends unless it says continue
      - match: {escalated: true}
        receivers: [bureau]
        continue: true
      - match: {severity: [red], rule: "deadline.*"}
        receivers: [handler, contact, bureau]
    default_receivers: [contact]   # when no route matched

A match may name ``department`` (glob or list), ``rule`` (glob or list), ``severity``
(list) and ``escalated`` (bool); all given fields must match. A receiver whose channels use
``{department}``/``{contact.x}`` (or ``{actor}``/``{handler.x}``), or says ``per: [department]``
(``per: [actor]``), becomes one receiver per department (per handler): ``contact@gongan``,
``handler@h1``; grouping is per receiver, so each gets its own notifications.

Errors name the file and the key: ``rules/routing.yaml: routes.1.match.severity: …``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from jiancha.rules.calendar import WorkingCalendar

from .types import ChannelConfig
from .yaml_file import read_yaml

DEFAULT_ROUTING_FILE = Path(__file__).resolve().parents[1] / "rules" / "routing.yaml"
SEVERITIES = ("yellow", "red", "escalated")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+(?:\.[A-Za-z0-9_-]+)?)\}")
_DEPARTMENT_VARS = ("department", "contact.")
_ACTOR_VARS = ("actor", "handler.")


class RoutingError(ValueError):
    """The routing file is malformed; the message names the file and the key."""


def parse_duration(value: Any) -> float:
    """'30s', '5m', '4h', '1d', '250ms' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 4h or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"expected a duration such as 30s, 5m, 4h, 1d, got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Severity = Literal["yellow", "red", "escalated"]


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Globs = Annotated[list[str], BeforeValidator(_listify)]
Severities = Annotated[list[Severity], BeforeValidator(_listify)]


class Timing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    working_hours_only: Severities | None = None


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid")

    department: Globs | None = None
    rule: Globs | None = None
    severity: Severities | None = None
    escalated: bool | None = None

    def matches(self, department: str | None, rule: str, severity: str) -> bool:
        if self.department is not None and not any(
                fnmatch.fnmatchcase(department or "", g) for g in self.department):
            return False
        if self.rule is not None and not any(fnmatch.fnmatchcase(rule, g) for g in self.rule):
            return False
        if self.severity is not None and severity not in self.severity:
            return False
        return self.escalated is None or self.escalated == (severity == "escalated")


class Route(Timing):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    match: Match = Field(default_factory=Match)
    receivers: list[str] = Field(min_length=1)
    continue_: bool = Field(False, alias="continue")


class Receiver(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    per: Annotated[list[Literal["department", "actor"]], BeforeValidator(_listify)] = Field(
        default_factory=list,
        description="one receiver per department / per handler even without placeholders")
    channels: list[ChannelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_channels(self) -> Receiver:
        keys = [c.key for c in self.channels]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"channel name {dupes[0]!r} used twice; give each a distinct 'name'")
        for channel in self.channels:
            for var in _placeholders(channel.model_dump()):
                if var not in ("department", "actor") and not var.startswith(("contact.", "handler.")):
                    raise ValueError(f"unknown placeholder {{{var}}}; use {{department}}, {{actor}}, "
                                     "{contact.x} or {handler.x}")
        return self


class WorkingHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: time = time(9, 0)
    end: time = time(18, 0)

    @model_validator(mode="after")
    def _order(self) -> WorkingHours:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


DEFAULT_TIMING = Timing(group_wait=30, group_interval=300, repeat_interval=4 * 3600,
                        working_hours_only=["yellow"])


class Routing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Timing = Field(default_factory=Timing)
    working_hours: WorkingHours = Field(default_factory=WorkingHours)
    contacts: dict[str, dict[str, str | list[str]]] = Field(default_factory=dict)
    handlers: dict[str, dict[str, str | list[str]]] = Field(default_factory=dict)
    receivers: dict[str, Receiver]
    routes: list[Route] = Field(default_factory=list)
    default_receivers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_receivers(self) -> Routing:
        for i, route in enumerate(self.routes):
            for j, name in enumerate(route.receivers):
                if name not in self.receivers:
                    raise _KeyError(f"routes.{i}.receivers.{j}",
                                    f"unknown receiver {name!r} (known: {', '.join(self.receivers)})")
        for j, name in enumerate(self.default_receivers):
            if name not in self.receivers:
                raise _KeyError(f"default_receivers.{j}", f"unknown receiver {name!r}")
        return self

    def timing(self, route: Timing | None) -> Timing:
        merged = DEFAULT_TIMING.model_dump()
        merged.update({k: v for k, v in self.defaults.model_dump().items() if v is not None})
        if route is not None:
            merged.update({k: v for k, v in route.model_dump(include=set(Timing.model_fields)).items()
                           if v is not None})
        return Timing(**merged)

    # --- routing an alert -------------------------------------------------------------------

    def targets(self, department: str | None, rule: str, severity: str,
                actor: str | None = None) -> tuple[list[Target], list[str]]:
        """The receivers (with their rendered channels and timing) of an alert, and the
        problems that kept a receiver from being reached (e.g. no contact for the department)."""
        chosen: list[tuple[str, Timing, int]] = []
        matched = False
        for index, route in enumerate(self.routes):
            if not route.match.matches(department, rule, severity):
                continue
            matched = True
            timing = self.timing(route)
            chosen.extend((name, timing, index) for name in route.receivers)
            if not route.continue_:
                break
        if not matched:
            timing = self.timing(None)
            chosen.extend((name, timing, -1) for name in self.default_receivers)
        targets: list[Target] = []
        problems: list[str] = []
        seen: set[str] = set()
        for name, timing, index in chosen:
            try:
                target = self._target(name, timing, index, department, rule, severity, actor)
            except RenderError as exc:
                problems.append(f"receiver {name}: {exc}")
                continue
            if target is not None and target.receiver not in seen:
                seen.add(target.receiver)
                targets.append(target)
        return targets, problems

    def _target(self, name: str, timing: Timing, index: int, department: str | None, rule: str,
                severity: str, actor: str | None) -> Target | None:
        receiver = self.receivers[name]
        raw = [c.model_dump(mode="json", exclude_none=True) for c in receiver.channels]
        used = {v for c in raw for v in _placeholders(c)}
        instance = name
        if "department" in receiver.per or any(v.startswith(_DEPARTMENT_VARS) for v in used):
            if not department:
                return None  # nobody to tell: the alert concerns no department
            instance += f"@{department}"
        if "actor" in receiver.per or any(v.startswith(_ACTOR_VARS) for v in used):
            if not actor:
                return None  # the alert names no handler (经办人): nobody to tell
            instance += f"@{actor}"
        values: dict[str, Any] = {"department": department, "actor": actor}
        for var in sorted(used):
            scope, _, key = var.partition(".")
            if scope == "contact":
                table, who = self.contacts.get(department or "", {}), department
            elif scope == "handler":
                table, who = self.handlers.get(actor or "", {}), actor
            else:
                continue
            if key not in table:
                raise RenderError(f"no {scope}s.{who}.{key} in the routing file for {{{var}}}")
            values[var] = table[key]
        channels = tuple((c.get("name") or c["type"], _render(c, values)) for c in raw)
        hold = severity in (timing.working_hours_only or [])
        return Target(instance, name, channels, float(timing.group_wait or 0),
                      float(timing.group_interval or 0), float(timing.repeat_interval or 0),
                      hold, index)


class _KeyError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class RenderError(ValueError):
    """A receiver cannot be reached for this alert (a template variable is missing)."""


@dataclass(frozen=True)
class Target:
    """One receiver of one alert: its channels (rendered config dicts) and its timing."""

    receiver: str  # instance: 'bureau', 'contact@gongan', 'handler@h1'
    receiver_name: str  # as in the routing file
    channels: tuple[tuple[str, dict[str, Any]], ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    hold: bool  # only in working hours
    route: int  # index of the route (-1: default_receivers)


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(_placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, Sequence):
        return set().union(*(_placeholders(v) for v in value)) if value else set()
    return set()


def _render(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: _scalar(values.get(m.group(1))), value)
    if isinstance(value, dict):
        return {k: _render(v, values) for k, v in value.items()}
    if isinstance(value, list):
        out: list[Any] = []
        for v in value:
            m = _PLACEHOLDER.fullmatch(v) if isinstance(v, str) else None
            if m and isinstance(values.get(m.group(1)), list):
                out.extend(values[m.group(1)])  # "{contact.email}" with a list of addresses
            else:
                out.append(_render(v, values))
        return out
    return value


def _scalar(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


# --- loading -------------------------------------------------------------------------------


def load_routing(path: Path | str = DEFAULT_ROUTING_FILE) -> Routing:
    path = Path(path)
    return parse_routing(read_yaml(path, RoutingError, "routing file"), path)


def parse_routing(doc: Any, source: Path | str = "<routing>") -> Routing:
    if not isinstance(doc, dict):
        raise RoutingError(f"{source}: expected a mapping with receivers and routes")
    try:
        return Routing.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, _KeyError):
                problems.append(f"{ctx_error.key}: {ctx_error.message}")
                continue
            loc = ".".join(_loc(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{loc or '(top)'}: {msg}")
        raise RoutingError(f"{source}: " + "; ".join(problems)) from None


def _loc(loc: Sequence[Any]) -> list[str]:
    """The error location without the channel-type tag pydantic adds after a list index."""
    return [str(p) for i, p in enumerate(loc)
            if not (i and isinstance(loc[i - 1], int) and p in ("webhook", "email", "stream"))]


_CHANNEL = TypeAdapter(ChannelConfig)


def channel_config(raw: Mapping[str, Any]) -> Any:
    """A stored (rendered) channel config dict back as its pydantic model."""
    return _CHANNEL.validate_python(raw)


# --- working hours -------------------------------------------------------------------------


class WorkingHoursClock:
    """Working hours (``working_hours`` of the routing file) on the working days of the
    official calendar (rules/calendar.py: holidays off, 调休 days worked)."""

    def __init__(self, hours: WorkingHours, calendar: WorkingCalendar, tz: tzinfo) -> None:
        self.hours = hours
        self.calendar = calendar
        self.tz = tz

    def is_open(self, instant: datetime) -> bool:
        local = instant.astimezone(self.tz)
        return (self.calendar.is_workday(local.date())
                and self.hours.start <= local.time() < self.hours.end)

    def next_open(self, instant: datetime) -> datetime:
        """``instant`` if inside working hours, else the start of the next working hours."""
        if self.is_open(instant):
            return instant
        local = instant.astimezone(self.tz)
        day: date = local.date()
        if local.time() < self.hours.start and self.calendar.is_workday(day):
            return datetime.combine(day, self.hours.start, self.tz)
        for _ in range(400):
            day += timedelta(1)
            if self.calendar.is_workday(day):
                return datetime.combine(day, self.hours.start, self.tz)
        raise ValueError(f"no working day within 400 days after {day}")
