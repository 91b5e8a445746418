"""The department producer: validate, sign and send approval-step events to Kafka.

An event is validated against the wire contract before anything is sent (a bad event
raises :class:`ProducerValidationError`, which names each bad field), signed with the
department's HMAC key when there is one, serialized once to its wire JSON and keyed by
``case_id``. A record that is not acknowledged because of a transient error is sent
again with exactly the same bytes, so the engine's ``event_id`` dedup makes retries safe.

``send()`` only enqueues (aiokafka batches records for ``linger_ms``); delivery errors
surface at the next ``flush()`` or ``stop()``. ``send_and_wait()`` and ``send_many()``
wait for the broker's acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.structs import RecordMetadata

from .contract import ApprovalEvent, EventValidationError, parse_event, sign_payload
from .keys import DepartmentKeys

if TYPE_CHECKING:
    import ssl

    from .config import ProducerConfig

__all__ = [
    "DepartmentProducer",
    "EncodedEvent",
    "EventLike",
    "ProducerDeliveryError",
    "ProducerValidationError",
    "SyncDepartmentProducer",
    "producer_from_config",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
EventLike = ApprovalEvent | Mapping[str, Any]
Idempotence = bool | Literal["auto"]


class ProducerValidationError(EventValidationError):
    """The event breaks the wire contract and was not sent; ``problems`` = [(field, message)]."""


class ProducerDeliveryError(RuntimeError):
    """Events not acknowledged even after retries; ``failures`` = [(event_id, error)]."""

    def __init__(self, failures: list[tuple[str, BaseException]]) -> None:
        self.failures = failures
        shown = ", ".join(f"{eid} ({type(e).__name__}: {e})" for eid, e in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} event(s) not delivered: {shown}{more}")


@dataclass(frozen=True)
class EncodedEvent:
    """One event as it goes on the wire: Kafka key (case_id) and value (wire JSON)."""

    event_id: str
    key: bytes
    value: bytes
    #: Kafka record timestamp; None = now. Set by backfills so that the engine judges
    #: each event as of when it was originally reported, not when the backfill ran.
    timestamp_ms: int | None = None


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


class _DropInitPidErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "InitProducerId" not in record.getMessage()


@contextlib.contextmanager
def _quiet_idempotence_probe() -> Iterator[None]:
    """While probing for idempotence, a broker that refuses it is not worth an ERROR log."""
    sender_log = logging.getLogger("aiokafka.producer.sender")
    flt = _DropInitPidErrors()
    sender_log.addFilter(flt)
    try:
        yield
    finally:
        sender_log.removeFilter(flt)


class DepartmentProducer:
    """Async producer of approval-step events for one department (or any, if ``None``).

    ``signing_key`` signs every event; otherwise ``keys`` gives each event's department key
    (looked up at send time, so a rotation takes effect without a restart).
    ``idempotence="auto"`` asks the broker for an idempotent producer and falls back to
    ``acks="all"`` with retries when the broker refuses (Tansu 0.6 does).
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        department: str | None,
        signing_key: bytes | None = None,
        *,
        topic: str = "approval-events",
        keys: DepartmentKeys | None = None,
        linger_ms: int = 10,
        idempotence: Idempotence = "auto",
        retries: int = 5,
        retry_backoff: float = 0.2,
        request_timeout_ms: int = 30_000,
        client_id: str | None = None,
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        **kafka_options: Any,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.department = department
        self.topic = topic
        self.keys = keys
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.idempotence: Idempotence = idempotence
        #: whether the running producer is idempotent (known after ``start()``)
        self.idempotent: bool | None = None
        self._signing_key = signing_key
        self._kafka_kwargs: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id or f"jiancha-producer-{department or 'any'}",
            "acks": "all",
            "linger_ms": linger_ms,
            "request_timeout_ms": request_timeout_ms,
            "retry_backoff_ms": int(retry_backoff * 1000),
            "security_protocol": security_protocol,
            "ssl_context": ssl_context,
            **kafka_options,
        }
        if sasl_mechanism is not None:
            self._kafka_kwargs.update(
                sasl_mechanism=sasl_mechanism,
                sasl_plain_username=sasl_plain_username,
                sasl_plain_password=sasl_plain_password,
            )
        self._kafka: AIOKafkaProducer | None = None
        self._pending: dict[asyncio.Future[RecordMetadata], str] = {}
        self._retry_tasks: set[asyncio.Task[None]] = set()
        self._failures: list[tuple[str, BaseException]] = []

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._kafka is not None:
            return
        if self.idempotence is not False:
            try:
                self._kafka = await self._start_kafka(idempotent=True)
                self.idempotent = True
                return
            except KafkaConnectionError:
                raise
            except KafkaError as exc:
                if self.idempotence is True:
                    raise
                log.info("broker refused an idempotent producer (%r); using acks=all + retries",
                         exc)
        self._kafka = await self._start_kafka(idempotent=False)
        self.idempotent = False

    async def _start_kafka(self, *, idempotent: bool) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(enable_idempotence=idempotent, **self._kafka_kwargs)
        probe = idempotent and self.idempotence == "auto"
        try:
            with _quiet_idempotence_probe() if probe else contextlib.nullcontext():
                await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def stop(self) -> None:
        """Flush (raising :class:`ProducerDeliveryError` for undelivered events), then stop."""
        if self._kafka is None:
            return
        try:
            await self.flush()
        finally:
            kafka, self._kafka = self._kafka, None
            for task in list(self._retry_tasks):
                task.cancel()
            for fut, event_id in list(self._pending.items()):
                if not fut.done():
                    fut.set_exception(ProducerDeliveryError([(event_id, RuntimeError("stopped"))]))
            await kafka.stop()

    async def __aenter__(self) -> DepartmentProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- encoding ----------------------------------------------------------------------

    def validate(self, event: EventLike) -> ApprovalEvent:
        """The event as a contract model; raises :class:`ProducerValidationError`."""
        if isinstance(event, ApprovalEvent):
            ev = event
        elif isinstance(event, Mapping):
            try:
                ev = parse_event(dict(event))
            except EventValidationError as exc:
                raise ProducerValidationError(exc.problems) from None
        else:
            raise ProducerValidationError(
                [("event", f"expected an ApprovalEvent or a dict, got {type(event).__name__}")]
            )
        if self.department is not None and ev.department != self.department:
            raise ProducerValidationError(
                [("department", f"this producer sends for {self.department!r}, "
                                f"got {ev.department!r}")]
            )
        return ev

    def signing_key_for(self, department: str) -> bytes | None:
        if self._signing_key is not None:
            return self._signing_key
        if self.keys is None:
            return None
        key = self.keys.signing_key(department)
        if key is None and self.keys.has_keys(department):
            raise ProducerValidationError(
                [("signature", f"department {department!r} has keys in {self.keys.source} "
                               "but none is valid now (all past not_after)")]
            )
        return key

    def encode(self, event: EventLike) -> EncodedEvent:
        """Validate, sign and serialize; the same event always gives the same bytes."""
        ev = self.validate(event)
        payload = ev.wire_dict()
        key = self.signing_key_for(ev.department)
        if key is not None:
            payload["signature"] = sign_payload(payload, key)
        return EncodedEvent(ev.event_id, ev.case_id.encode("utf-8"), orjson.dumps(payload))

    # --- sending -----------------------------------------------------------------------

    async def submit(self, event: EventLike) -> asyncio.Future[RecordMetadata]:
        """Validate, sign and enqueue; the returned future resolves on acknowledgement
        (or fails with :class:`ProducerDeliveryError`). Retrieve its result."""
        return await self.submit_encoded(self.encode(event))

    async def submit_encoded(self, record: EncodedEvent) -> asyncio.Future[RecordMetadata]:
        delivery = await self._enqueue(record)
        result: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self._pending[result] = record.event_id
        result.add_done_callback(self._forget)
        delivery.add_done_callback(partial(self._on_delivery, record, result, 1))
        return result

    async def send(self, event: EventLike) -> None:
        """Validate, sign and enqueue; delivery errors are raised by ``flush()``/``stop()``."""
        result = await self.submit(event)
        result.add_done_callback(self._collect_failure)

    async def send_and_wait(self, event: EventLike) -> RecordMetadata:
        return await (await self.submit(event))

    async def send_many(self, events: Iterable[EventLike]) -> list[RecordMetadata]:
        """Validate all (nothing is sent if one is bad), send all, wait for all acks."""
        records: list[EncodedEvent] = []
        problems: list[tuple[str, str]] = []
        for i, event in enumerate(events):
            try:
                records.append(self.encode(event))
            except ProducerValidationError as exc:
                problems += [(f"[{i}].{field}", msg) for field, msg in exc.problems]
        if problems:
            raise ProducerValidationError(problems)
        futures: list[asyncio.Future[RecordMetadata]] = []
        try:
            for record in records:
                futures.append(await self.submit_encoded(record))
        except BaseException:
            for fut in futures:
                fut.add_done_callback(self._collect_failure)
            raise
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        failures: list[tuple[str, BaseException]] = []
        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, ProducerDeliveryError):
                failures += outcome.failures
            elif isinstance(outcome, BaseException):
                failures.append((record.event_id, outcome))
        if failures:
            raise ProducerDeliveryError(failures)
        return [o for o in outcomes if isinstance(o, RecordMetadata)]

    async def flush(self) -> None:
        """Wait until every enqueued event is acknowledged or has failed for good."""
        if self._kafka is not None:
            await self._kafka.flush()
        while self._pending:
            await asyncio.wait(list(self._pending))
        failures, self._failures = self._failures, []
        if failures:
            raise ProducerDeliveryError(failures)

    # --- internals ---------------------------------------------------------------------

    def _require_started(self) -> AIOKafkaProducer:
        if self._kafka is None:
            raise RuntimeError("producer is not started: call 'await producer.start()' first")
        return self._kafka

    def _backoff(self, attempt: int) -> float:
        return float(min(self.retry_backoff * 2 ** (attempt - 1), 5.0))

    async def _enqueue(self, record: EncodedEvent) -> asyncio.Future[RecordMetadata]:
        attempt = 0
        while True:
            try:
                return await self._require_started().send(
                    self.topic, record.value, key=record.key, timestamp_ms=record.timestamp_ms
                )
            except Exception as exc:
                attempt += 1
                if not _transient(exc) or attempt > self.retries:
                    raise ProducerDeliveryError([(record.event_id, exc)]) from exc
                log.warning("cannot enqueue event %s (%r); retry %d/%d",
                            record.event_id, exc, attempt, self.retries)
                await asyncio.sleep(self._backoff(attempt))

    def _on_delivery(
        self,
        record: EncodedEvent,
        result: asyncio.Future[RecordMetadata],
        attempt: int,
        delivery: asyncio.Future[RecordMetadata],
    ) -> None:
        if result.done():
            return
        exc = asyncio.CancelledError() if delivery.cancelled() else delivery.exception()
        if exc is None:
            result.set_result(delivery.result())
        elif _transient(exc) and attempt <= self.retries and self._kafka is not None:
            task = asyncio.ensure_future(self._resend(record, result, attempt, exc))
            self._retry_tasks.add(task)
            task.add_done_callback(self._retry_tasks.discard)
        else:
            result.set_exception(ProducerDeliveryError([(record.event_id, exc)]))

    async def _resend(
        self,
        record: EncodedEvent,
        result: asyncio.Future[RecordMetadata],
        attempt: int,
        exc: BaseException,
    ) -> None:
        log.warning("event %s not acknowledged (%r); resending the same bytes, retry %d/%d",
                    record.event_id, exc, attempt, self.retries)
        await asyncio.sleep(self._backoff(attempt))
        try:
            delivery = await self._enqueue(record)
        except Exception as err:
            if not result.done():
                result.set_exception(err if isinstance(err, ProducerDeliveryError)
                                     else ProducerDeliveryError([(record.event_id, err)]))
            return
        delivery.add_done_callback(partial(self._on_delivery, record, result, attempt + 1))

    def _forget(self, fut: asyncio.Future[RecordMetadata]) -> None:
        self._pending.pop(fut, None)

    def _collect_failure(self, fut: asyncio.Future[RecordMetadata]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if isinstance(exc, ProducerDeliveryError):
            self._failures += exc.failures
        elif exc is not None:
            self._failures.append(("?", exc))


class SyncDepartmentProducer:
    """:class:`DepartmentProducer` for blocking code: same arguments, same methods, run on
    its own event loop in a background thread. Validation errors are raised in the
    caller's thread before anything is handed to the loop."""

    def __init__(self, *args: Any, call_timeout: float | None = None, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self.call_timeout = call_timeout
        # built here (no loop needed) so encode() works before start(); aiokafka objects
        # are only created on the background loop, in start()
        self._producer = DepartmentProducer(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def producer(self) -> DepartmentProducer:
        return self._producer

    @property
    def idempotent(self) -> bool | None:
        return self._producer.idempotent

    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_run_loop, args=(loop,), daemon=True,
                                  name=f"jiancha-producer-{self._producer.department or 'any'}")
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._call(self._producer.start())
        except BaseException:
            self._close_loop()
            raise

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            self._call(self._producer.stop())
        finally:
            self._close_loop()

    def __enter__(self) -> SyncDepartmentProducer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def encode(self, event: EventLike) -> EncodedEvent:
        return self._producer.encode(event)

    def send(self, event: EventLike) -> None:
        record = self._producer.encode(event)
        self._call(self._send_encoded(record))

    def send_and_wait(self, event: EventLike) -> RecordMetadata:
        record = self._producer.encode(event)
        return self._call(self._wait_encoded(record))

    def send_many(self, events: Iterable[EventLike]) -> list[RecordMetadata]:
        batch = list(events)
        for i, event in enumerate(batch):  # raise in the caller's thread
            try:
                self._producer.validate(event)
            except ProducerValidationError as exc:
                raise ProducerValidationError(
                    [(f"[{i}].{field}", msg) for field, msg in exc.problems]
                ) from None
        return self._call(self._producer.send_many(batch))

    def flush(self) -> None:
        self._call(self._producer.flush())

    async def _send_encoded(self, record: EncodedEvent) -> None:
        result = await self._producer.submit_encoded(record)
        result.add_done_callback(self._producer._collect_failure)

    async def _wait_encoded(self, record: EncodedEvent) -> RecordMetadata:
        return await (await self._producer.submit_encoded(record))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("producer is not started: call producer.start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.call_timeout)

    def _close_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


# --- configuration ---------------------------------------------------------------------


def producer_from_config(
    config: ProducerConfig,
    department: str | None = None,
    keys: DepartmentKeys | None = None,
    **options: Any,
) -> DepartmentProducer:
    """A producer for ``config.events_topic``; keys default to ``config.department_keys_file``."""
    if keys is None and config.department_keys_file is not None:
        keys = DepartmentKeys.load(config.department_keys_file)
    kafka = config.kafka.client_kwargs()
    return DepartmentProducer(kafka.pop("bootstrap_servers"), department, topic=config.events_topic,
                              keys=keys, **kafka, **options)
