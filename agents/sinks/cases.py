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


# KEYS: the cases' keys   ARGV: their values, in the same order, then the expiry (seconds)
_SET_ALL = """
local ttl = ARGV[#ARGV]
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'EX', ttl) end
return #KEYS
"""


class CaseMirror:
    def __init__(self, client: Any, prefix: str = "jc:", tz: tzinfo = UTC,
                 ttl_seconds: int = 400 * 86400) -> None:
        self.client = client
        self.prefix = prefix
        self.tz = tz
        self.ttl_seconds = ttl_seconds
        # every case of a call in one command: the client's cost is per command and per
        # argument (a pipeline of SETs spent more on them than on the steps themselves)
        self._set_all = client.register_script(_SET_ALL)

    def key(self, case_id: str) -> str:
        return f"{self.prefix}case:{case_id}"

    async def __call__(self, states: Iterable[CaseState]) -> None:
        unique = {s.case_id: s for s in states}
        if not unique:
            return
        try:
            # a value as a view: the client sends it as it is, not copied into the command
            values: list[Any] = [memoryview(orjson.dumps({
                "case_id": case_id, "item_code": state.item_code,
                "steps": case_steps(state, self.tz)})) for case_id, state in unique.items()]
            values.append(self.ttl_seconds)
            await self._set_all(keys=[self.key(case_id) for case_id in unique], args=values)
        except Exception as exc:  # the pages then show what the alert records
            log.warning("case steps of %d case(s) not mirrored to Redis: %r", len(unique), exc)
