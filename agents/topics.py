"""Create the worker's topics with the configured partition count before Faust starts.

Faust creates only its internal topics (changelogs); a source topic auto-created by a
broker gets the broker's default partition count, which then mismatches the table's
changelog. So the worker creates ``approval-events``, its DLQ and ``complaints`` itself,
and refuses to start when an existing topic has another partition count.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from jiancha.settings import WorkerSettings

log = logging.getLogger(__name__)


class TopicMismatch(RuntimeError):
    pass


async def ensure_topics(settings: WorkerSettings, timeout: float = 30.0) -> None:
    wanted = [settings.events_topic, settings.dlq_topic, settings.complaints_topic,
              settings.complaints_dlq_topic]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                request_timeout_ms=int(timeout * 1000),
                                **settings.kafka_connection().security_kwargs())
    await admin.start()
    try:
        existing = await _partition_counts(admin, wanted)
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(t, settings.topic_partitions,
                                                    settings.topic_replicas) for t in missing])
                log.info("created topics %s with %d partitions", missing, settings.topic_partitions)
            except TopicAlreadyExistsError:
                pass  # another worker was quicker
            existing = await _partition_counts(admin, wanted)
        for topic in wanted:
            count = existing.get(topic)
            if count is not None and count != settings.topic_partitions:
                raise TopicMismatch(
                    f"topic {topic!r} has {count} partitions but JIANCHA_TOPIC_PARTITIONS="
                    f"{settings.topic_partitions}; set JIANCHA_TOPIC_PARTITIONS={count} or "
                    "recreate the topic (the case table's changelog must match it)")
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    # list first: a metadata request for a missing topic makes some brokers auto-create it
    present = [t for t in topics if t in set(await admin.list_topics())]
    counts: dict[str, int] = {}
    if not present:
        return counts
    for meta in await admin.describe_topics(present):
        if meta.get("error_code", 0) == 0 and meta.get("partitions"):
            counts[meta["topic"]] = len(meta["partitions"])
    return counts


def ensure_topics_sync(settings: WorkerSettings) -> None:
    asyncio.run(ensure_topics(settings))
