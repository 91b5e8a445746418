"""The worker: a :class:`Worker` builds the Faust app with the supervising agent, the
deadline timer, the metrics and health pages (the parts in ``agents/parts.py``) and the
extensions chosen by ``JIANCHA_EXTENSIONS`` (:data:`EXTENSIONS`).

``create_app(settings)`` builds everything; nothing happens at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST

from jiancha.producers.keys import DepartmentKeys
from jiancha.rules.clock import make_clock
from jiancha.rules.factory import build_engine
from jiancha.rules.indicators import alert_tally
from jiancha.rules.ingest import Gate
from jiancha.rules.state_codec import decode_state
from jiancha.settings import WorkerSettings

from .complaints import Complaints
from .dead_letters import DeadLetterWriter
from .end_offsets import EndOffsetsReader
from .extensions import Extension, ExtensionHost, WorkerContext, add_page
from .indicators import Indicators
from .metrics import EngineMetrics
from .parts import (
    BatchIntake,
    DeadlineTimer,
    FinishedSweep,
    LagReporter,
    PartitionLag,
    PartitionWatchdog,
    WebEndpoints,
)
from .runtime import (
    CoalescedChangelog,
    CommitBarrier,
    PartitionOffsets,
    install_batch_source,
)
from .sinks.cases import CaseMirror
from .sinks.redis import RedisAlertSink, redis_client
from .supervisor import Supervisor
from .windows import Windows

log = logging.getLogger(__name__)


def faust_credentials(settings: WorkerSettings) -> Any:
    """Map the SASL settings to Faust's broker credentials (None for PLAINTEXT)."""
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    ssl_context = None
    if proto in ("SASL_SSL", "SSL"):
        ssl_context = settings.kafka_connection().ssl_context()
    if proto == "SSL":
        return faust.SSLCredentials(ssl_context)
    if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
        raise ValueError(
            f"JIANCHA_KAFKA_SECURITY_PROTOCOL={proto} needs JIANCHA_KAFKA_SASL_USERNAME and "
            "JIANCHA_KAFKA_SASL_PASSWORD"
        )
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context,
    )


def end_offsets_reader(settings: WorkerSettings) -> EndOffsetsReader:
    """The worker's own client for the events topic's end offsets, logged in as Faust's
    consumer is (the same brokers, TLS and SASL settings)."""
    return EndOffsetsReader(settings.events_topic, settings.kafka_connection().client_kwargs())


#: name (as in JIANCHA_EXTENSIONS) -> the extension, built from the worker's context
EXTENSIONS: dict[str, Callable[[WorkerContext], Extension]] = {
    "windows": Windows,
    "complaints": Complaints,
    "indicators": Indicators,
}


class FaustPartitions:
    """The :class:`~agents.parts.Partitions` port over Faust's consumer and assignor."""

    def __init__(self, app: faust.App, topic: str, ends: EndOffsetsReader | None = None) -> None:
        self.app = app
        self.topic = topic
        self.offsets = PartitionOffsets(app, topic)
        #: asks the broker's end offsets without a call into Faust's consumer thread
        self.ends = ends

    @property
    def rebalancing(self) -> bool:
        return bool(self.app.rebalancing)

    def active(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives()
                if tp.topic == self.topic}

    def end(self, partition: int) -> int | None:
        return self.app.consumer.highwater(faust.types.TP(self.topic, partition))

    def committed(self, partition: int) -> int | None:
        return self.offsets.committed(partition)

    async def broker_ends(self, partitions: list[int]) -> dict[int, int] | None:
        """The end offsets the broker has now (one request), where the last fetch may be
        stale."""
        if not partitions:
            return {}
        if self.ends is not None:
            return await self.ends.ends(partitions)
        try:
            ends = await self.app.consumer.highwaters(
                *(faust.types.TP(self.topic, p) for p in partitions))
        except Exception as exc:  # then the fetch's view it is, as before
            log.debug("end offsets not known: %r", exc)
            return None
        return {tp.partition: end for tp, end in ends.items() if end is not None}

    async def position(self, partition: int) -> int | None:
        return await self.app.consumer.position(faust.types.TP(self.topic, partition))

    async def restart(self, partition: int, offset: int) -> None:
        tp = faust.types.TP(self.topic, partition)
        self.app.consumer.resume_partitions({tp})
        await self.app.consumer.seek(tp, offset)


