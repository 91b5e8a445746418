"""What the worker's optional capabilities get to plug into, and the list of them.

An extension is ``register(app, ctx)``: it may add Faust agents, tables, timers and web
pages to ``app``, and observers to ``ctx.supervisor`` (``event_observers``,
``alert_observers``). Adding a capability is a module and a line in :data:`EXTENSIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust

from agents.metrics import EngineMetrics
from agents.supervisor import Supervisor
from settings import Settings


@dataclass
class WorkerContext:
    settings: Settings
    supervisor: Supervisor
    metrics: EngineMetrics
    cases: Any  # the Faust table of case states
    redis: Any  # redis.asyncio.Redis, shared


Extension = Callable[[faust.App, WorkerContext], None]

EXTENSIONS: list[Extension] = []
EXTENSIONS.append(lambda app, ctx: __import__("agents.windows", fromlist=["_"]).register(app, ctx))
EXTENSIONS.append(lambda app, ctx: __import__("agents.complaints", fromlist=["_"]).register(app, ctx))
EXTENSIONS.append(lambda app, ctx: __import__("agents.indicators", fromlist=["_"]).register(app, ctx))
