"""Every knob of jiancha in one pydantic-settings object (env prefix ``JIANCHA_``).

A wrong value fails at start-up with :class:`SettingsError`, whose message names the
environment variable and what it accepts. Nothing here reads the environment at import
time: call :func:`load_settings`.
"""

from __future__ import annotations

if __name__ != "jiancha.settings":  # one copy of the module, under the installed name only
    raise ImportError(f"import jiancha.settings, not {__name__}: settings.py is installed under jiancha.")

import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from jiancha.rules.collector import YOUNG_THRESHOLD

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
    kafka_sasl_password_file: Path | None = Field(
        None, description="file holding the SASL password (a Docker secret), instead of "
        "JIANCHA_KAFKA_SASL_PASSWORD; one trailing newline is ignored",
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates (SSL and "
        "SASL_SSL; default: the system's CAs)",
    )
    events_topic: str = "approval-events"
    dlq_topic: str = "approval-events.dlq"
    complaints_topic: str = "complaints"
    complaints_dlq_topic: str = Field(
        "complaints.dlq", description="where rejected complaints go, with their reason"
    )
    topic_partitions: int = Field(8, ge=1, le=1024)
    topic_replicas: int = Field(1, ge=1, le=16)
    kafka_session_timeout_seconds: float = Field(
        10.0, ge=1, le=300, description="consumer group session timeout"
    )
    kafka_commit_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="how often processed offsets are committed"
    )
    kafka_rebalance_timeout_seconds: float = Field(
        10.0, ge=1, le=600, description="how long a rebalance waits for members to rejoin"
    )
    kafka_producer_batch_bytes: int = Field(
        1_000_000, ge=16_384, le=16_000_000,
        description="largest producer batch per partition: the changelog records of a "
        "commit interval go out in few requests (Kafka's default, 16 KiB, makes many)",
    )
    kafka_max_poll_records: int | None = Field(
        None, ge=1, le=1_000_000,
        description="most events the supervising agent takes in one batch (none: what one "
        "fetch brings, up to a MiB per partition)",
    )
    kafka_fetch_max_wait_ms: int = Field(
        20, ge=1, le=10_000,
        description="how long the broker may hold a fetch for new events: a live event "
        "waits up to this long (Faust's own 1.5 s made alerts late)",
    )
    app_id: str = Field("jiancha", pattern=r"^[A-Za-z0-9._-]+$")

    # --- Redis -----------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// URL")
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = Field(
        None, description="file holding the Redis password (a Docker secret), instead of "
        "JIANCHA_REDIS_PASSWORD; one trailing newline is ignored",
    )
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
        None, description="YAML {department: key | [keys]} of HMAC-SHA256 signing keys; "
        "with it every event must be signed by its department"
    )
    unsigned_departments: list[str] = Field(
        default_factory=list,
        description="catalog departments whose events may still come unsigned while they "
        "move to signing (a JSON list); none by default",
    )
    complaints_signer: str = Field(
        "complaint-centre", min_length=1,
        description="the keys file's entry whose keys sign complaints (the complaint centre)",
    )

    data_dir: Path = Field(
        Path(tempfile.gettempdir()) / "jiancha", description="Faust's local data directory"
    )
    rules_dir: Path | None = Field(
        None, description="rule set: a directory of YAML files (default: rules/ruleset)"
    )

    extensions: list[Literal["windows", "complaints", "indicators"]] = Field(
        default_factory=lambda: ["windows", "complaints", "indicators"],
        description="worker capabilities beyond the case rules, a JSON list",
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
    finished_case_retention_days: float = Field(
        90, ge=1, le=3650,
        description="a finished case (completed, withdrawn or refused at intake, nothing "
                    "left due) leaves the case table this many days after it finished; its "
                    "alerts stay in Redis, and a step reported later starts the case afresh")
    gc_young_threshold: int = Field(
        YOUNG_THRESHOLD, ge=700, le=10_000_000,
        description="net new objects between two collections of the worker's youngest "
        "generation. Python's default (700) collects many times per batch; a batch taken "
        "from a backlog is a whole fetch whose objects live until the batch ends, so the "
        "threshold is set above that wave: collections then follow the state's lasting "
        "growth instead of traversing every batch (docs/performance.md)",
    )
    gil_switch_interval_ms: float = Field(
        20.0, ge=0.1, le=1_000,
        description="how long the worker's threads may hold the GIL before another asks "
        "for it (Python's default is 5): Faust's consumer fetches in a thread of its own, "
        "and switching less often leaves the agent's batches uninterrupted",
    )

    # --- Notifier (jiancha notifier: alert lifecycle, notifications, HTTP API) ------------
    notifier_routing_file: Path | None = Field(
        None, description="routing YAML: receivers, routes, grouping (default: rules/routing.yaml)"
    )
    notifier_tokens_file: Path | None = Field(
        None, description="API tokens YAML (bureau / department tokens); without it the API answers 401"
    )
    notifier_host: str = Field("127.0.0.1", description="address of the notifier's HTTP API")
    notifier_port: int = Field(6067, ge=1, le=65535, description="port of the notifier's HTTP API")
    notifier_group: str = Field(
        "notifier", pattern=r"^[A-Za-z0-9._-]+$",
        description="Redis consumer group on the alert stream shared by the notifier replicas"
    )
    notifier_consumer: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]+$",
        description="consumer name in the group; keep it stable across restarts (default: host name)"
    )
    notifier_group_start_id: str = Field(
        "0", pattern=r"^(0|\$|\d+-\d+)$",
        description="where a new consumer group starts on the alert stream: 0 (all), $ (new only)"
    )
    notifier_claim_idle_seconds: float = Field(
        60.0, gt=0, description="alert-stream entries pending this long at a dead consumer are taken over"
    )
    notifier_poll_seconds: float = Field(
        0.2, gt=0, le=10, description="how often due groups, repeats and queues are looked at"
    )
    notifier_retry_base_seconds: float = Field(
        2.0, gt=0, description="first retry delay of a failed delivery (doubles each attempt)"
    )
    notifier_retry_max_seconds: float = Field(
        300.0, gt=0, description="longest delay between delivery retries"
    )
    notifier_max_attempts: int = Field(
        48, ge=1, le=100_000,
        description="failed attempts after which a notification goes to the dead-letter stream "
        "jc:notify:dead (48 at the default backoff: about 3.5 hours of failures)"
    )
    notifier_rate_per_second: float = Field(
        10.0, gt=0, description="API requests per second allowed to one token (or one address "
        "without a valid token); past it 429 with Retry-After"
    )
    notifier_rate_burst: int = Field(
        50, ge=1, description="API requests one token may make at once before the rate applies"
    )
    notifier_lease_seconds: float = Field(
        60.0, gt=0, description="a notification being sent is retried if not done by then (crash)"
    )
    notifier_dedup_days: float = Field(
        30.0, gt=0, description="how long the (alert, transition, receiver, channel) dedup marks live"
    )
    notifier_smtp_host: str | None = Field(None, description="SMTP server for email channels")
    notifier_smtp_port: int = Field(25, ge=1, le=65535)
    notifier_smtp_username: str | None = None
    notifier_smtp_password: SecretStr | None = None
    notifier_smtp_starttls: bool = Field(False, description="STARTTLS after connecting")
    notifier_smtp_ssl: bool = Field(False, description="SMTP over TLS (port 465)")
    notifier_smtp_from: str = Field("jiancha@localhost", description="sender address of the mails")
    notifier_public_url: str | None = Field(
        None, pattern=r"^https?://[^\s]+$",
        description="the notifier's address as people reach it (e.g. https://jiancha.example.gov.cn); "
        "notifications link each alert to its page there (default: http://notifier_host:notifier_port)"
    )

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

    @field_validator("kafka_sasl_password_file", "redis_password_file")
    @classmethod
    def _check_secret_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            return v
        assert info.field_name is not None
        inline = info.field_name.removesuffix("_file")
        if info.data.get(inline) is not None:
            raise ValueError(f"set either {ENV_PREFIX}{inline.upper()} or this, not both")
        _read_secret_file(v)
        return v

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _check_cafile(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a file (a PEM CA certificate)")
        return v

    @model_validator(mode="after")
    def _passwords_from_files(self) -> Settings:
        if self.kafka_sasl_password_file is not None:
            self.kafka_sasl_password = SecretStr(_read_secret_file(self.kafka_sasl_password_file))
        if self.redis_password_file is not None:
            self.redis_password = SecretStr(_read_secret_file(self.redis_password_file))
        return self

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


_SECRET_FIELD = re.compile(r"password|secret")


def mask_url(url: str) -> str:
    """The URL with the credentials before its last ``@`` hidden, for messages: a rejected
    ``redis://:secret@host:port`` is shown as ``redis://***@host:port``."""
    head, at, rest = url.rpartition("@")
    if not at:
        return url
    scheme = head.partition("://")[0] + "://" if "://" in head else ""
    return f"{scheme}***@{rest}"


def _read_secret_file(path: Path) -> str:
    """A secret file's text without its trailing newline; never the text in an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read {path}: {reason}") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ValueError(f"{path} is empty")
    if "\n" in text:
        raise ValueError(f"{path} holds more than one line")
    return text


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
        if isinstance(got, str):
            got = "***" if _SECRET_FIELD.search(field) else mask_url(got) if "url" in field else got
        lines.append(f"  {var}={got!r}: {err['msg']}{hint}")
    return "\n".join(lines)
