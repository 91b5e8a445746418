"""The alert-sink interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from jiancha.producers.contract import Alert

#: What a sink did with one alert: stored it anew, raised its severity, stored its
#: retraction, or knew it already.
Outcome = Literal["new", "escalated", "retracted", "known"]


class AlertSink(Protocol):
    async def publish(self, alerts: Sequence[Alert]) -> list[Outcome]:
        """Store alerts idempotently (same ``alert_id``, same or lower severity: no-op)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class PreparingAlertSink(AlertSink, Protocol):
    """A sink that can turn alerts into what it sends ahead of storing them: the deadline
    timer prepares the alerts of cases judged ahead of their instant, so that when it comes
    they are only sent."""

    def prepare(self, alert: Alert) -> Any:
        """What storing ``alert`` sends, made now; handed back to :meth:`publish`."""
        ...

    async def publish(self, alerts: Sequence[Alert],
                      prepared: Sequence[Any | None] | None = None) -> list[Outcome]:
        """As :meth:`AlertSink.publish`; ``prepared``: :meth:`prepare`'s result for each
        alert where made (None where not)."""
        ...
