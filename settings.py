"""Every knob of jiancha in one pydantic-settings object (env prefix ``JIANCHA_``).

A wrong value fails at start-up with :class:`SettingsError`, whose message names the
environment variable and what it accepts. Nothing here reads the environment at import
time: call :func:`load_settings`.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "JIANCHA_"
DEFAULT_CATALOG_DIR = Path(__file__).resolve().parent / "rules" / "catalog"


class SettingsError(ValueError):
    """A setting has a value jiancha cannot use; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=None, extra="forbid", validate_default=True
    )

    # --- Kafka -----------------------------------------------------------------------
    broker_url: str = Field(
        "kafka://127.0.0.1:9092",
        description="Kafka bootstrap servers, 'kafka://host:port[;host:port]'.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-256"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    events_topic: str = "approval-events"
    dlq_topic: str = "approval-events.dlq"
    complaints_topic: str = "complaints"
    topic_partitions: int = Field(8, ge=1, le=1024)
    topic_replicas: int = Field(1, ge=1, le=16)
    kafka_session_timeout_seconds: float = Field(
        10.0, ge=1, le=300, description="consumer group session timeout"
    )
    kafka_rebalance_timeout_seconds: float = Field(
        10.0, ge=1, le=600, description="how long a rebalance waits for members to rejoin"
    )
    app_id: str = Field("jiancha", pattern=r"^[A-Za-z0-9._-]+$")

    # --- Redis -----------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// URL")
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_prefix: str = Field("jc:", pattern=r"^[A-Za-z0-9:_.-]*$")

    # --- HTTP: Faust web server (metrics, API) -------------------------------------
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)

    # --- Domain ----------------------------------------------------------------------
    catalog_dir: Path = DEFAULT_CATALOG_DIR
    calendar_file: Path | None = Field(
        None, description="YAML with holidays/make-up workdays for years chinese-calendar lacks"
    )
    timezone: str = "Asia/Shanghai"
    allowed_lateness_seconds: float | None = Field(
        None, ge=0, le=7 * 86400, description="overrides settings.allowed_lateness_minutes of the rules YAML"
    )
    future_tolerance_seconds: float = Field(
        300.0, ge=0, description="events dated further in the future are rejected"
    )
    department_keys_file: Path | None = Field(
        None, description="YAML {department: key | [keys]} of HMAC-SHA256 signing keys"
    )

    data_dir: Path = Field(
        Path(tempfile.gettempdir()) / "jiancha", description="Faust's local data directory"
    )
    rules_dir: Path | None = Field(
        None, description="rule set: a directory of YAML files (default: rules/ruleset)"
    )

    # --- Clock -----------------------------------------------------------------------
    clock_start: datetime | None = Field(
        None,
        description="simulated clock: the instant the worker's clock shows when it starts",
    )
    clock_anchor: float | None = Field(
        None, description="unix time at which the simulated clock shows clock_start (shared by processes)"
    )
    clock_speed: float = Field(1.0, gt=0, description="simulated seconds per real second")
    deadline_tick_seconds: float = Field(0.25, gt=0, le=60)

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, v: str) -> str:
        for part in v.split(";"):
            url = part if "://" in part else f"kafka://{part}"
            parsed = AnyUrl(url)
            if parsed.scheme not in {"kafka", "aiokafka"} or not parsed.host or not parsed.port:
                raise ValueError("expected kafka://host:port (several separated by ';')")
        return v

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, v: str) -> str:
        parsed = AnyUrl(v)
        if parsed.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("expected redis://host:port/db, rediss://… or unix://…")
        return v

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("expected an IANA time zone such as Asia/Shanghai") from exc
        return v

    @field_validator("catalog_dir")
    @classmethod
    def _check_catalog(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"{v} is not a directory of item catalog YAML files")
        return v

    @field_validator("clock_start")
    @classmethod
    def _check_clock_start(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("expected an RFC 3339 timestamp with offset, e.g. 2026-12-01T09:00:00+08:00")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def bootstrap_servers(self) -> list[str]:
        return [p.split("://", 1)[-1] for p in self.broker_url.split(";")]

    def redis_key(self, *parts: str) -> str:
        return self.redis_prefix + ":".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (plus explicit overrides, e.g. CLI flags)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    lines = ["invalid jiancha settings:"]
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        var = ENV_PREFIX + field.upper()
        desc = Settings.model_fields[field].description if field in Settings.model_fields else ""
        hint = f" ({desc})" if desc else ""
        got = err.get("input")
        lines.append(f"  {var}={got!r}: {err['msg']}{hint}")
    return "\n".join(lines)
