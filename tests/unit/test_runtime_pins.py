"""Every Faust, aiokafka and mode internal that agents/runtime/ relies on, checked against the
versions pinned in pyproject.toml (the ``engine`` extra).

The runtime subclasses Faust's Kafka consumer, reads its private bookkeeping, hands record
batches to the aiokafka producer under Faust's and patches the producer's flush. None of
that is public API, so an upgrade may change it without notice. Each check below names the
internal and the module of the runtime that relies on it: when one fails after an upgrade,
read that module against the new library source, adapt it, then change the expectation here
and the pin in pyproject.toml together.
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import faust
import pytest

from jiancha.agents.runtime.batch_source import BatchingConsumer

ROOT = Path(__file__).resolve().parents[2]
BATCH_SOURCE = "agents/runtime/batch_source.py"
COMMIT_BARRIER = "agents/runtime/commit_barrier.py"
OFFSETS = "agents/runtime/offsets.py"
PINNED = ("faust-streaming", "aiokafka", "mode-streaming")


def _resolve(path: str) -> Any:
    """``module:Class.attr`` to the object."""
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj


def _relied_on(path: str, used_in: str) -> Any:
    """The object at ``path``, or a failure naming it and who relies on it."""
    try:
        return _resolve(path)
    except (ImportError, AttributeError) as exc:
        pytest.fail(_relied(path, used_in, f"is gone ({exc})"))


def _params(fn: Callable[..., Any]) -> str:
    """The parameter list without annotations: ``(self, tp, *, partition)``."""
    signature = inspect.signature(fn)
    return str(signature.replace(return_annotation=signature.empty,
                                 parameters=[p.replace(annotation=p.empty)
                                             for p in signature.parameters.values()]))


def _relied(what: str, used_in: str, detail: str) -> str:
    return (f"{what} {detail}; {used_in} relies on it: adapt it to the installed "
            f"faust-streaming {version('faust-streaming')} / aiokafka {version('aiokafka')}, "
            "then update tests/unit/test_runtime_pins.py")


@dataclass(frozen=True)
class Method:
    path: str  # module:Class.method
    params: str
    used_in: str


METHODS = [
    # the batch source: a subclass of the aiokafka transport's consumer
    Method("faust.transport.drivers.aiokafka:Consumer._new_consumer_thread", "(self)", BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:Consumer._drain_messages", "(self, fetcher)", BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_consumer", "(self, loop)",
           BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._fetch_records",
           "(self, consumer, active_partitions, timeout=None, max_records=None)", BATCH_SOURCE),
    Method("aiokafka:AIOKafkaConsumer.assignment", "(self)", BATCH_SOURCE),
    Method("aiokafka:AIOKafkaConsumer.paused", "(self)", BATCH_SOURCE),
    Method("aiokafka:AIOKafkaConsumer.pause", "(self, *partitions)", BATCH_SOURCE),
    Method("aiokafka:AIOKafkaConsumer.resume", "(self, *partitions)", BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:Consumer._wait_next_records", "(self, timeout)", BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:Consumer.perform_seek", "(self)", BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:Consumer._add_gap", "(self, tp, offset_from, offset_to)",
           BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:Consumer.commit",
           "(self, topics=None, start_new_transaction=True)", BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:Consumer._to_message", "(self, tp, record)", BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:Consumer.highwater", "(self, tp)", BATCH_SOURCE),
    Method("faust.transport.drivers.aiokafka:Consumer.position", "(self, tp)", OFFSETS),
    Method("faust.transport.drivers.aiokafka:Consumer.wait_first", "(self, *coros, timeout=None)",
           BATCH_SOURCE),
    Method("faust.sensors.monitor:Monitor.track_tp_end_offset", "(self, tp, offset)", BATCH_SOURCE),
    Method("faust.topics:Topic.get_topic_name", "(self)", BATCH_SOURCE),
    Method("faust.transport.conductor:Conductor.acks_enabled_for", "(self, topic)", BATCH_SOURCE),
    Method("faust.transport.conductor:Conductor.add", "(self, topic)", BATCH_SOURCE),
    # the commit barrier
    Method("faust.transport.drivers.aiokafka:Producer.flush", "(self)", COMMIT_BARRIER),
    Method("faust.tables.table:Table.on_key_set", "(self, key, value)", COMMIT_BARRIER),
    Method("faust.tables.table:Table.on_key_del", "(self, key)", COMMIT_BARRIER),
    Method("faust.tables.base:Collection.partition_for_key", "(self, key)", COMMIT_BARRIER),
    Method("faust.tables.base:Collection.send_changelog",
           "(self, partition, key, value, key_serializer=None, value_serializer=None)",
           COMMIT_BARRIER),
    Method("faust.serializers.registry:Registry.dumps_key",
           "(self, typ, key, *, serializer=None, skip=(<class 'bytes'>,))", COMMIT_BARRIER),
    Method("faust.serializers.registry:Registry.dumps_value",
           "(self, typ, value, *, serializer=None, skip=(<class 'bytes'>,))", COMMIT_BARRIER),
    Method("faust.serializers.codecs:get_codec", "(name_or_codec)", COMMIT_BARRIER),
    Method("faust.assignor.partition_assignor:PartitionAssignor.assigned_actives", "(self)",
           COMMIT_BARRIER),
    Method("aiokafka:AIOKafkaProducer.create_batch", "(self)", COMMIT_BARRIER),
    Method("aiokafka:AIOKafkaProducer.send_batch", "(self, batch, topic, *, partition)", COMMIT_BARRIER),
    Method("aiokafka.producer.message_accumulator:BatchBuilder.append",
           "(self, *, timestamp, key, value, headers=[])", COMMIT_BARRIER),
    Method("aiokafka.producer.message_accumulator:BatchBuilder.record_count", "(self)",
           COMMIT_BARRIER),
]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path)
def test_each_method_relied_on_has_the_signature_called(method: Method) -> None:
    fn = _relied_on(method.path, method.used_in)
    assert callable(fn), _relied(method.path, method.used_in, "is no longer callable")
    assert not getattr(fn, "__isabstractmethod__", False), _relied(
        method.path, method.used_in, "is abstract: no implementation left")
    got = _params(fn)
    assert got == method.params, _relied(method.path, method.used_in,
                                         f"changed from {method.params} to {got}")


def test_the_batch_source_overrides_only_what_the_stock_consumer_has() -> None:
    """The methods the mixin overrides exist on the consumer with the same parameters, and its
    own helpers and settings shadow nothing of Faust's (a new Faust method of the same
    name would be silently replaced)."""
    stock = _relied_on("faust.transport.drivers.aiokafka:Consumer", BATCH_SOURCE)
    overrides = {"_new_consumer_thread", "_drain_messages"}
    for name, member in vars(BatchingConsumer).items():
        if name.startswith("__"):
            continue
        if name in overrides:
            base = getattr(stock, name, None)
            assert base is not None, _relied(f"Consumer.{name}", BATCH_SOURCE, "is gone")
            assert _params(member) == _params(base), _relied(
                f"Consumer.{name}", BATCH_SOURCE, f"takes {_params(base)}, the override {_params(member)}")
        else:
            assert not hasattr(stock, name), _relied(
                f"Consumer.{name}", BATCH_SOURCE, "now exists in Faust: the mixin's own member shadows it")


@pytest.fixture(scope="module")
def app() -> faust.App:
    """An app with the aiokafka transport, its consumer and producer created (no broker is
    contacted before they start)."""
    return faust.App("runtime-pins", broker="kafka://localhost:9", store="memory://",
                     autodiscover=False)


#: the consumer's bookkeeping the batch source reads and writes as Faust's ``ack`` does:
#: attribute, what it must be, who relies on it
CONSUMER_STATE = [
    ("_committed_offset", dict, f"{BATCH_SOURCE}, {OFFSETS}"),
    ("_read_offset", dict, BATCH_SOURCE),
    ("_acked", dict, BATCH_SOURCE),
    ("_acked_index", dict, BATCH_SOURCE),
    ("_n_acked", int, BATCH_SOURCE),
    ("_commit_every", int, BATCH_SOURCE),
    ("_buffered_partitions", set, BATCH_SOURCE),
    ("_unacked_messages", object, BATCH_SOURCE),
    ("_waiting_for_ack", type(None), BATCH_SOURCE),
    ("_stopped", object, BATCH_SOURCE),
    ("flow_active", bool, BATCH_SOURCE),
    ("suspend_flow", object, BATCH_SOURCE),
    ("callback", object, BATCH_SOURCE),
    ("diag", object, BATCH_SOURCE),
    ("consumer_stopped_errors", tuple, BATCH_SOURCE),
]


@pytest.mark.parametrize(("name", "kind", "used_in"), CONSUMER_STATE, ids=[c[0] for c in CONSUMER_STATE])
def test_the_consumer_keeps_the_state_relied_on(app: faust.App, name: str, kind: type,
                                                used_in: str) -> None:
    consumer = app.consumer
    assert hasattr(consumer, name), _relied(f"Consumer.{name}", used_in, "is gone")
    value = getattr(consumer, name)
    assert isinstance(value, kind), _relied(f"Consumer.{name}", used_in,
                                            f"is a {type(value).__name__}, not a {kind.__name__}")


def test_the_consumer_offsets_default_to_none(app: faust.App) -> None:
    """``_committed_offset[tp]`` and ``_read_offset[tp]`` of a partition never seen: None."""
    for name in ("_committed_offset", "_read_offset"):
        offsets = getattr(app.consumer, name)
        assert offsets[faust.types.TP("never-seen", 0)] is None, _relied(
            f"Consumer.{name}", BATCH_SOURCE, "no longer defaults to None for an unknown partition")


def test_the_app_offers_what_the_runtime_reads(app: faust.App) -> None:
    fresh = faust.App("runtime-pins-fresh", broker="kafka://localhost:9", store="memory://",
                      autodiscover=False)
    assert getattr(fresh, "_consumer", "gone") is None, _relied(
        "App._consumer", BATCH_SOURCE, "is no longer None before the consumer is created")
    assert isinstance(fresh.transport.Consumer, type), _relied(
        "Transport.Consumer", BATCH_SOURCE, "is no longer the class the app instantiates")
    assert fresh.transport.Consumer is _relied_on("faust.transport.drivers.aiokafka:Consumer",
                                                  BATCH_SOURCE), _relied(
        "Transport.Consumer", BATCH_SOURCE, "is not the aiokafka driver's consumer for kafka://")
    for attr in ("consumer_generation_id", "flow_control", "monitor", "topics", "assignor"):
        assert hasattr(app, attr), _relied(f"App.{attr}", BATCH_SOURCE, "is gone")
    assert isinstance(app.monitor.stream_inbound_time, dict), _relied(
        "Monitor.stream_inbound_time", BATCH_SOURCE, "is no longer a dict by partition")
    assert inspect.iscoroutinefunction(app.flow_control.acquire), _relied(
        "App.flow_control.acquire", BATCH_SOURCE, "is no longer awaitable")
    producer = app.producer
    assert hasattr(producer, "_producer"), _relied(
        "Producer._producer (the aiokafka producer)", COMMIT_BARRIER, "is gone")
    assert "AIOKafkaProducer" in str(inspect.get_annotations(type(producer)).get("_producer")), _relied(
        "Producer._producer", COMMIT_BARRIER, "is no longer an aiokafka producer")
    assert hasattr(app.conf, "producer_threaded"), _relied(
        "Settings.producer_threaded", COMMIT_BARRIER, "is gone")


def test_a_table_write_goes_through_the_instance_hooks(app: faust.App) -> None:
    """The changelog is taken over by replacing the table instance's ``on_key_set`` and
    ``on_key_del`` (Faust's send a changelog record per write)."""
    table = app.Table("runtime-pins-hooks", default=None, key_type=bytes, value_type=bytes)
    seen: list[Any] = []
    table.on_key_set = lambda key, value: seen.append(("set", key, value))  # type: ignore[method-assign]
    table.on_key_del = lambda key: seen.append(("del", key))  # type: ignore[method-assign]
    table[b"k"] = b"v"
    assert table.data[b"k"] == b"v"
    del table[b"k"]
    assert seen == [("set", b"k", b"v"), ("del", b"k")], _relied(
        "Table.__setitem__/__delitem__", COMMIT_BARRIER,
        "no longer call the instance's on_key_set/on_key_del")
    # a windowed table's wrapper[k] = v: a write of the table per window range
    _calls("faust.tables.base:Collection._set_windowed", "self._set_key((key, window_range), value)",
           COMMIT_BARRIER)
    _calls("faust.tables.base:Collection._del_windowed", "self._del_key((key, window_range))",
           COMMIT_BARRIER)
    _calls("faust.tables.table:Table._set_key", "self[key] = value", COMMIT_BARRIER)
    _calls("faust.tables.table:Table._del_key", "del self[key]", COMMIT_BARRIER)


def _calls(path: str, needle: str, used_in: str) -> None:
    code = _relied_on(path, used_in)
    code = getattr(code, "fun", code)  # a mode service task: the function it runs
    source = re.sub(r"\s+", " ", inspect.getsource(code))
    assert needle in source, _relied(path, used_in, f"no longer does {needle!r}")


#: behaviour of the libraries' code that the runtime relies on, by what their source does
CALLS = [
    # the fetcher runs the consumer's drain loop, which the batch source replaces
    ("faust.transport.consumer:Fetcher._fetcher", "await consumer._drain_messages(self)", BATCH_SOURCE),
    # the consumer thread creates the aiokafka consumer through _create_consumer(loop=...)
    ("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.on_start",
     "self._create_consumer(loop=self.thread_loop)", BATCH_SOURCE),
    # aiokafka's consumer keeps fetch_max_wait_ms and hands it to its fetcher when it starts
    ("aiokafka:AIOKafkaConsumer.__init__", "self._fetch_max_wait_ms = fetch_max_wait_ms", BATCH_SOURCE),
    ("aiokafka:AIOKafkaConsumer.start", "fetch_max_wait_ms=self._fetch_max_wait_ms", BATCH_SOURCE),
    # the stock ack, which _ack_offsets does once per batch
    ("faust.transport.consumer:Consumer.ack", "with ack_lock:", BATCH_SOURCE),
    ("faust.transport.consumer:Consumer.ack", "committed = self._committed_offset[tp]", BATCH_SOURCE),
    ("faust.transport.consumer:Consumer.ack", "acked_index.add(offset)", BATCH_SOURCE),
    ("faust.transport.consumer:Consumer.ack", "acked_for_tp.append(offset)", BATCH_SOURCE),
    ("faust.transport.consumer:Consumer.ack", "self._n_acked += 1", BATCH_SOURCE),
    ("faust.transport.consumer:Consumer.ack", "notify(self._waiting_for_ack)", BATCH_SOURCE),
    # the stock fetch loop, which _drain_messages follows
    ("faust.transport.consumer:Consumer.getmany", "await self.perform_seek()", BATCH_SOURCE),
    ("faust.transport.consumer:Consumer.getmany", "self._wait_next_records(timeout)", BATCH_SOURCE),
    # the producer is flushed before offsets are committed and when partitions are revoked
    ("faust.transport.consumer:Consumer._commit_offsets",
     "await self.app.producer.flush() did_commit = await self._commit(", COMMIT_BARRIER),
    ("faust.app.base:App._on_partitions_revoked", "self._producer_flush", COMMIT_BARRIER),
    ("faust.app.base:App._producer_flush", "await self._producer.flush()", COMMIT_BARRIER),
]


@pytest.mark.parametrize(("path", "needle", "used_in"), CALLS, ids=[f"{c[0]}:{c[1][:30]}" for c in CALLS])
def test_the_library_code_relied_on_still_does_it(path: str, needle: str, used_in: str) -> None:
    _calls(path, needle, used_in)


def test_the_module_constants_relied_on_exist() -> None:
    fetching = _relied_on("faust.transport.consumer:CONSUMER_FETCHING", BATCH_SOURCE)
    assert isinstance(fetching, str), _relied(
        "faust.transport.consumer.CONSUMER_FETCHING", BATCH_SOURCE, "is no longer a flag name")
    lock = _relied_on("faust.types.tuples:ack_lock", BATCH_SOURCE)
    assert hasattr(lock, "__enter__"), _relied(
        "faust.types.tuples.ack_lock", BATCH_SOURCE, "is no longer a lock")
    message = _relied_on("faust.types.tuples:Message", BATCH_SOURCE)
    assert "acked" in message.__slots__, _relied(
        "faust.types.tuples.Message.acked", BATCH_SOURCE, "is gone (the stand-in message is marked acked)")


def _pins() -> dict[str, str]:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = {}
    for requirement in extra["project"]["optional-dependencies"]["engine"]:
        name, sep, pinned = requirement.partition("==")
        if sep:
            pins[name.strip()] = pinned.strip()
    return pins


@pytest.mark.parametrize("package", PINNED)
def test_the_installed_version_is_the_pinned_one(package: str) -> None:
    pins = _pins()
    assert package in pins, f"pyproject.toml's engine extra does not pin {package} (==)"
    installed = version(package)
    assert installed == pins[package], (
        f"agents/runtime relies on {package} {pins[package]} internals; installed {installed}: "
        "re-check tests/unit/test_runtime_pins.py before changing the pin")
