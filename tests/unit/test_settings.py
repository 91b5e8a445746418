from __future__ import annotations

import pytest

from agents.app import faust_credentials
from settings import SettingsError, load_settings


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


def test_sasl_without_credentials_says_which_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIANCHA_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValueError, match="JIANCHA_KAFKA_SASL_USERNAME"):
        faust_credentials(load_settings())


def test_plaintext_has_no_credentials() -> None:
    assert faust_credentials(load_settings()) is None


def test_the_worker_tunes_the_interpreter_as_set(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import sys

    from agents.worker import tune_interpreter

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
