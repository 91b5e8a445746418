"""The states of the cases a worker wrote last, kept decoded.

A worker reads a case's state from the case table (its encoded record) for each batch with
an event of the case, and writes it back encoded after the batch. Decoding a record, then
deriving again what the checks read (the summary, the clock start, the counted deadlines),
cost about as much as judging the event. So the worker keeps the states it wrote last,
each with the record it wrote: an event of such a case takes that state as it is, with
what its last judgement kept, provided the table still holds that very record (the same
bytes object: nothing wrote the case since, no recovery, no sweep). Otherwise it decodes
the record, as before.

A state is taken out while a batch uses it and put back when the batch writes it: a batch
that fails half way leaves nothing changed behind. Events of a case often come close
together (live, a department reporting a case's steps at once, a backlog being caught up):
those find it here; a case whose next event comes after many others decodes its record.
"""

from __future__ import annotations

from collections import OrderedDict

from jiancha.rules.case import CaseState


class DecodedCases:
    """Up to ``size`` states by their key in the case table, with the record each was
    written as; the least recently written leave first."""

    __slots__ = ("_held", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._held: OrderedDict[bytes, tuple[bytes, CaseState]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def take(self, key: bytes, record: bytes) -> CaseState | None:
        """The state kept for ``key``, taken out, if it was written as ``record`` (the
        table's record for it now); else None (decode the record)."""
        held = self._held.pop(key, None)
        if held is not None and held[0] is record:
            return held[1]
        return None

    def put(self, key: bytes, record: bytes, state: CaseState) -> None:
        """Keep ``state``, just written to the table as ``record``."""
        if self.size <= 0:
            return
        held = self._held
        held[key] = (record, state)
        held.move_to_end(key)
        if len(held) > self.size:
            held.popitem(last=False)

    def clear(self) -> None:
        self._held.clear()
