"""One Kafka record as the supervising agent takes it (no Faust here: the supervisor, replay
tools and tests use it without a worker)."""

from __future__ import annotations

from typing import NamedTuple


class Record(NamedTuple):
    """One Kafka record of a batch: what the handler needs and nothing else."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    timestamp: float | None  # the record's Kafka timestamp, epoch seconds
