"""Redis stream channel, for in-house systems: each notification becomes one entry (field
``notification`` = the JSON payload) on ``{prefix}{stream}`` in jiancha's own Redis. Readers
use the consumer group the notifier creates (``group``, from the first entry) with
XREADGROUP / XACK.

The entry is written by the same Lua script that takes the notification off its queue
(:class:`jiancha.notifier.types.AtomicChannel`): delivered exactly once, even across crashes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from redis.exceptions import ResponseError

from .types import Outbound, StreamConfig


class StreamChannel:
    type: ClassVar[str] = "stream"

    def __init__(self, config: StreamConfig, prefix: str) -> None:
        self.config = config
        self.key = prefix + config.stream

    def stream_write(self, message: Outbound) -> tuple[str, int, bytes]:
        return self.key, self.config.maxlen, message.body

    async def ensure_group(self, client: Any) -> None:
        if not self.config.group:
            return
        try:
            await client.xgroup_create(self.key, self.config.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def close(self) -> None:
        pass
