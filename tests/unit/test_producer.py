"""The department producer library without a broker: validation, signing, keys, SASL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from aiokafka.errors import RequestTimedOutError, UnknownError
from aiokafka.structs import RecordMetadata, TopicPartition

import jiancha.producers.client as client_mod
from jiancha.producers.client import (
    DepartmentProducer,
    ProducerDeliveryError,
    ProducerValidationError,
    SyncDepartmentProducer,
    producer_from_config,
)
from jiancha.producers.config import KafkaConnection, ProducerConfig, ProducerConfigError
from jiancha.producers.contract import EventValidationError, parse_event, verify_signature
from jiancha.producers.keys import DepartmentKeys

KEY = b"dept-a-secret"


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema_version": 1,
        "event_id": "A-0001",
        "case_id": "CASE-2026-0001",
        "item_code": "ITEM-001",
        "department": "DEPT-A",
        "step": "accepted",
        "occurred_at": "2026-12-01T09:00:00+08:00",
        "actor": "handler-7",
        "attributes": {"note": "受理"},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


class FakeKafka:
    """Stands in for AIOKafkaProducer: records what is sent, fails as planned."""

    instances: ClassVar[list[FakeKafka]] = []
    refuse_idempotence: ClassVar[bool] = False
    plan: ClassVar[list[BaseException | None]] = []  # outcome of each delivery, in order

    def __init__(self, *, enable_idempotence: bool = False, **kwargs: Any) -> None:
        self.idempotent = enable_idempotence
        self.kwargs = kwargs
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.started = self.stopped = False
        FakeKafka.instances.append(self)

    async def start(self) -> None:
        if self.idempotent and self.refuse_idempotence:
            raise UnknownError()
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def flush(self) -> None:
        await asyncio.sleep(0)

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   timestamp_ms: int | None = None) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        outcome = FakeKafka.plan.pop(0) if FakeKafka.plan else None
        if outcome is None:
            tp = TopicPartition(topic, 0)
            fut.set_result(RecordMetadata(topic, 0, tp, len(self.sent) - 1, 0, 0, 0))
        else:
            fut.set_exception(outcome)
        return fut


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[FakeKafka]:
    monkeypatch.setattr(client_mod, "AIOKafkaProducer", FakeKafka)
    monkeypatch.setattr(FakeKafka, "instances", [])
    monkeypatch.setattr(FakeKafka, "plan", [])
    monkeypatch.setattr(FakeKafka, "refuse_idempotence", False)
    return FakeKafka


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in [v for v in os.environ if v.startswith("JIANCHA_")]:
        monkeypatch.delenv(var)


def producer(**kwargs: Any) -> DepartmentProducer:
    kwargs.setdefault("retry_backoff", 0.001)
    return DepartmentProducer("127.0.0.1:9", "DEPT-A", KEY, **kwargs)


# --- validation --------------------------------------------------------------------------


def test_validation_error_names_every_bad_field() -> None:
    bad = event(case_id=None, occurred_at="2026-12-01T09:00:00", step="decided", attributes={})
    with pytest.raises(ProducerValidationError) as info:
        producer().encode(bad)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, EventValidationError)
    fields = [f for f, _ in err.problems]
    assert "case_id" in fields and "occurred_at" in fields
    assert "case_id" in str(err) and "occurred_at" in str(err)


def test_step_rule_problem_is_reported() -> None:
    with pytest.raises(ProducerValidationError, match=r"outcome"):
        producer().encode(event(step="decided", attributes={}))


def test_wrong_department_is_refused() -> None:
    with pytest.raises(ProducerValidationError) as info:
        producer().encode(event(department="DEPT-B"))
    assert info.value.problems[0][0] == "department"


def test_nothing_is_sent_when_invalid(fake_kafka: type[FakeKafka]) -> None:
    async def run() -> None:
        async with producer() as p:
            with pytest.raises(ProducerValidationError):
                await p.send(event(actor=None))
            with pytest.raises(ProducerValidationError) as info:
                await p.send_many([event(), event(event_id="A-2", occurred_at="nope")])
            assert info.value.problems[0][0] == "[1].occurred_at"

    asyncio.run(run())
    assert fake_kafka.instances[-1].sent == []


def test_not_a_dict_is_a_validation_error() -> None:
    with pytest.raises(ProducerValidationError, match="expected an ApprovalEvent"):
        producer().encode(["not", "an", "event"])  # type: ignore[arg-type]


# --- signing and encoding ----------------------------------------------------------------


def test_signature_verifies_with_contract_helper() -> None:
    record = producer().encode(event())
    payload = orjson.loads(record.value)
    assert verify_signature(payload, [KEY])
    assert not verify_signature(payload, [b"another key"])
    assert record.key == b"CASE-2026-0001"
    assert record.event_id == "A-0001"
    body = {k: v for k, v in payload.items() if k != "signature"}
    assert body == parse_event(event()).wire_dict()


def test_encoding_is_deterministic_and_overwrites_a_stale_signature() -> None:
    p = producer()
    first = p.encode(event())
    assert p.encode(parse_event(event())).value == first.value
    assert p.encode(event(signature="0" * 64)).value == first.value


def test_unsigned_without_key_and_keys_by_department() -> None:
    plain = DepartmentProducer("x:1", None).encode(event())
    assert "signature" not in orjson.loads(plain.value)
    keys = DepartmentKeys.from_mapping({"DEPT-A": "k-a", "DEPT-B": "k-b"})
    p = DepartmentProducer("x:1", None, keys=keys)
    for dept, key in (("DEPT-A", b"k-a"), ("DEPT-B", b"k-b")):
        assert verify_signature(orjson.loads(p.encode(event(department=dept)).value), [key])
    assert "signature" not in orjson.loads(p.encode(event(department="DEPT-C")).value)


def test_department_with_only_expired_keys_cannot_send() -> None:
    keys = DepartmentKeys.from_mapping(
        {"DEPT-A": [{"key": "old", "not_after": "2020-01-01T00:00:00+08:00"}]}
    )
    with pytest.raises(ProducerValidationError) as info:
        DepartmentProducer("x:1", "DEPT-A", keys=keys).encode(event())
    assert info.value.problems[0][0] == "signature"


# --- sending with a fake broker --------------------------------------------------------


def test_transient_failure_resends_the_same_bytes(fake_kafka: type[FakeKafka]) -> None:
    fake_kafka.plan = [RequestTimedOutError(), RequestTimedOutError(), None]

    async def run() -> RecordMetadata:
        async with producer() as p:
            return await p.send_and_wait(event())

    meta = asyncio.run(run())
    sent = fake_kafka.instances[-1].sent
    assert len(sent) == 3 and len(set(sent)) == 1
    assert sent[0][0] == "approval-events" and sent[0][1] == b"CASE-2026-0001"
    assert meta.offset == 2


def test_permanent_failure_surfaces_at_flush(fake_kafka: type[FakeKafka]) -> None:
    fake_kafka.plan = [None, UnknownError()]

    async def run() -> None:
        p = producer(retries=1)
        await p.start()
        await p.send(event())
        await p.send(event(event_id="A-0002"))
        with pytest.raises(ProducerDeliveryError) as info:
            await p.flush()
        assert [eid for eid, _ in info.value.failures] == ["A-0002"]
        await p.flush()  # reported once
        await p.stop()

    asyncio.run(run())


def test_retries_are_bounded(fake_kafka: type[FakeKafka]) -> None:
    fake_kafka.plan = [RequestTimedOutError()] * 10

    async def run() -> None:
        async with producer(retries=2) as p:
            with pytest.raises(ProducerDeliveryError, match="A-0001"):
                await p.send_many([event()])

    asyncio.run(run())
    assert len(fake_kafka.instances[-1].sent) == 3


def test_idempotence_auto_falls_back(fake_kafka: type[FakeKafka]) -> None:
    fake_kafka.refuse_idempotence = True

    async def run() -> DepartmentProducer:
        async with producer() as p:
            await p.send_and_wait(event())
        return p

    p = asyncio.run(run())
    assert p.idempotent is False
    first, second = fake_kafka.instances
    assert first.idempotent and first.stopped and not second.idempotent
    assert second.kwargs["acks"] == "all"
    assert 5 <= second.kwargs["linger_ms"] <= 20

    fake_kafka.refuse_idempotence = False
    assert asyncio.run(run()).idempotent is True

    async def strict() -> None:
        await producer(idempotence=True).start()

    fake_kafka.refuse_idempotence = True
    with pytest.raises(UnknownError):
        asyncio.run(strict())


def test_sync_producer(fake_kafka: type[FakeKafka]) -> None:
    sync = SyncDepartmentProducer("127.0.0.1:9", "DEPT-A", KEY)
    with pytest.raises(RuntimeError, match="not started"):
        sync.send(event())
    with sync:
        with pytest.raises(ProducerValidationError):
            sync.send(event(actor=None))
        sync.send(event())
        assert sync.send_and_wait(event(event_id="A-0002")).offset == 1
        assert len(sync.send_many([event(event_id="A-0003")])) == 1
        sync.flush()
    sent = fake_kafka.instances[-1].sent
    assert [orjson.loads(v)["event_id"] for _, _, v in sent] == ["A-0001", "A-0002", "A-0003"]
    assert sync._thread is None


# --- keys --------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_key_file_shapes(tmp_path: Path) -> None:
    keys = DepartmentKeys.load(write(tmp_path, """
