"""The steps of cases that raised alerts, mirrored to Redis for the alert pages.

A person opening an alert's page wants the case's steps on a time line; the case state
lives in the worker's table, so each time a case raises or changes an alert the worker
writes its steps to ``{prefix}case:{case_id}`` (JSON, expiring after ``ttl_seconds``).
Informational: a failed write is logged and dropped, never holds up the alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import orjson

from jiancha.rules.case import CaseState

log = logging.getLogger(__name__)


def case_steps(state: CaseState, tz: tzinfo = UTC) -> list[dict[str, Any]]:
    """A case's accepted events in event-time order, as the pages show them. The instants
    are datetimes in ``tz``: orjson writes them as ``isoformat`` would, for a third of
    the cost (the mirror is written while a burst of due cases is stored)."""
    at = datetime.fromtimestamp
    return [{"event_id": f.event_id, "step": str(f.step), "department": f.department,
             "actor": f.actor, "occurred_at": at(f.at, tz), "received_at": at(f.received, tz)}
            for f in sorted(state.facts, key=lambda f: f.at)]


# KEYS: the cases' keys   ARGV: seconds to live, then each case's JSON. One call for all:
# a SET each would cost the worker its per-command work once per case.
_SET_CASES = """
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1]) end
return #KEYS
"""


class CaseMirror:
    def __init__(self, client: Any, prefix: str = "jc:", tz: tzinfo = UTC,
                 ttl_seconds: int = 400 * 86400) -> None:
        self.client = client
        self.prefix = prefix
        self.tz = tz
        self.ttl_seconds = ttl_seconds
        self._set_cases = client.register_script(_SET_CASES)

    def key(self, case_id: str) -> str:
        return f"{self.prefix}case:{case_id}"

    def payload(self, state: CaseState) -> bytes:
        """What is written for a case (the deadline timer makes it ahead for the cases it
        judges ahead of their instant)."""
        return orjson.dumps({"case_id": state.case_id, "item_code": state.item_code,
                             "steps": case_steps(state, self.tz)})

    async def __call__(self, states: Iterable[CaseState],
                       payloads: Mapping[str, bytes] | None = None) -> None:
        """Write the steps of these cases; ``payloads``: :meth:`payload` of some of them,
        made ahead."""
        unique = {s.case_id: s for s in states}
        if not unique:
            return
        made = payloads or {}
        try:
            await self._set_cases(
                keys=[self.key(case_id) for case_id in unique],
                args=[self.ttl_seconds, *(made.get(case_id) or self.payload(state)
                                          for case_id, state in unique.items())])
        except Exception as exc:  # the pages then show what the alert records
            log.warning("case steps of %d case(s) not mirrored to Redis: %r", len(unique), exc)
