"""The end offsets of the events topic's partitions, asked of the broker by a client of the
worker's own, on the worker's event loop.

The deadline timer asks them at every tick by the clock (``PartitionLag.partition_now``),
and a deadline fires one round trip later. Faust's consumer runs in a thread of its own: a
call into it waits until the worker's thread lets go of the GIL, up to the switch interval
(``JIANCHA_GIL_SWITCH_INTERVAL_MS``, 20 ms) while the worker is busy, where the broker
answers in under a millisecond. This client has no group and reads no records.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

#: how long an answer may take before the fetch's view is used instead
ASK_TIMEOUT_SECONDS = 2.0


class EndOffsetsReader:
    """``ends(partitions)``: the broker's end offset of each of the topic's partitions
    (None when the broker did not answer in time: the caller keeps its own view). The
    client connects on the first call, and again after a failure."""

    def __init__(self, topic: str, client_kwargs: dict[str, Any],
                 timeout: float = ASK_TIMEOUT_SECONDS) -> None:
        self.topic = topic
        self.client_kwargs = client_kwargs
        self.timeout = timeout
        self._client: AIOKafkaConsumer | None = None

    async def ends(self, partitions: list[int]) -> dict[int, int] | None:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        try:
            client = await asyncio.wait_for(self._connected(), self.timeout)
            ends = await asyncio.wait_for(client.end_offsets(tps), self.timeout)
        except Exception as exc:  # the next call connects again
            log.debug("end offsets not known: %r", exc)
            await self.close()
            return None
        return {tp.partition: end for tp, end in ends.items() if end is not None}

    async def _connected(self) -> AIOKafkaConsumer:
        if self._client is None:
            client = AIOKafkaConsumer(enable_auto_commit=False, **self.client_kwargs)
            try:
                await client.start()
            except BaseException:
                await client.stop()
                raise
            self._client = client
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.stop()
            except Exception as exc:  # closing a broken connection
                log.debug("end offsets client not stopped cleanly: %r", exc)