DEPT-A: plain-secret
"0012": [first, second]
110105: hex:00ff10
"""))
    assert keys.departments == ["0012", "110105", "DEPT-A"]
    assert keys.signing_key("DEPT-A") == b"plain-secret"
    assert keys.signing_key("0012") == b"second"
    assert keys.verification_keys("0012") == [b"first", b"second"]
    assert keys.signing_key("110105") == b"\x00\xff\x10"
    assert keys.signing_key("NOPE") is None and not keys.has_keys("NOPE")
    assert "secret" not in repr(keys)


def test_key_rotation_overlap_and_expiry(tmp_path: Path) -> None:
    keys = DepartmentKeys.load(write(tmp_path, """
DEPT-A:
  - key: new-key
  - key: old-key
    not_after: 2026-12-31T23:59:59+08:00
"""))
    during = datetime(2026, 12, 20, tzinfo=UTC)
    after = datetime(2026, 12, 31, 16, 0, 0, tzinfo=UTC)  # 2027-01-01 00:00 +08:00
    assert keys.verification_keys("DEPT-A", during) == [b"new-key", b"old-key"]
    assert keys.signing_key("DEPT-A", during) == b"new-key"
    assert keys.verification_keys("DEPT-A", after) == [b"new-key"]
    edge = datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC)
    assert b"old-key" in keys.verification_keys("DEPT-A", edge)
    with pytest.raises(ValueError, match="time zone"):
        keys.verification_keys("DEPT-A", datetime(2026, 12, 20))


def test_rotation_signs_with_the_key_that_lasts_longest() -> None:
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    keys = DepartmentKeys.from_mapping({"D": [{"key": "b", "not_after": later},
                                              {"key": "a", "not_after": soon}]})
    assert keys.signing_key("D") == b"b"
    expired = DepartmentKeys.from_mapping(
        {"D": [{"key": "x", "not_after": "2000-01-01T00:00:00Z"}]}
    )
    assert expired.has_keys("D") and expired.signing_key("D") is None
    assert expired.verification_keys("D") == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("DEPT-A: [{key: k, not_after: 2026-12-31T00:00:00}]\n", "needs an offset"),
        ("DEPT-A: [{key: k, not_after: tomorrow}]\n", "not an RFC 3339"),
        ("DEPT-A: [{secret: k}]\n", "unknown field"),
        ("DEPT-A: []\n", "no keys"),
        ("DEPT-A: 'hex:zz'\n", "hexadecimal"),
        ("DEPT-A: ''\n", "empty"),
        ("DEPT-A: [[k]]\n", "expected a key string"),
    ],
)
def test_bad_key_file_names_file_and_department(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=needle) as info:
        DepartmentKeys.load(path)
    assert str(path) in str(info.value) and "'DEPT-A'" in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "a: [\n"])
def test_bad_key_file_shape(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
        DepartmentKeys.load(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        DepartmentKeys.load(tmp_path / "absent.yaml")


# --- configuration -----------------------------------------------------------------------


def test_sasl_mapping() -> None:
    assert KafkaConnection().security_kwargs() == {"security_protocol": "PLAINTEXT"}
    sasl = KafkaConnection(["h:1"], "SASL_PLAINTEXT", "SCRAM-SHA-512", "dept-a", "pw")
    assert sasl.security_kwargs() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "dept-a",
        "sasl_plain_password": "pw",
    }
    assert "pw" not in repr(sasl)
    tls = KafkaConnection(["h:1"], "SASL_SSL", "SCRAM-SHA-512", "dept-a", "pw").security_kwargs()
    assert tls["ssl_context"] is not None and tls["sasl_plain_password"] == "pw"
    ssl_only = KafkaConnection(security_protocol="SSL").security_kwargs()
    assert set(ssl_only) == {"security_protocol", "ssl_context"}
    assert KafkaConnection(client_id="dept-a").client_kwargs() == {
        "bootstrap_servers": ["127.0.0.1:9092"], "client_id": "dept-a",
        "security_protocol": "PLAINTEXT"}


def test_sasl_without_credentials_names_the_variables() -> None:
    with pytest.raises(ValueError, match="JIANCHA_KAFKA_SASL_USERNAME and JIANCHA_KAFKA_SASL_PASS"):
        KafkaConnection(security_protocol="SASL_SSL").security_kwargs()
    with pytest.raises(ValueError, match=r"needs JIANCHA_KAFKA_SASL_PASSWORD$"):
        KafkaConnection(security_protocol="SASL_PLAINTEXT", sasl_username="u").security_kwargs()


def test_the_config_from_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    config = ProducerConfig.from_env({
        "JIANCHA_BROKER_URL": "kafka://h1:9092;h2:9093", "JIANCHA_EVENTS_TOPIC": "events-x",
        "JIANCHA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "JIANCHA_KAFKA_SASL_MECHANISM": "PLAIN",
        "JIANCHA_KAFKA_SASL_USERNAME": "u", "JIANCHA_KAFKA_SASL_PASSWORD_FILE": str(secret),
        "JIANCHA_DEPARTMENT_KEYS_FILE": "keys.yaml", "OTHER": "x"})
    assert config == ProducerConfig(
        KafkaConnection(["h1:9092", "h2:9093"], "SASL_PLAINTEXT", "PLAIN", "u", "from-a-file"),
        events_topic="events-x", department_keys_file=Path("keys.yaml"))
    assert ProducerConfig.from_env({}) == ProducerConfig()


@pytest.mark.parametrize(("var", "value", "hint"), [
    ("JIANCHA_BROKER_URL", "http://h:1", "kafka://host:port"),
    ("JIANCHA_BROKER_URL", "kafka://h", "kafka://host:port"),
    ("JIANCHA_KAFKA_SECURITY_PROTOCOL", "KERBEROS", "PLAINTEXT"),
    ("JIANCHA_KAFKA_SASL_MECHANISM", "GSSAPI", "SCRAM-SHA-256"),
    ("JIANCHA_KAFKA_SASL_PASSWORD_FILE", "/no/such/file", "No such file"),
    ("JIANCHA_KAFKA_SSL_CAFILE", "/no/such/ca.pem", "not a file"),
])
def test_a_bad_variable_is_named(var: str, value: str, hint: str) -> None:
    with pytest.raises(ProducerConfigError) as exc:
        ProducerConfig.from_env({var: value})
    assert var in str(exc.value) and hint in str(exc.value)


def test_producer_from_config(tmp_path: Path) -> None:
    path = write(tmp_path, "DEPT-A: from-file\n")
    config = ProducerConfig(KafkaConnection(["h1:9092", "h2:9093"], "SASL_PLAINTEXT", "PLAIN", "u", "p"),
                            events_topic="events-x", department_keys_file=path)
    p = producer_from_config(config, "DEPT-A")
    assert p.topic == "events-x" and p.bootstrap_servers == ["h1:9092", "h2:9093"]
    assert p._kafka_kwargs["sasl_plain_username"] == "u"
    assert verify_signature(orjson.loads(p.encode(event()).value), [b"from-file"])
