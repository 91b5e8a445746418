"""Where each partition of a topic stands for this worker: the offset committed, the
consumer's position and the end offset (high-water) of the last fetch."""

from __future__ import annotations

import faust
from faust.types import TP


class PartitionOffsets:
    """The offsets of ``topic``'s partitions, as the app's consumer knows them."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic

    def committed(self, partition: int) -> int | None:
        """The offset committed for the partition: where processing resumes after a
        rebalance (None: nothing committed, or not known yet)."""
        # Faust keeps it for its own bookkeeping only: no public accessor
        committed = getattr(self.app.consumer, "_committed_offset", None)
        return None if committed is None else committed.get(TP(self.topic, partition))

    def end(self, partition: int) -> int | None:
        """The end offset the last fetch reported (None: not fetched yet)."""
        return self.app.consumer.highwater(TP(self.topic, partition))

    async def position(self, partition: int) -> int | None:
        """The next offset the consumer fetches (ahead of what the agent has processed)."""
        return await self.app.consumer.position(TP(self.topic, partition))
