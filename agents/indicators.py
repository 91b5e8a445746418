"""Performance indicators in the worker (绩效评估; logic in ``rules/indicators.py``, shared
with replay), and the three ways evaluators pull them.

- **Accumulate**: the hooks ``read_event`` and ``on_complaint`` feed an
  :class:`~rules.indicators.IndicatorBook` whose store is the
  Faust table ``indicators``, keyed by (month, scope kind, scope name, **partition**): each
  partition's share is written to that partition's changelog by the worker that owns it,
  so state moves with the partition and survives restarts, and no two workers ever write
  the same key. Alerts are counted by the alert sink instead, in the same atomic Redis
  step that stores each alert version (``{prefix}ind-alerts:{YYYY-MM}``): a version
  delivered again after a crash is known there and counted no more, and a retraction
  takes its versions back.
- **Mirror**: every second the keys changed since the last flush go to Redis, one hash
  per month, ``{prefix}ind:{YYYY-MM}`` (field = ``[kind, name, partition]``, value = the
  accumulator JSON), and all of a partition's keys again when it is assigned. Every
  worker reads the merged, global view from there.
- **Pull**: ``GET /api/indicators?period=2026-11&scope=department&department=`` (JSON,
  ranked rows; ``scope=handler`` only with the bureau's token, ``Authorization: Bearer``,
  from ``JIANCHA_NOTIFIER_TOKENS_FILE``), ``GET /api/indicators.csv`` (the same as CSV),
  and the Prometheus gauges
  ``jiancha_indicator{department,item,indicator,period}`` (``item=""`` = the department's
  total) and ``jiancha_score{department,period}`` for the current and previous month and
  quarter, this half-year and this year (refreshed every few seconds from Redis).
  ``jiancha report --url`` reads the API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Any

import faust
import orjson
from prometheus_client.core import GaugeMetricFamily

from jiancha.notifier.tokens import Tokens, bearer, load_tokens
from jiancha.rules.case import CaseState
from jiancha.rules.indicators import (
    INDICATORS,
    KINDS,
    Acc,
    Counted,
    IndicatorBook,
    Key,
    PeriodError,
    current_periods,
    encode_field,
    merge_fields,
    merge_tally,
    month_of,
    period_months,
    report_rows,
    rows_csv,
)
from jiancha.rules.ingest import GateEvent
from jiancha.rules.memo import BoundedMemo

from .extensions import Extension, WorkerContext, add_page
from .runtime import CoalescedChangelog, owner

log = logging.getLogger(__name__)

#: a gauge refresh that took d seconds is not repeated for 50·d seconds (2% of the time)
GAUGES_TIME_SHARE_INVERSE = 50
#: accumulators kept decoded beside the table (:attr:`TableBook.written`) before starting over
WRITTEN_KEPT = 100_000

class TableBook(IndicatorBook):
    """An indicator book stored in a Faust table, one key per partition's share.

    Updates are kept in memory (``pending``) and written to the table and its changelog
    by :meth:`write_pending`: before every offset commit (:mod:`agents.runtime.commit_barrier`),
    so they are as durable as the case states, and before each Redis mirror. A busy key
    (a department's month) then costs one changelog record per commit interval instead of
    one per event."""

    def __init__(self, engine: Any, table: Any, changelog: CoalescedChangelog,
                 owned: Any = None) -> None:
        super().__init__(engine, store={})
        self.table = table
        self.changelog = changelog
        self.owned = owned or (lambda: None)
        self.dirty: set[bytes] = set()
        #: accumulators changed since the last write, by (month, kind, name, partition)
        self.pending: dict[tuple[str, str, str, int], Acc] = {}
        # the same few keys (a month, a scope) again and again: encoded once
        self._keys: BoundedMemo[tuple[Any, ...], bytes] = BoundedMemo(orjson.dumps, 100_000)
        #: by table key, the value last written and the accumulator it encodes: taken
        #: again, not decoded, while the table holds that very value (a recovery or
        #: another write puts another object there)
        self.written: dict[bytes, tuple[bytes, Acc]] = {}

    def acc(self, key: Key) -> Acc:
        k = (*key, self.partition)
        acc = self.pending.get(k)
        if acc is None:  # from the table once per commit interval, then changed in place
            table_key = self._keys[k]
            raw = self.table.data.get(table_key)
            if raw is None:
                acc = Acc()
            else:
                written = self.written.get(table_key)
                acc = written[1] if written is not None and written[0] is raw else Acc.decode(raw)
            self.pending[k] = acc
        return acc

    def write_pending(self) -> Awaitable[None] | None:
        """Write the pending updates to the table and hand their changelog records to the
        producer (as record batches; the awaitable, if any, finishes handing them over)."""
        pending, self.pending = self.pending, {}
        owned = self.owned() if pending else None
        written = self.written
        if len(written) > WRITTEN_KEPT:
            written.clear()
        for k, acc in pending.items():
            partition = k[3]
            key = self._keys[k]
            if owned is not None and partition not in owned:
                written.pop(key, None)  # changed in place, not written: decoded again
                continue  # moved away: its new owner counts the events again
            value = acc.encode()
            self.changelog.set(key, value, partition)
            written[key] = (value, acc)
            self.dirty.add(key)
        return self.changelog.send()


def _mirrored(key: bytes) -> tuple[str, bytes]:
    """A table key's month and its field in that month's Redis hash."""
    month, kind, name, partition = orjson.loads(key)
    return month, encode_field(kind, name, partition)


class IndicatorCollector:
    """``jiancha_indicator`` and ``jiancha_score`` from the last snapshot (a timer
    refreshes it from Redis; a scrape never waits for Redis)."""

    def __init__(self) -> None:
        self.indicators: list[tuple[tuple[str, str, str, str], float]] = []
        self.scores: list[tuple[tuple[str, str], float]] = []

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        g = GaugeMetricFamily("jiancha_indicator", "Performance indicator (绩效评估) of a "
                              "department (item=\"\") or item, for a period (YYYY-MM, YYYY-Qn, "
                              "YYYY-Hn, YYYY); rates are fractions", labels=["department", "item",
                                                                              "indicator", "period"])
        for labels, value in self.indicators:
            g.add_metric(list(labels), value)
        yield g
        s = GaugeMetricFamily("jiancha_score", "Performance score (0-100) of a department for "
                              "a period; quarters and years: the mean of the monthly scores",
                              labels=["department", "period"])
        for labels, value in self.scores:
            s.add_metric(list(labels), value)
        yield s


class BureauOnly(Exception):
    """The request needs the supervision bureau's token and did not bring it."""


class Indicators(Extension):
    """The indicators' extension: the book in the ``indicators`` table, its Redis mirror,
    the gauges and the pull API (see the module's description)."""

    # set by install()
    app: faust.App
    table: Any
    book: TableBook

    def __init__(self, ctx: WorkerContext) -> None:
        self.settings, self.supervisor, self.redis = ctx.settings, ctx.supervisor, ctx.redis
        self.barrier = ctx.commit_barrier
        self.engine = self.supervisor.engine
        self.tz = self.engine.working_time.tz
        self.prefix = ctx.settings.redis_prefix
        self.collector = IndicatorCollector()
        self.registry = ctx.metrics.registry
        #: a table key's month and field in the month's Redis hash (the same keys are
        #: mirrored again and again)
        self.fields: BoundedMemo[bytes, tuple[str, bytes]] = BoundedMemo(_mirrored, 100_000)
        #: monotonic time before which the gauges are not refreshed again
        self.gauges_due = 0.0
        # per-handler scores name people: only the supervision bureau's token reads them
        s = ctx.settings
        self.tokens = load_tokens(s.notifier_tokens_file) if s.notifier_tokens_file else Tokens([])

    def install(self, app: faust.App) -> None:
        s = self.settings
        self.app = app
        n = s.topic_partitions
        self.table = app.Table("indicators", default=None, partitions=n, key_type=bytes,
                               value_type=bytes)
        self.book = TableBook(self.engine, self.table,
                              CoalescedChangelog(app, self.table, s.events_topic, self.barrier),
                              owner(app, s.events_topic))
        self.registry.register(self.collector)  # type: ignore[arg-type]
        self.barrier.add(self.book.write_pending)  # also when partitions are revoked
        app.timer(1.0, name="indicators_mirror")(self.mirror)
        self.table.on_recover(self.remirror)
        app.timer(2.0, name="indicators_gauges")(self.refresh_gauges)
        add_page(app, "/api/indicators", self.api_json)
        add_page(app, "/api/indicators.csv", self.api_csv)

    def active_partitions(self) -> list[int]:
        try:
            return sorted({tp.partition for tp in self.app.assignor.assigned_actives()
                           if tp.topic == self.settings.events_topic})
        except Exception:
            return []

    def read_event(self, event: GateEvent, state: CaseState
                   ) -> tuple[GateEvent, int, Counted] | None:
        """What the event counts for, read as it is judged (its case's state as the event
        left it, and what its judgement derived, current), added once its batch's alerts
        are stored (:meth:`record_read`)."""
        try:
            counted = self.book.counted(event, state)
        except Exception:  # indicators must never stop the supervision
            log.exception("indicators: event %s not counted", event.event_id)
            return None
        if counted is None:
            return None
        return event, state.partition, counted

    def record_read(self, read: list[tuple[GateEvent, int, Counted]]) -> None:
        book = self.book
        for event, partition, counted in read:
            try:
                book.partition = partition
                book.add(counted)
            except Exception:
                log.exception("indicators: event %s not counted", event.event_id)

    def on_complaint(self, department: str | None, item_code: str | None,
                     received_at: float) -> None:
        try:
            event = faust.current_event()
            self.book.partition = int(event.message.partition) if event is not None else 0
            self.book.on_complaint(department, item_code, received_at)
        except Exception:
            log.exception("indicators: complaint not counted")

    async def flush(self) -> None:
        book = self.book
        if not self.app.rebalancing:  # a record sent during a rebalance races the recovery
            handed = book.write_pending()
            if handed is not None:
                await handed
        if not book.dirty:
            return
        keys, book.dirty = book.dirty, set()
        by_month: dict[str, dict[bytes, bytes]] = {}
        mirrored = self.fields
        for k in keys:
            value = self.table.data.get(k)
            if value is None:
                continue
            month, field = mirrored[k]
            by_month.setdefault(month, {})[field] = value
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for month, fields in by_month.items():  # one HSET per month, not per key
                    pipe.hset(f"{self.prefix}ind:{month}", mapping=fields)
                await pipe.execute()
        except Exception as exc:
            book.dirty |= keys  # try again at the next flush
            log.warning("indicators: Redis mirror failed (%r); retrying", exc)

    async def mirror(self) -> None:
        await self.flush()

    async def remirror(self) -> None:
        actives = set(self.active_partitions())
        for k in list(self.table.data.keys()):
            if orjson.loads(k)[3] in actives:
                self.book.dirty.add(k)

    async def load(self, months: Iterable[str]) -> dict[Key, Acc]:
        merged: dict[Key, Acc] = {}
        for month in dict.fromkeys(months):
            fields = await self.redis.hgetall(f"{self.prefix}ind:{month}")
            merged.update(merge_fields(month, fields))
            # the alert counts, kept by the alert sink beside the alerts (exactly once)
            merge_tally(month, await self.redis.hgetall(f"{self.prefix}ind-alerts:{month}"), merged)
        return merged

    async def refresh_gauges(self) -> None:
        started = time.monotonic()
        if started < self.gauges_due:
            return
        try:
            periods = current_periods(self.supervisor.clock.now(), self.tz)
            accs = await self.load(m for p in periods for m in period_months(p))
            indicators: list[tuple[tuple[str, str, str, str], float]] = []
            scores: list[tuple[tuple[str, str], float]] = []
            for period in periods:
                for kind in ("department", "item"):
                    for row in report_rows(accs, period, kind, self.book.scoring,
                                           self.engine.catalog):
                        dept = row["department"] or ""
                        item = row["name"] if kind == "item" else ""
                        for name in INDICATORS:
                            value = row.get(name)
                            if value is not None:
                                indicators.append(((dept, item, name, period), float(value)))
                        if kind == "department" and row["score"] is not None:
                            scores.append(((dept, period), float(row["score"])))
            self.collector.indicators, self.collector.scores = indicators, scores
        except Exception as exc:  # metrics must never stop the worker
            log.debug("indicator gauges not refreshed: %r", exc)
        # every 2 s, but at most 2% of the worker's time: a busy worker (a backlog) spent
        # 6% of it on gauges it would refresh again before anyone scraped them
        self.gauges_due = started + GAUGES_TIME_SHARE_INVERSE * (time.monotonic() - started)

    async def rows_for(self, request: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        q = request.query
        period = q.get("period") or month_of(self.supervisor.clock.now(), self.tz)
        scope = q.get("scope") or "department"
        department = q.get("department") or None
        if scope not in KINDS:
            raise PeriodError(f"scope {scope!r}: expected one of {', '.join(KINDS)}")
        if scope == "handler":
            principal = bearer(self.tokens, request.headers.get("Authorization", ""))
            if principal is None or not principal.is_bureau:
                raise BureauOnly("scope handler: per-handler scores need the supervision bureau's "
                                 "token (Authorization: Bearer, JIANCHA_NOTIFIER_TOKENS_FILE)")
        months = period_months(period)
        rows = report_rows(await self.load(months), period, scope, self.book.scoring,
                           self.engine.catalog, department=department)
        return {"period": period, "scope": scope, "department": department}, rows

    async def api_json(self, web: Any, request: Any) -> Any:
        try:
            head, rows = await self.rows_for(request)
        except PeriodError as exc:
            return web.json({"error": str(exc)}, status=400)
        except BureauOnly as exc:
            return web.json({"error": str(exc)}, status=401)
        return web.json({**head, "rows": rows})

    async def api_csv(self, web: Any, request: Any) -> Any:
        try:
            _, rows = await self.rows_for(request)
        except PeriodError as exc:
            return web.text(str(exc) + "\n", status=400)
        except BureauOnly as exc:
            return web.text(str(exc) + "\n", status=401)
        # aiohttp refuses a charset inside content_type; text responses are UTF-8
        return web.text(rows_csv(rows), content_type="text/csv")
