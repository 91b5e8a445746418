"""What the worker's optional capabilities plug into.

An extension is an :class:`Extension`: built from a :class:`WorkerContext`, it adds its
Faust agents, tables, timers and web pages in :meth:`Extension.install`, and overrides the
hooks it needs (:meth:`~Extension.on_records`, :meth:`~Extension.on_event`,
:meth:`~Extension.read_event` and :meth:`~Extension.record_read`, :meth:`~Extension.on_alert`,
:meth:`~Extension.on_complaint`). :class:`ExtensionHost` calls each hook of the extensions
that override it, and nothing for those that do not.
Adding a capability is a class and a line in ``agents.app.EXTENSIONS``;
``JIANCHA_EXTENSIONS`` chooses which run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import faust

from jiancha.producers.contract import Alert
from jiancha.rules.case import CaseState, Fact
from jiancha.rules.ingest import GateEvent
from jiancha.settings import WorkerSettings

from .metrics import EngineMetrics
from .record import Record
from .runtime import CommitBarrier
from .supervisor import Supervisor

#: (department, item code, received at epoch seconds) of a complaint seen for the first time
ComplaintSeen = Callable[[str | None, str | None, float], None]


@dataclass
class WorkerContext:
    settings: WorkerSettings
    supervisor: Supervisor
    metrics: EngineMetrics
    cases: Any  # the Faust table of case states
    redis: Any  # redis.asyncio.Redis, shared
    #: hooks run before every offset commit (records kept in memory until then)
    commit_barrier: CommitBarrier
    #: tells every extension's :meth:`Extension.on_complaint` of a complaint seen anew
    complaint_seen: ComplaintSeen


class Extension:
    """A capability beyond the case rules. The hooks do nothing here; an extension
    overrides those it needs. ``active`` False: the capability has nothing to do (its
    rules are off), and it is neither installed nor called."""

    active: bool = True

    def install(self, app: faust.App) -> None:
        """Add the extension's Faust agents, tables, timers and web pages to ``app``."""

    def on_records(self, records: list[tuple[Record, GateEvent | None, Fact | None]],
                   now: float) -> None:
        """Every batch of records of the events topic, each record in order with the
        accepted event and the fact its case took in (None and None when rejected), before
        their case states are written (a crash in between hands them over again, never
        loses them); ``now``: the clock's reading for the batch (epoch seconds)."""

    def on_event(self, event: GateEvent, state: CaseState, alerts: list[Alert],
                 now: datetime) -> None:
        """An accepted event after it was evaluated: the case state it left, the alerts
        it raised, its judged time."""

    def read_event(self, event: GateEvent, state: CaseState) -> Any:
        """An accepted event as it is judged, with its case's state just as the event left
        it (a later event of the batch may add facts to it): read, record nothing, and
        return what was read (None: nothing), which :meth:`record_read` records. For what
        reads the state as of the event: no copy of it is made, and what the judgement
        derived is still current."""
        return None

    def record_read(self, read: list[Any]) -> None:
        """Record what :meth:`read_event` read of a batch's events (where it was not None),
        in the records' order, once the batch's alerts are stored (where :meth:`on_event`
        is called): one call per batch, not one per event."""

    def on_alert(self, alert: Alert, partition: int | None) -> None:
        """An alert the sink stored anew, escalated or retracted (not a known one), and the
        partition of its case when known."""

    def on_complaint(self, department: str | None, item_code: str | None,
                     received_at: float) -> None:
        """A complaint seen for the first time (its department, item, when received)."""


def _overrides(extension: Extension, hook: str) -> bool:
    return getattr(type(extension), hook) is not getattr(Extension, hook)


class ExtensionHost:
    """The extensions of one worker and their hooks."""

    def __init__(self) -> None:
        self.extensions: list[Extension] = []
        self._complaint_hooks: list[ComplaintSeen] = []

    def add(self, extension: Extension) -> None:
        if not extension.active:
            return
        self.extensions.append(extension)
        if _overrides(extension, "on_complaint"):
            self._complaint_hooks.append(extension.on_complaint)

    def complaint_seen(self, department: str | None, item_code: str | None,
                       received_at: float) -> None:
        for hook in self._complaint_hooks:
            hook(department, item_code, received_at)

    def install(self, app: faust.App, supervisor: Supervisor) -> None:
        """Install each extension in ``app``; hand the supervisor the hooks it calls (only
        those overridden: with none, the supervisor's per-record loops are skipped)."""
        for extension in self.extensions:
            extension.install(app)
            if _overrides(extension, "on_records"):
                supervisor.forwarders.append(extension.on_records)
            if _overrides(extension, "on_event"):
                supervisor.event_observers.append(extension.on_event)
            if _overrides(extension, "read_event"):
                supervisor.event_readers.append((extension.read_event, extension.record_read))
            if _overrides(extension, "on_alert"):
                supervisor.alert_observers.append(extension.on_alert)


PageHandler = Callable[[Any, Any], Awaitable[Any]]


def add_page(app: faust.App, path: str, handler: PageHandler) -> None:
    """Serve ``handler(web, request)`` at ``path``. Faust makes a view class of the function
    it is given, whose ``get`` it then is: a bound method would not receive ``web``."""

    async def page(web: Any, request: Any) -> Any:
        return await handler(web, request)

    page.__name__ = page.__qualname__ = getattr(handler, "__name__", "page")
    page.__doc__ = handler.__doc__
    app.page(path)(page)