class RedisOpenAlerts:
    """Open alerts by department, read where the alert sink keeps them."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    async def open_counts(self, departments: list[str]) -> list[int]:
        async with self.client.pipeline(transaction=False) as pipe:
            for d in departments:
                pipe.zcard(f"{self.prefix}open:{d}")
            return list(await pipe.execute())


class Worker:
    """One worker: the Faust app, the supervisor and the parts around it."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.metrics = metrics = EngineMetrics()
        engine = build_engine(
            settings.catalog_dir, settings.rules_dir, settings.calendar_file, settings.timezone,
            settings.allowed_lateness_seconds,
            on_calendar_fallback=lambda year: metrics.calendar_fallback.labels(str(year)).inc(),
        )
        engine.on_check_error = lambda rule: metrics.check_errors.labels(rule).inc()
        keys = (DepartmentKeys.load(settings.department_keys_file)
                if settings.department_keys_file else None)
        gate = Gate(engine.catalog, keys, unsigned_departments=frozenset(settings.unsigned_departments))
        gate.future_tolerance = gate.future_tolerance.__class__(
            seconds=settings.future_tolerance_seconds)
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        self.redis = client = redis_client(settings.redis_url, settings.redis_username, password)
        tz = engine.working_time.tz
        self.sink = sink = RedisAlertSink(
            client, settings.redis_prefix,
            on_error=lambda exc: metrics.sink_errors.labels("redis").inc(),
            tally=lambda alert: alert_tally(alert, tz))
        clock = make_clock(settings.clock_start, settings.clock_speed, settings.clock_anchor)
        self.supervisor = sv = Supervisor(engine, gate, clock, sink, metrics)
        sv.case_mirror = CaseMirror(client, settings.redis_prefix, tz)
        self.app = app = self._faust_app(settings)

        n = settings.topic_partitions
        events = app.topic(settings.events_topic, partitions=n, key_type=bytes, value_type=bytes)
        self.dlq = app.topic(settings.dlq_topic, partitions=n, key_type=bytes, value_type=bytes)
        self.cases = cases = app.Table("cases", default=None, partitions=n, key_type=bytes,
                                       value_type=bytes)
        # a case's events often come close together (live, or a backlog): one changelog record
        # per case and commit interval, sent before the offsets of its events are committed
        self.commit_barrier = CommitBarrier(app)
        self.case_changelog = CoalescedChangelog(app, cases, settings.events_topic, self.commit_barrier)
        dead_letter = DeadLetterWriter(
            self.send_dead_letter, settings.events_topic,
            max(1_000_000, settings.kafka_producer_batch_bytes),
            on_error=lambda exc: metrics.sink_errors.labels("dead_letter").inc())

        ends = end_offsets_reader(settings)
        app.on_before_shutdown.connect(self._close_end_offsets_reader)
        self._end_offsets = ends
        self.partitions = partitions = FaustPartitions(app, settings.events_topic, ends)
        self.lag = lag = PartitionLag(sv, partitions)
        self.deadlines = DeadlineTimer(sv, cases, lag, self.write_state,
                                       settings.deadline_tick_seconds,
                                       settings.deadline_judge_ahead_seconds)
        self.intake = BatchIntake(sv, cases, self.write_state, dead_letter,
                                  on_due=self.deadlines.due)
        self.sweep = FinishedSweep(sv, cases, partitions, self.case_changelog.delete,
                                   settings.finished_case_retention_days * 86400)
        self.watchdog = PartitionWatchdog(sv, partitions, metrics)
        self.reporter = LagReporter(sv, partitions, metrics,
                                    RedisOpenAlerts(client, settings.redis_prefix))
        self.endpoints = WebEndpoints(sv, cases, partitions, lag, sink, metrics.registry)

        # events reach the agent a fetched batch at a time, not through a Faust stream (see
        # agents/runtime/batch_source.py: the per-message path was most of a worker's time)
        install_batch_source(app, events, self.intake.on_batch,
                             fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)
        app.task(self.deadlines.run)
        app.timer(60.0, name="finished_cases")(self.sweep.sweep)
        cases.on_recover(self.rebuild_deadline_index)
        app.timer(2.0, name="partition_watchdog")(self.watchdog.check)
        app.timer(5.0, name="observe")(self.reporter.observe)
        add_page(app, "/metrics", self.metrics_page)
        add_page(app, "/progress", self.progress_page)
        add_page(app, "/health", self.health_page)

        # Capabilities beyond the case rules: each extension adds its agents, tables,
        # timers and pages, and the hooks it overrides are called.
        self.extensions = ExtensionHost()
        ctx = WorkerContext(settings=settings, supervisor=sv, metrics=metrics, cases=cases,
                            redis=client, complaint_seen=self.extensions.complaint_seen,
                            commit_barrier=self.commit_barrier)
        for name in settings.extensions:
            self.extensions.add(EXTENSIONS[name](ctx))
        self.extensions.install(app, sv)
        app.task(self.started)

    @staticmethod
    def _faust_app(settings: WorkerSettings) -> faust.App:
        return faust.App(
            settings.app_id,
            broker=settings.broker_url,
            broker_credentials=faust_credentials(settings),
            store="memory://",
            # the check compares offsets persisted in a local RocksDB with the changelog's end,
            # against a deleted topic; with in-memory stores nothing local can be stale, and
            # it tripped on the end offsets Tansu reports while a standby reads a changelog
            # that is being written (a worker crashed on a healthy changelog)
            recovery_consistency_check=False,
            # no standby copies of other workers' tables: a taken-over partition is recovered
            # from its changelog (the state is small: about 1 KiB per open case), and Faust's
            # standby reader crashed the worker on a negative start offset with Tansu
            table_standby_replicas=0,
            datadir=str(settings.data_dir),
            web_host=settings.web_host,
            web_port=settings.web_port,
            web_enabled=True,
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replicas,
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            autodiscover=False,
            broker_session_timeout=settings.kafka_session_timeout_seconds,
            broker_rebalance_timeout=settings.kafka_rebalance_timeout_seconds,
            # commit often: a partition taken over is read again from its committed offset
            # (from the start when there is none; tests/integration/test_faults.py kills a
            # worker in both cases)
            broker_commit_interval=settings.kafka_commit_interval_seconds,
            broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_seconds / 3),
            broker_max_poll_records=settings.kafka_max_poll_records,
            producer_max_batch_size=settings.kafka_producer_batch_bytes,
            producer_max_request_size=max(1_000_000, settings.kafka_producer_batch_bytes),
        )

    async def send_dead_letter(self, key: bytes | None, value: bytes,
                               headers: list[tuple[str, bytes]]) -> None:
        delivered = await self.dlq.send(key=key, value=value, headers=headers)
        await delivered  # the broker has it: only then may the source offset be committed

    def write_state(self, key: bytes, value: bytes, partition: int) -> None:
        # no current event (a batch, a timer): write the store and the changelog partition
        # explicitly (the case's partition, recorded in its state)
        self.case_changelog.set(key, value, partition)

    async def _close_end_offsets_reader(self, sender: Any, **_: Any) -> None:
        await self._end_offsets.close()

    async def rebuild_deadline_index(self) -> None:
        actives = self.partitions.active()
        self.watchdog.assigned(actives)
        states = ((k, decode_state(v, k)) for k, v in self.cases.data.items() if v is not None)
        n_cases = self.supervisor.rebuild_index(states, actives)
        log.info("deadline index rebuilt: %d cases on partitions %s, %d scheduled",
                 n_cases, sorted(actives), self.supervisor.scheduled())

    async def metrics_page(self, web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway
        return web.bytes(self.endpoints.metrics(),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4")

    async def progress_page(self, web: Any, request: Any) -> Any:
        """Events processed and when (wall clock): cheap to poll, unlike /metrics."""
        return web.json(self.endpoints.progress())

    async def health_page(self, web: Any, request: Any) -> Any:
        return web.json(self.endpoints.health())

    async def started(self) -> None:
        try:
            await self.sink.check()
        except Exception as exc:
            log.critical("%s", exc)
            await self.app.crash(exc)  # a wrong password will not fix itself: stop the worker
            return
        self.metrics.worker_up.set(1)


def create_app(settings: WorkerSettings) -> faust.App:
    return Worker(settings).app
