"""The alert-sink interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from jiancha.producers.contract import Alert

#: What a sink did with one alert: stored it anew, raised its severity, stored its
#: retraction, or knew it already.
Outcome = Literal["new", "escalated", "retracted", "known"]


class AlertSink(Protocol):
    async def publish(self, alerts: Sequence[Alert]) -> list[Outcome]:
        """Store alerts idempotently (same ``alert_id``, same or lower severity: no-op)."""
        ...

    async def close(self) -> None: ...
