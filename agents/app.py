"""The Faust app: the supervising agent, the deadline timer, metrics and health pages.

``create_app(settings)`` builds everything; nothing happens at import time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jiancha.agents.batch_consumer import install as install_batch_handler
from jiancha.agents.commit_barrier import CoalescedChangelog
from jiancha.agents.dead_letters import DeadLetterWriter
from jiancha.agents.extensions import EXTENSIONS, WorkerContext
from jiancha.agents.metrics import EngineMetrics
from jiancha.agents.record import Record
from jiancha.agents.sinks.cases import CaseMirror
from jiancha.agents.sinks.redis import RedisAlertSink, redis_client
from jiancha.agents.supervisor import Supervisor
from jiancha.producers.keys import DepartmentKeys
from jiancha.rules.clock import make_clock
from jiancha.rules.factory import build_engine
from jiancha.rules.indicators import alert_tally
from jiancha.rules.ingest import Gate
from jiancha.rules.state_codec import decode_state
from jiancha.settings import Settings

log = logging.getLogger(__name__)
STUCK_AFTER_SECONDS = 10.0


def faust_credentials(settings: Settings) -> Any:
    """Map the SASL settings to Faust's broker credentials (None for PLAINTEXT)."""
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    ssl_context = None
    if proto in ("SASL_SSL", "SSL"):
        from jiancha.producers.client import kafka_ssl_context

        ssl_context = kafka_ssl_context(settings)
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


#: cases a minute the finished-case sweep looks at (a few tens of milliseconds)
FINISHED_SWEEP_CASES = 20_000


