"""What the worker's optional capabilities get to plug into, and the list of them.

An extension is ``register(app, ctx)``: it may add Faust agents, tables, timers and web
pages to ``app``, and observers to ``ctx.supervisor`` (``event_observers``,
``alert_observers``). Adding a capability is a module and a line in :data:`EXTENSIONS`;
``JIANCHA_EXTENSIONS`` chooses which run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust

from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.supervisor import Supervisor
from jiancha.settings import WorkerSettings


@dataclass
class WorkerContext:
    settings: WorkerSettings
    supervisor: Supervisor
    metrics: EngineMetrics
    cases: Any  # the Faust table of case states
    redis: Any  # redis.asyncio.Redis, shared


Extension = Callable[[faust.App, WorkerContext], None]


def _module(name: str) -> Extension:
    # imported when registered, not here: the extensions import this module
    return lambda app, ctx: importlib.import_module(name).register(app, ctx)


#: name (as in JIANCHA_EXTENSIONS) -> register function
EXTENSIONS: dict[str, Extension] = {
    "windows": _module("jiancha.agents.windows"),
    "complaints": _module("jiancha.agents.complaints"),
    "indicators": _module("jiancha.agents.indicators"),
}
