"""Dead letters that cannot be lost and cannot block a partition.

A rejected record goes to its dead-letter topic with the reason in its headers, and the
send is awaited until the broker has it: the source offset is committed only after that
(the caller's batch returns only then). A failed send is retried with back-off, holding
the batch (and so the commit) instead of dropping the record.

A record too large to be sent again as it is (over the producer's request limit, or
refused by the broker as too large) is dead-lettered as a bounded envelope instead: the
reason, its size, where it came from, a SHA-256 of its bytes and their head. A single
oversized record then never crash-loops its partition.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from .record import Record

log = logging.getLogger(__name__)

#: bytes of an oversized record kept in its envelope
ENVELOPE_HEAD_BYTES = 2048
#: headers and record overhead under the producer's request limit
_OVERHEAD = 4096
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)

#: Send one record to the dead-letter topic and wait until the broker has it:
#: (key, value, headers) -> when awaited, delivered (raises on failure).
Send = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[Any]]


def envelope(record: Record, reason: str, detail: str, source: str) -> bytes:
    """What stands for a record too large to dead-letter as it is."""
    raw = record.value or b""
    return orjson.dumps({
        "jiancha_envelope": 1,
        "reason": reason,
        "detail": detail[:1000],
        "source": source,
        "size": len(raw),
        "key_head": base64.b64encode((record.key or b"")[:256]).decode(),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "head": base64.b64encode(raw[:ENVELOPE_HEAD_BYTES]).decode(),
    })


class DeadLetterWriter:
    """Writes rejected records of ``source_topic`` through ``send``."""

    def __init__(self, send: Send, source_topic: str, max_bytes: int,
                 max_backoff: float = 5.0,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self.send = send
        self.source_topic = source_topic
        #: a record whose key and value exceed this is enveloped at once
        self.max_bytes = max(1024, max_bytes - _OVERHEAD)
        self.max_backoff = max_backoff
        self.on_error = on_error

    async def __call__(self, record: Record, reason: str, detail: str) -> None:
        source = f"{self.source_topic}:{record.partition}:{record.offset}"
        headers = [("jiancha-reason", reason.encode()), ("jiancha-error", detail.encode()[:4000]),
                   ("jiancha-source", source.encode())]
        key, value = record.key, record.value or b""
        if len(value) + len(key or b"") > self.max_bytes:
            key, value = (key or b"")[:256], envelope(record, reason, detail, source)
            headers.append(("jiancha-envelope", b"1"))
        backoff = 0.1
        while True:
            try:
                await self.send(key, value, headers)
                return
            except _TOO_LARGE as exc:  # the broker's limit is lower than ours
                if ("jiancha-envelope", b"1") in headers:
                    raise  # an envelope is a few KiB: something else is wrong
                log.warning("dead letter from %s refused as too large (%s); sent as an "
                            "envelope", source, exc)
                key, value = (key or b"")[:256], envelope(record, reason, detail, source)
                headers.append(("jiancha-envelope", b"1"))
            except Exception as exc:  # the broker away: the batch (and commit) waits
                if self.on_error is not None:
                    self.on_error(exc)
                log.warning("dead letter from %s not delivered (%r); retrying in %.1fs",
                            source, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
