from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from jiancha.agents.app import end_offsets_reader, faust_credentials
from jiancha.settings import SettingsError, WorkerSettings

load_settings = WorkerSettings.load


def test_defaults_load() -> None:
    s = load_settings()
    assert s.timezone == "Asia/Shanghai"
    assert s.bootstrap_servers == ["127.0.0.1:9092"]
    assert s.redis_key("alerts") == "jc:alerts"


@pytest.mark.parametrize(
    ("var", "value", "hint"),
    [
        ("JIANCHA_TOPIC_PARTITIONS", "zero", "valid integer"),
        ("JIANCHA_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        ("JIANCHA_TIMEZONE", "Mars/Base", "IANA time zone"),
        ("JIANCHA_BROKER_URL", "http://x:1", "kafka://host:port"),
        ("JIANCHA_REDIS_URL", "postgres://x", "redis://"),
        ("JIANCHA_CATALOG_DIR", "/no/such/dir", "not a directory"),
        ("JIANCHA_CLOCK_START", "2026-12-01T09:00:00", "with offset"),
        ("JIANCHA_KAFKA_SECURITY_PROTOCOL", "KERBEROS", "PLAINTEXT"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                                      hint: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert var in str(exc.value)
    assert hint in str(exc.value)


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(SettingsError, match="JIANCHA_NO_SUCH_KNOB"):
        load_settings(no_such_knob=1)


def test_sasl_scram_maps_to_faust_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIANCHA_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("JIANCHA_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("JIANCHA_KAFKA_SASL_USERNAME", "jiancha")
    monkeypatch.setenv("JIANCHA_KAFKA_SASL_PASSWORD", "s3cret")
    creds = faust_credentials(load_settings())
    assert creds.username == "jiancha" and creds.password == "s3cret"
    assert str(creds.mechanism.value) == "SCRAM-SHA-512"
    assert creds.protocol.value == "SASL_PLAINTEXT"


def test_the_end_offsets_client_logs_in_as_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline timer's own client for end offsets (agents/end_offsets.py) has the
    brokers and the SASL login of the settings, like Faust's consumer."""
    monkeypatch.setenv("JIANCHA_BROKER_URL", "kafka://k1:9093;k2:9093")
    monkeypatch.setenv("JIANCHA_EVENTS_TOPIC", "approvals")
    monkeypatch.setenv("JIANCHA_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("JIANCHA_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("JIANCHA_KAFKA_SASL_USERNAME", "jiancha")
    monkeypatch.setenv("JIANCHA_KAFKA_SASL_PASSWORD", "s3cret")
    reader = end_offsets_reader(load_settings())
    assert reader.topic == "approvals"
    assert reader.client_kwargs == {
        "bootstrap_servers": ["k1:9093", "k2:9093"], "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "jiancha",
        "sasl_plain_password": "s3cret"}


def test_sasl_without_credentials_says_which_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIANCHA_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValueError, match="JIANCHA_KAFKA_SASL_USERNAME"):
        faust_credentials(load_settings())


def test_plaintext_has_no_credentials() -> None:
    assert faust_credentials(load_settings()) is None


def test_the_worker_tunes_the_interpreter_as_set(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import sys

    from jiancha.agents.worker import tune_interpreter

    before, switch = gc.get_threshold(), sys.getswitchinterval()
    monkeypatch.setenv("JIANCHA_GC_YOUNG_THRESHOLD", "12345")
    monkeypatch.setenv("JIANCHA_GIL_SWITCH_INTERVAL_MS", "15")
    try:
        tune_interpreter(load_settings())
        assert gc.get_threshold() == (12345, before[1], before[2])
        assert sys.getswitchinterval() == pytest.approx(0.015)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        sys.setswitchinterval(switch)
    monkeypatch.setenv("JIANCHA_GIL_SWITCH_INTERVAL_MS", "0")
    with pytest.raises(SettingsError, match="JIANCHA_GIL_SWITCH_INTERVAL_MS"):
        load_settings()
    monkeypatch.delenv("JIANCHA_GIL_SWITCH_INTERVAL_MS")
    monkeypatch.setenv("JIANCHA_GC_YOUNG_THRESHOLD", "10")
    with pytest.raises(SettingsError, match="JIANCHA_GC_YOUNG_THRESHOLD"):
        load_settings()


# --- secrets from files, TLS towards Kafka --------------------------------------------------


@pytest.mark.parametrize(
    ("file_var", "field"),
    [
        ("JIANCHA_KAFKA_SASL_PASSWORD_FILE", "kafka_sasl_password"),
        ("JIANCHA_REDIS_PASSWORD_FILE", "redis_password"),
    ],
)
def test_a_password_is_read_from_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file_var: str, field: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-from-a-file\n")  # as `openssl rand` or an editor writes it
    monkeypatch.setenv(file_var, str(secret))
    assert getattr(load_settings(), field).get_secret_value() == "s3cret-from-a-file"


@pytest.mark.parametrize("file_var", ["JIANCHA_KAFKA_SASL_PASSWORD_FILE", "JIANCHA_REDIS_PASSWORD_FILE"])
@pytest.mark.parametrize(
    ("content", "hint"),
    [(None, "No such file"), ("", "is empty"), ("\n", "is empty"), ("one\ntwo\n", "more than one line")],
)
def test_an_unusable_password_file_names_the_variable_not_the_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file_var: str, content: str | None, hint: str
) -> None:
    secret = tmp_path / "secret"
    if content is not None:
        secret.write_text(content)
    monkeypatch.setenv(file_var, str(secret))
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert file_var in str(exc.value) and hint in str(exc.value)
    assert "two" not in str(exc.value)


def test_a_password_and_its_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-the-file")
    monkeypatch.setenv("JIANCHA_REDIS_PASSWORD", "inline")
    monkeypatch.setenv("JIANCHA_REDIS_PASSWORD_FILE", str(secret))
    with pytest.raises(SettingsError, match=r"JIANCHA_REDIS_PASSWORD_FILE.*not both"):
        load_settings()


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is missing: apt-get install openssl")
    where = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=jiancha test CA", "-keyout", str(where / "ca.key"),
         "-out", str(where / "ca.crt")],
        check=True, capture_output=True,
    )
    return where / "ca.crt"


def _common_names(ctx: ssl.SSLContext) -> list[str]:
    return [v for cert in ctx.get_ca_certs() for rdn in cert["subject"] for k, v in rdn if k == "commonName"]


def test_sasl_ssl_with_the_deployment_ca_maps_to_faust_and_aiokafka(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ca_pem: Path
) -> None:
    secret = tmp_path / "worker.password"
    secret.write_text("w0rker\n")
    monkeypatch.setenv("JIANCHA_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("JIANCHA_KAFKA_SASL_USERNAME", "jiancha-worker")
    monkeypatch.setenv("JIANCHA_KAFKA_SASL_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("JIANCHA_KAFKA_SSL_CAFILE", str(ca_pem))
    s = load_settings()

    creds = faust_credentials(s)
    assert creds.protocol.value == "SASL_SSL"
    assert creds.username == "jiancha-worker" and creds.password == "w0rker"
    kwargs = s.kafka_connection().security_kwargs()
    for ctx in (creds.ssl_context, kwargs["ssl_context"]):
        assert _common_names(ctx) == ["jiancha test CA"]
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_plain_username"] == "jiancha-worker"
    assert kwargs["sasl_plain_password"] == "w0rker"


def test_ssl_without_a_cafile_trusts_the_system_cas(
    monkeypatch: pytest.MonkeyPatch, ca_pem: Path
) -> None:
    monkeypatch.setenv("JIANCHA_KAFKA_SECURITY_PROTOCOL", "SSL")
    creds = faust_credentials(load_settings())
    assert creds.protocol.value == "SSL"
    assert "jiancha test CA" not in _common_names(creds.context)
    assert creds.context.verify_mode == ssl.CERT_REQUIRED and creds.context.check_hostname


def test_a_missing_cafile_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JIANCHA_KAFKA_SSL_CAFILE", str(tmp_path / "nope.crt"))
    with pytest.raises(SettingsError, match="JIANCHA_KAFKA_SSL_CAFILE"):
        load_settings()


# --- one class per process ---------------------------------------------------------------


def test_each_process_reads_only_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from jiancha.settings import NotifierSettings, ProducerSettings, ReplaySettings

    monkeypatch.setenv("JIANCHA_KAFKA_FETCH_MAX_WAIT_MS", "not a number")  # the worker's alone
    monkeypatch.setenv("JIANCHA_NOTIFIER_PORT", "0")  # the notifier's alone
    assert NotifierSettings.load(notifier_port=6067).redis_prefix == "jc:"
    assert not hasattr(NotifierSettings.load(notifier_port=6067), "kafka_fetch_max_wait_ms")
    assert ProducerSettings.load().events_topic == "approval-events"
    assert ReplaySettings.load().timezone == "Asia/Shanghai"
    with pytest.raises(SettingsError, match="JIANCHA_KAFKA_FETCH_MAX_WAIT_MS"):
        WorkerSettings.load()
    with pytest.raises(SettingsError, match="JIANCHA_NOTIFIER_PORT"):
        NotifierSettings.load()
    with pytest.raises(SettingsError, match="JIANCHA_NOTIFIER_PORT"):
        NotifierSettings.load(notifier_port=0)


def test_a_shared_part_is_checked_alike_in_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from jiancha.settings import PROCESSES, RedisSettings

    monkeypatch.setenv("JIANCHA_REDIS_URL", "postgres://x")
    readers = [p for p in PROCESSES.values() if issubclass(p.settings, RedisSettings)]
    assert {p.name for p in readers} == {"worker", "notifier", "alerts"}
    for process in readers:
        with pytest.raises(SettingsError, match="JIANCHA_REDIS_URL"):
            process.settings.load()


def test_the_producer_library_reads_the_variables_as_the_settings_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from jiancha.producers.config import ProducerConfig
    from jiancha.settings import ProducerSettings

    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    env = {"JIANCHA_BROKER_URL": "kafka://k1:9093;k2:9093", "JIANCHA_EVENTS_TOPIC": "ev",
           "JIANCHA_COMPLAINTS_TOPIC": "co", "JIANCHA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "JIANCHA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "JIANCHA_KAFKA_SASL_USERNAME": "dept",
           "JIANCHA_KAFKA_SASL_PASSWORD_FILE": str(secret),
           "JIANCHA_DEPARTMENT_KEYS_FILE": str(tmp_path / "keys.yaml"),
           "JIANCHA_COMPLAINTS_SIGNER": "centre"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ProducerSettings.load().producer_config() == ProducerConfig.from_env()
    assert ProducerConfig.from_env().kafka.sasl_password == "s3cret"
    for name in env:
        monkeypatch.delenv(name)
    assert ProducerSettings.load().producer_config() == ProducerConfig.from_env()
