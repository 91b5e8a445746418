"""Due cases judged ahead of their instant, held until it comes.

Deadlines in working days end at midnight of their last day, so the cases of one day fall
due together; judged only when that instant comes, the last of a burst is stored one
judgement per case later than the first. The deadline timer judges the cases that fall
due soon ahead (``CaseDriver.judge_ahead``), a few at a time between batches of events,
and keeps here what each will raise; when the instant comes the tick takes the judgement
instead of judging again, and stores it. A judgement is taken only if it still holds:
the case's stored state is the one it was judged on (no event of the case came
meanwhile), the index still waits for the same thing, and what the case waits for next
is not due yet. Otherwise the case is judged then, as without this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jiancha.rules.driver import Judged
from jiancha.rules.schedule import Due

#: cases held at most (a burst's worth: the rest are judged when they fall due)
MAX_HELD = 20_000


#: what storing a judgement sends, made ahead too: the alert sink's ``prepare`` of each of
#: its alerts (None: the sink makes none) and the case mirror's payload (None: none)
Sent = tuple[list[Any] | None, bytes | None]


class JudgedAhead:
    """The held judgements, by the case table's key: (the state judged on, the judgement,
    the new state encoded, what storing it sends)."""

    def __init__(self, max_held: int = MAX_HELD) -> None:
        self.max_held = max_held
        self.held: dict[bytes, tuple[bytes, Judged, bytes, Sent | None]] = {}

    def __len__(self) -> int:
        return len(self.held)

    def holds(self, key: str | bytes) -> bool:
        return key in self.held

    @property
    def full(self) -> bool:
        return len(self.held) >= self.max_held

    def keep(self, judged: Judged, raw: bytes, encoded: bytes, sent: Sent | None = None
             ) -> None:
        """A case judged on its stored state ``raw``; ``encoded``: its state after;
        ``sent``: what storing its alerts sends, if made."""
        self.held[judged.case_id] = (raw, judged, encoded, sent)  # type: ignore[index]

    def prune(self, earliest_due: float | None) -> None:
        """Drop what can no longer be taken: judgements of instants before every case's
        next due (their cases were judged, or were rescheduled by an event)."""
        if earliest_due is None:
            self.held.clear()
            return
        stale = [k for k, (_, j, _, _) in self.held.items()
                 if j.before.at is None or j.before.at < earliest_due]
        for key in stale:
            del self.held[key]

    def clear(self) -> None:
        """After a rebalance: the cases may be another worker's now."""
        self.held.clear()

    def against(self, table: Mapping[bytes, bytes]) -> TakenAhead:
        """The judgements as the tick takes them, checked against the case table now."""
        return TakenAhead(self, table)


class TakenAhead:
    """A tick's view of :class:`JudgedAhead` (a ``rules.driver.JudgedAheadStore``): takes
    a judgement that still holds, and keeps the encoded states of those it took and what
    storing them sends."""

    __slots__ = ("ahead", "encoded", "sent", "table")

    def __init__(self, ahead: JudgedAhead, table: Mapping[bytes, bytes]) -> None:
        self.ahead = ahead
        self.table = table
        #: the states after the judgements taken, encoded, by key
        self.encoded: dict[bytes, bytes] = {}
        #: what storing the judgements taken sends, where made, by key
        self.sent: dict[bytes, Sent] = {}

    def take(self, case_id: str | bytes, before: Due, now_ts: float) -> Judged | None:
        held = self.ahead.held.pop(case_id, None)  # type: ignore[call-overload]
        if held is None:
            return None
        raw, judged, encoded, sent = held
        waits = judged.waits.at
        if (judged.before != before or (waits is not None and waits <= now_ts)
                or self.table.get(case_id) != raw):  # type: ignore[call-overload]
            return None
        self.encoded[case_id] = encoded  # type: ignore[index]
        if sent is not None:
            self.sent[case_id] = sent  # type: ignore[index]
        return judged
