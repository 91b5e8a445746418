"""The steps of cases that raised alerts, mirrored to Redis for the alert pages.

A person opening an alert's page wants the case's steps on a time line; the case state
lives in the worker's table, so each time a case raises or changes an alert the worker
writes its steps to ``{prefix}case:{case_id}`` (JSON, expiring after ``ttl_seconds``).
Informational: a failed write is logged and dropped, never holds up the alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any

import orjson

from jiancha.rules.case import CaseState

log = logging.getLogger(__name__)


def case_steps(state: CaseState, tz: tzinfo = UTC) -> list[dict[str, Any]]:
    """A case's accepted events in event-time order, as the pages show them."""
    return [{"event_id": f.event_id, "step": str(f.step), "department": f.department,
             "actor": f.actor,
             "occurred_at": datetime.fromtimestamp(f.at, tz).isoformat(),
             "received_at": datetime.fromtimestamp(f.received, tz).isoformat()}
            for f in sorted(state.facts, key=lambda f: f.at)]


class CaseMirror:
    def __init__(self, client: Any, prefix: str = "jc:", tz: tzinfo = UTC,
                 ttl_seconds: int = 400 * 86400) -> None:
        self.client = client
        self.prefix = prefix
        self.tz = tz
        self.ttl_seconds = ttl_seconds

    def key(self, case_id: str) -> str:
        return f"{self.prefix}case:{case_id}"

    async def __call__(self, states: Iterable[CaseState]) -> None:
        unique = {s.case_id: s for s in states}
        if not unique:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for case_id, state in unique.items():
                    pipe.set(self.key(case_id), orjson.dumps({
                        "case_id": case_id, "item_code": state.item_code,
                        "steps": case_steps(state, self.tz)}), ex=self.ttl_seconds)
                await pipe.execute()
        except Exception as exc:  # the pages then show what the alert records
            log.warning("case steps of %d case(s) not mirrored to Redis: %r", len(unique), exc)