def create_app(settings: Settings) -> faust.App:
    metrics = EngineMetrics()
    engine = build_engine(
        settings.catalog_dir, settings.rules_dir, settings.calendar_file, settings.timezone,
        settings.allowed_lateness_seconds,
        on_calendar_fallback=lambda year: metrics.calendar_fallback.labels(str(year)).inc(),
    )
    engine.on_check_error = lambda rule: metrics.check_errors.labels(rule).inc()
    keys = DepartmentKeys.load(settings.department_keys_file) if settings.department_keys_file else None
    gate = Gate(engine.catalog, keys, unsigned_departments=frozenset(settings.unsigned_departments))
    gate.future_tolerance = gate.future_tolerance.__class__(seconds=settings.future_tolerance_seconds)
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    client = redis_client(settings.redis_url, settings.redis_username, password)
    tz = engine.working_time.tz
    sink = RedisAlertSink(client, settings.redis_prefix,
                          on_error=lambda exc: metrics.sink_errors.labels("redis").inc(),
                          tally=lambda alert: alert_tally(alert, tz))
    clock = make_clock(settings.clock_start, settings.clock_speed, settings.clock_anchor)
    sv = Supervisor(engine, gate, clock, sink, metrics)
    sv.case_mirror = CaseMirror(client, settings.redis_prefix, tz)

    n = settings.topic_partitions
    app = faust.App(
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
        topic_partitions=n,
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
    app.jiancha = sv  # type: ignore[attr-defined]  # for tests and the CLI
    events = app.topic(settings.events_topic, partitions=n, key_type=bytes, value_type=bytes)
    dlq = app.topic(settings.dlq_topic, partitions=n, key_type=bytes, value_type=bytes)
    cases = app.Table("cases", default=None, partitions=n, key_type=bytes, value_type=bytes)
    # a case's events often come close together (live, or a backlog): one changelog record
    # per case and commit interval, sent before the offsets of its events are committed
    case_changelog = CoalescedChangelog(app, cases, settings.events_topic)

    def active_partitions() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives()
                if tp.topic == settings.events_topic}

    async def send_dead_letter(key: bytes | None, value: bytes,
                               headers: list[tuple[str, bytes]]) -> None:
        delivered = await dlq.send(key=key, value=value, headers=headers)
        await delivered  # the broker has it: only then may the source offset be committed

    dead_letter = DeadLetterWriter(
        send_dead_letter, settings.events_topic, max(1_000_000, settings.kafka_producer_batch_bytes),
        on_error=lambda exc: metrics.sink_errors.labels("dead_letter").inc())

    def write_state(key: bytes, value: bytes, partition: int) -> None:
        # no current event (a batch, a timer): write the store and the changelog partition
        # explicitly (the case's partition, recorded in its state)
        case_changelog.set(key, value, partition)

    async def supervise(records: list[Record]) -> None:
        """The supervising agent: every fetched batch of the events topic."""
        await sv.on_batch(records, cases.data, write_state, dead_letter)

    # events reach the agent a fetched batch at a time, not through a Faust stream (see
    # agents/batch_consumer.py: the per-message path was most of a worker's time)
    install_batch_handler(app, events, supervise,
                          fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)

    async def lagging(partition: int, end: int | None = None) -> bool:
        """Whether records on this partition wait to be processed (a backlog), by the end
        offset ``end`` if given, else the one the last fetch reported."""
        tp = faust.types.TP(settings.events_topic, partition)
        if end is None:
            try:
                end = app.consumer.highwater(tp)
            except Exception:
                end = None
        if end is None:
            return True  # not fetched yet (e.g. just taken over): judge by its own time
        last = sv.last_offset.get(partition)
        if last is None:
            # nothing processed since the assignment: compare where processing starts (the
            # committed offset; None = nothing committed, from the start) with the end. Not
            # the fetch position: the fetcher reads ahead of what the agent has processed.
            start = app.consumer._committed_offset.get(tp)
            return (start or 0) < end
        return last + 1 < end

    async def broker_ends(partitions: list[int]) -> dict[int, int] | None:
        """The end offsets the broker has now (one request), where the last fetch may be
        stale: a batch takes a whole fetch, so the end it reported can be exactly where
        the batch stops while more records have arrived since (seen during a Redis outage:
        deadlines fired by the wall clock with steps of their cases still unread)."""
        if not partitions:
            return {}
        try:
            ends = await app.consumer.highwaters(
                *(faust.types.TP(settings.events_topic, p) for p in partitions))
        except Exception as exc:  # then the fetch's view it is, as before
            log.debug("end offsets not known: %r", exc)
            return None
        return {tp.partition: end for tp, end in ends.items() if end is not None}

    @app.timer(settings.deadline_tick_seconds, name="fire_deadlines")
    async def fire_deadlines() -> None:
        if app.rebalancing or not sv.ready:
            return

        async def partition_now() -> dict[int, tuple[Any, bool]]:
            out: dict[int, tuple[Any, bool]] = {}
            if app.rebalancing:  # began while the timer waited for the batch
                return out
            partitions = sorted(active_partitions())
            caught_up = [p for p in partitions if not await lagging(p)]
            ends = await broker_ends(caught_up)  # confirmed with the broker before trusting
            for p in partitions:
                behind = p not in caught_up or (
                    ends is not None and await lagging(p, ends.get(p)))
                judged = sv.partition_clock(p, behind)
                if judged is not None:
                    out[p] = judged
            return out

        await sv.on_tick(cases, partition_now, write_state)

    sweep_from = 0  # where the next sweep of the case table starts

    @app.timer(60.0, name="finished_cases")
    async def remove_finished_cases() -> None:
        """A slice of the case table a minute: finished cases past their retention leave it
        (with a tombstone in its changelog), so the table holds the open cases, not all."""
        nonlocal sweep_from
        if app.rebalancing or not sv.ready:
            return
        keys = list(cases.data.keys())
        if sweep_from >= len(keys):
            sweep_from = 0
        chunk = keys[sweep_from:sweep_from + FINISHED_SWEEP_CASES]
        sweep_from += len(chunk)
        await sv.sweep_finished(cases.data, chunk, dict(sv.partition_ts),
                                settings.finished_case_retention_days * 86400,
                                case_changelog.delete)

    assigned_at: dict[int, float] = {}  # monotonic time each partition was (re)assigned

    @cases.on_recover
    async def rebuild_deadline_index() -> None:
        actives = active_partitions()
        now = time.monotonic()
        for p in list(assigned_at):
            if p not in actives:
                del assigned_at[p]
        for p in actives:
            assigned_at.setdefault(p, now)
        states = (decode_state(v) for v in cases.data.values() if v is not None)
        n_cases = sv.rebuild_index(states, actives)
        log.info("deadline index rebuilt: %d cases on partitions %s, %d scheduled",
                 n_cases, sorted(actives), sv.scheduled())

    @app.timer(2.0, name="partition_watchdog")
    async def partition_watchdog() -> None:
        """A partition taken over with records waiting but none delivered for a while is
        resumed and sought to where processing starts. Seen with Faust on Tansu after a
        worker was killed before its first offset commit; a no-op otherwise."""
        if not sv.ready or app.rebalancing:
            return
        now = time.monotonic()
        for p in active_partitions():
            since = assigned_at.get(p)
            if p in sv.last_offset or since is None or now - since < STUCK_AFTER_SECONDS:
                continue
            tp = faust.types.TP(settings.events_topic, p)
            end = app.consumer.highwater(tp)
            start = app.consumer._committed_offset.get(tp) or 0
            if end is not None and start >= end:
                continue  # nothing to deliver
            log.warning("partition %s of %s: records waiting (from %s to %s) but none "
                        "delivered for %.0fs; resuming it", p, settings.events_topic, start, end,
                        now - since)
            metrics.partition_restarts.inc()
            app.consumer.resume_partitions({tp})
            await app.consumer.seek(tp, start)
            assigned_at[p] = now

    @app.timer(5.0, name="observe")
    async def observe() -> None:
        await _observe(app, sv, settings, metrics)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway
        return web.bytes(generate_latest(metrics.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4")

    @app.page("/progress")
    async def progress_page(web: Any, request: Any) -> Any:
        """Events processed and when (wall clock): cheap to poll, unlike /metrics."""
        return web.json({"events": sv.processed, "first_at": sv.first_processed_at,
                         "last_at": sv.last_processed_at})

    async def partition_status() -> dict[str, Any]:
        out = {}
        for p in sorted(active_partitions()):
            tp = faust.types.TP(settings.events_topic, p)
            t = sv.partition_time.get(p)
            out[str(p)] = {"last_offset": sv.last_offset.get(p),
                           "end_offset": app.consumer.highwater(tp),
                           "committed": app.consumer._committed_offset.get(tp),
                           "time": t.isoformat() if t else None,
                           "lagging": await lagging(p), "scheduled": len(sv.index(p))}
        return out

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        # degraded once a rule's check has raised: the cases it failed on wait for a retry,
        # and a faulty rule stays faulty until it is fixed and the worker restarted
        failing = dict(sorted(engine.check_errors.items()))
        # and while Redis refuses the alerts (down, out of memory, read-only): held, retried
        store = sink.degraded
        return web.json({"status": "degraded" if failing or store else "ok",
                         "check_errors": failing, "alert_store": store or "ok",
                         "ready": sv.ready and not app.rebalancing,
                         "cases": len(cases.data), "scheduled": sv.scheduled(),
                         "partitions": sorted(active_partitions()),
                         "partition_status": await partition_status()})

    # Capabilities beyond the case rules register themselves here: each module's
    # register(app, WorkerContext) adds its agents, tables, timers, pages and observers.
    ctx = WorkerContext(settings=settings, supervisor=sv, metrics=metrics, cases=cases,
                        redis=client)
    for name in settings.extensions:
        EXTENSIONS[name](app, ctx)

    @app.task
    async def started() -> None:
        try:
            await sink.check()
        except Exception as exc:
            log.critical("%s", exc)
            await app.crash(exc)  # a wrong password will not fix itself: stop the worker
            return
        metrics.worker_up.set(1)

    return app


async def _observe(app: faust.App, sv: Supervisor, settings: Settings, metrics: EngineMetrics) -> None:
    """Consumer lag and open-alert counts, for Prometheus."""
    try:
        for tp in app.assignor.assigned_actives():
            if tp.topic != settings.events_topic:
                continue
            end = app.consumer.highwater(tp)
            pos = await app.consumer.position(tp)
            if end is not None and pos is not None:
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - pos))
    except Exception as exc:  # metrics must never stop the worker
        log.debug("lag metric failed: %r", exc)
    sink = sv.sink
    if isinstance(sink, RedisAlertSink):
        try:
            depts = sorted(sv.engine.catalog.departments)
            async with sink.client.pipeline(transaction=False) as pipe:
                for d in depts:
                    pipe.zcard(f"{settings.redis_prefix}open:{d}")
                counts = await pipe.execute()
            for d, c in zip(depts, counts, strict=True):
                metrics.open_alerts.labels(d).set(c)
        except Exception as exc:
            log.debug("open-alert metric failed: %r", exc)
