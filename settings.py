"""The settings of each jiancha process, read from ``JIANCHA_*`` environment variables
(pydantic-settings).

Settings come in parts (Kafka connection, Redis, calendar, …); each process's class is made
of the parts it needs plus its own, so a process reads, and fails on, only its own
variables: :class:`WorkerSettings`, :class:`NotifierSettings`, :class:`ProducerSettings`
(``jiancha send``), :class:`SimulatorSettings`, :class:`ReplaySettings` (replay, report,
rules, catalog) and :class:`AlertsSettings` (``jiancha alerts``). :data:`PROCESSES` names
them; ``jiancha settings`` lists them and writes docs/settings.md.

A wrong value fails at start-up with :class:`SettingsError`, whose message names the
environment variable and what it accepts. Nothing here reads the environment at import
time: call ``WorkerSettings.load()`` (and so on).
"""

from __future__ import annotations

if __name__ != "jiancha.settings":  # one copy of the module, under the installed name only
    raise ImportError(f"import jiancha.settings, not {__name__}: settings.py is installed under jiancha.")

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Self
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

from jiancha.producers.config import (
    DEFAULT_BROKER_URL,
    DEFAULT_COMPLAINTS_SIGNER,
    DEFAULT_COMPLAINTS_TOPIC,
    DEFAULT_EVENTS_TOPIC,
    ENV_PREFIX,
    KafkaConnection,
    ProducerConfig,
    SaslMechanism,
    SecurityProtocol,
    parse_broker_url,
    read_secret_file,
)
from jiancha.rules.collector import YOUNG_THRESHOLD

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CATALOG_DIR = PACKAGE_DIR / "rules" / "catalog"


class SettingsError(ValueError):
    """A setting has a value jiancha cannot use; the message names the variable."""


class JianchaSettings(BaseSettings):
    """What every settings class shares: the ``JIANCHA_`` prefix, no unknown fields, and
    :meth:`load`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=None, extra="forbid", validate_default=True
    )

    @classmethod
    def load(cls, **overrides: object) -> Self:
        """Read the settings from the environment (plus explicit overrides, e.g. command
        line options); :class:`SettingsError` names each bad variable."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise SettingsError(_explain(cls, exc)) from None

    @classmethod
    def of_variables(cls, variables: Mapping[str, str]) -> Self:
        """The settings of a process started with ``variables`` (an environment meant for
        several processes: the variables this class does not read are left out)."""
        fields = {name.removeprefix(ENV_PREFIX).lower(): value for name, value in variables.items()
                  if name.startswith(ENV_PREFIX)}
        return cls.load(**{k: v for k, v in fields.items() if k in cls.model_fields})


# --- parts -----------------------------------------------------------------------------


class KafkaSettings(JianchaSettings):
    """Kafka connection: where the brokers are and how to log in to them."""

    broker_url: str = Field(
        DEFAULT_BROKER_URL, description="Kafka bootstrap servers, kafka://host:port[;host:port]"
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="how the clients talk to the brokers: TLS (SSL), SASL "
        "authentication, both, or neither",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-256", description="SASL mechanism (SASL_PLAINTEXT and SASL_SSL)"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_sasl_password_file: Path | None = Field(
        None, description="file holding the SASL password (a Docker secret), instead of "
        "JIANCHA_KAFKA_SASL_PASSWORD; one trailing newline is ignored",
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates (SSL and "
        "SASL_SSL; default: the system's CAs)",
    )

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, v: str) -> str:
        parse_broker_url(v)
        return v

    @field_validator("kafka_sasl_password_file")
    @classmethod
    def _check_kafka_password_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _check_secret_file(v, info)

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _check_cafile(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a file (a PEM CA certificate)")
        return v

    @model_validator(mode="after")
    def _kafka_password_from_file(self) -> Self:
        if self.kafka_sasl_password_file is not None:
            self.kafka_sasl_password = SecretStr(read_secret_file(self.kafka_sasl_password_file))
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return parse_broker_url(self.broker_url)

    def kafka_connection(self) -> KafkaConnection:
        """The connection as the producer library takes it (aiokafka's keyword arguments)."""
        password = self.kafka_sasl_password
        return KafkaConnection(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password is not None else None,
            ssl_cafile=self.kafka_ssl_cafile,
        )


class TopicSettings(JianchaSettings):
    """Topics: where the departments and the complaint centre write."""

    events_topic: str = Field(DEFAULT_EVENTS_TOPIC, description="the approval events topic")
    complaints_topic: str = Field(DEFAULT_COMPLAINTS_TOPIC, description="the complaints topic")


class SigningSettings(JianchaSettings):
    """Signing: the department keys producers sign with and the worker verifies with."""

    department_keys_file: Path | None = Field(
        None, description="YAML {department: key, or [keys with not_after]} of HMAC-SHA256 "
        "keys; with it every event must be signed by its department (contract.md, Signing)",
    )
    complaints_signer: str = Field(
        DEFAULT_COMPLAINTS_SIGNER, min_length=1,
        description="the keys file's entry whose keys sign complaints (the complaint centre)",
    )


class WorkerKafkaSettings(JianchaSettings):
    """The worker's Kafka: its dead-letter topics, the topics it creates, its consumer group."""

    dlq_topic: str = Field(
        "approval-events.dlq", description="where refused events go, with their reason"
    )
    complaints_dlq_topic: str = Field(
        "complaints.dlq", description="where refused complaints go, with their reason"
    )
    topic_partitions: int = Field(
        8, ge=1, le=1024, description="partitions of the topics the worker creates at start-up; "
        "they bound how many workers share the work",
    )
    topic_replicas: int = Field(
        1, ge=1, le=16, description="replicas of the topics the worker creates at start-up"
    )
    kafka_session_timeout_seconds: float = Field(
        10.0, ge=1, le=300,
        description="consumer group session timeout: a worker silent this long leaves the group",
    )
    kafka_commit_interval_seconds: float = Field(
        1.0, gt=0, le=60,
        description="how often processed offsets are committed (and coalesced changelog "
        "records sent)",
    )
    kafka_rebalance_timeout_seconds: float = Field(
        10.0, ge=1, le=600, description="how long a rebalance waits for members to rejoin"
    )
    kafka_producer_batch_bytes: int = Field(
        1_000_000, ge=16_384, le=16_000_000,
        description="largest producer batch per partition, so that the changelog records of "
        "a commit interval go out in few requests (Kafka's default is 16 KiB)",
    )
    kafka_max_poll_records: int | None = Field(
        None, ge=1, le=1_000_000,
        description="most events the supervising agent takes in one batch (default: what one "
        "fetch brings, up to a MiB per partition)",
    )
    kafka_fetch_max_wait_ms: int = Field(
        20, ge=1, le=10_000,
        description="how long the broker may hold a fetch for new events: a live event "
        "waits up to this long before it is judged",
    )
    app_id: str = Field(
        "jiancha", pattern=r"^[A-Za-z0-9._-]+$",
        description="consumer group and table prefix: workers with the same id share the partitions",
    )


class RedisSettings(JianchaSettings):
    """Redis: where alerts, their lifecycle and the indicators live."""

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="redis://host:port/db, rediss://… (TLS) or unix://…"
    )
    redis_username: str | None = Field(None, description="Redis ACL user")
    redis_password: SecretStr | None = Field(None, description="Redis password")
    redis_password_file: Path | None = Field(
        None, description="file holding the Redis password (a Docker secret), instead of "
        "JIANCHA_REDIS_PASSWORD; one trailing newline is ignored",
    )
    redis_prefix: str = Field(
        "jc:", pattern=r"^[A-Za-z0-9:_.-]*$", description="prefix of every key (contract.md, Redis)"
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, v: str) -> str:
        parsed = AnyUrl(v)
        if parsed.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("expected redis://host:port/db, rediss://… or unix://…")
        return v

    @field_validator("redis_password_file")
    @classmethod
    def _check_redis_password_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _check_secret_file(v, info)

    @model_validator(mode="after")
    def _redis_password_from_file(self) -> Self:
        if self.redis_password_file is not None:
            self.redis_password = SecretStr(read_secret_file(self.redis_password_file))
        return self

    def redis_key(self, *parts: str) -> str:
        return self.redis_prefix + ":".join(parts)


class ClockSettings(JianchaSettings):
    """Simulated clock: for the demo, tests and bench; unset, the clock is the real one."""

    clock_start: datetime | None = Field(
        None, description="the instant the simulated clock shows when it starts (RFC 3339 with offset)"
    )
    clock_anchor: float | None = Field(
        None, description="the Unix time at which the simulated clock shows JIANCHA_CLOCK_START "
        "(shared by processes)",
    )
    clock_speed: float = Field(1.0, gt=0, description="simulated seconds per real second")

    @field_validator("clock_start")
    @classmethod
    def _check_clock_start(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("expected an RFC 3339 timestamp with offset, e.g. 2026-12-01T09:00:00+08:00")
        return v


class CalendarSettings(JianchaSettings):
    """Calendar: local time, holidays and make-up working days."""

    timezone: str = Field("Asia/Shanghai", description="local time of deadlines, windows and working hours")
    calendar_file: Path | None = Field(
        None, description="YAML of holidays and make-up working days for years the "
        "chinese-calendar package lacks",
    )

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("expected an IANA time zone such as Asia/Shanghai") from exc
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class CatalogSettings(JianchaSettings):
    """Item catalog (事项目录): the approval items and their time limits."""

    catalog_dir: Path = Field(
        DEFAULT_CATALOG_DIR, description="item catalog directory (docs/catalog.md)"
    )

    @field_validator("catalog_dir")
    @classmethod
    def _check_catalog(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"{v} is not a directory of item catalog YAML files")
        return v


class RuleSetSettings(JianchaSettings):
    """Rule set: what the cases are judged by."""

    rules_dir: Path | None = Field(
        None, description="rule set: a directory of YAML files (default: rules/ruleset; docs/rules.md)"
    )
    allowed_lateness_seconds: float | None = Field(
        None, ge=0, le=7 * 86400,
        description="how late an event may arrive and still be judged in order; overrides the "
        "rule set's allowed_lateness_minutes (default: from the rule set)",
    )


class ApiTokensSettings(JianchaSettings):
    """API tokens: who may read what through the notifier's API and the worker's indicators."""

    notifier_tokens_file: Path | None = Field(
        None, description="API tokens YAML (bureau and department tokens): without it the "
        "notifier's API answers 401; the worker reads it too, as only a bureau token reads "
        "per-handler scores",
    )


# --- processes -------------------------------------------------------------------------


class ProducerSettings(KafkaSettings, TopicSettings, SigningSettings):
    """``jiancha send``: a department's events to Kafka, signed."""

    def producer_config(self) -> ProducerConfig:
        """The settings as the producer library takes them (jiancha.producers.config)."""
        return ProducerConfig(
            kafka=self.kafka_connection(),
            events_topic=self.events_topic,
            complaints_topic=self.complaints_topic,
            department_keys_file=self.department_keys_file,
            complaints_signer=self.complaints_signer,
        )


class SimulatorSettings(ProducerSettings, CatalogSettings, CalendarSettings, ClockSettings):
    """``jiancha simulate``: realistic department traffic."""


class ReplaySettings(CatalogSettings, RuleSetSettings, CalendarSettings):
    """``jiancha replay``, ``report``, ``rules`` and ``catalog``: the rules offline."""


class AlertsSettings(RedisSettings, ClockSettings):
    """``jiancha alerts``: the alert lifecycle from the command line."""


class WorkerSettings(
    ProducerSettings, WorkerKafkaSettings, RedisSettings, CatalogSettings, RuleSetSettings,
    CalendarSettings, ClockSettings, ApiTokensSettings,
):
    """``jiancha worker``: the supervising Faust worker."""

    web_host: str = Field("127.0.0.1", description="address of /metrics, /health and /api/indicators")
    web_port: int = Field(6066, ge=1, le=65535, description="port of /metrics, /health and /api/indicators")
    future_tolerance_seconds: float = Field(
        300.0, ge=0, description="events dated further in the future are refused (time_out_of_range)"
    )
    unsigned_departments: list[str] = Field(
        default_factory=list,
        description="catalog departments whose events may still come unsigned while they "
        "move to signing (a JSON list)",
    )
    extensions: list[Literal["windows", "complaints", "indicators"]] = Field(
        default_factory=lambda: ["windows", "complaints", "indicators"],
        description="what the worker does beyond the case rules (a JSON list)",
    )
    deadline_tick_seconds: float = Field(
        0.25, gt=0, le=60, description="how often the deadline timer looks for due deadlines "
        "at the least (it also wakes when the earliest falls due)"
    )
    deadline_judge_ahead_seconds: float = Field(
        2.0, ge=0, le=60, description="the deadline timer judges the cases that fall due "
        "within this many seconds ahead of their instant, between batches of events, and "
        "only stores their alerts when it comes (deadlines of a working day all end at its "
        "midnight); 0: judge each when it falls due"
    )
    finished_case_retention_days: float = Field(
        90, ge=1, le=3650,
        description="a finished case (completed, withdrawn or refused at intake, nothing left "
        "due) leaves the case table this many days after it finished; its alerts stay in "
        "Redis, and a step reported later starts the case afresh (docs/operations.md)",
    )
    data_dir: Path = Field(
        Path(tempfile.gettempdir()) / "jiancha", description="Faust's local data directory"
    )
    gc_young_threshold: int = Field(
        YOUNG_THRESHOLD, ge=700, le=10_000_000,
        description="net new objects between two collections of the youngest generation "
        "(Python's default is 700): a batch's objects live until the batch ends, so the "
        "threshold is set above what one batch makes, and collections follow the state's "
        "lasting growth (docs/performance.md)",
    )
    gil_switch_interval_ms: float = Field(
        20.0, ge=0.1, le=1_000,
        description="how long a thread may hold the GIL before another asks for it (Python's "
        "default is 5): Faust's consumer fetches in a thread of its own, and switching less "
        "often leaves the agent's batches uninterrupted",
    )


class NotifierSettings(
    RedisSettings, CalendarSettings, RuleSetSettings, ClockSettings, ApiTokensSettings
):
    """``jiancha notifier``: alert lifecycle, routed notifications, HTTP API and alert pages."""

    notifier_routing_file: Path | None = Field(
        None, description="routing YAML: receivers, routes, grouping (default: rules/routing.yaml; "
        "docs/notifications.md)",
    )
    notifier_host: str = Field("127.0.0.1", description="address of the HTTP API and the alert pages")
    notifier_port: int = Field(6067, ge=1, le=65535, description="port of the HTTP API and the alert pages")
    notifier_public_url: str | None = Field(
        None, pattern=r"^https?://[^\s]+$",
        description="the notifier's address as people reach it (e.g. "
        "https://jiancha.example.gov.cn): notifications link each alert to its page there "
        "(default: http://NOTIFIER_HOST:NOTIFIER_PORT)",
    )
    notifier_group: str = Field(
        "notifier", pattern=r"^[A-Za-z0-9._-]+$",
        description="Redis consumer group on the alert stream, shared by the notifier replicas",
    )
    notifier_consumer: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]+$",
        description="consumer name in the group; keep it stable across restarts (default: the host name)",
    )
    notifier_group_start_id: str = Field(
        "0", pattern=r"^(0|\$|\d+-\d+)$",
        description="where a new consumer group starts on the alert stream: 0 (all), $ (new only)",
    )
    notifier_claim_idle_seconds: float = Field(
        60.0, gt=0, description="alert-stream entries pending this long at a dead consumer are taken over"
    )
    notifier_poll_seconds: float = Field(
        0.2, gt=0, le=10, description="how often due groups, repeats and queues are looked at"
    )
    notifier_retry_base_seconds: float = Field(
        2.0, gt=0, description="first retry delay of a failed delivery (doubling each attempt)"
    )
    notifier_retry_max_seconds: float = Field(
        300.0, gt=0, description="longest delay between delivery retries"
    )
    notifier_max_attempts: int = Field(
        48, ge=1, le=100_000,
        description="failed attempts after which a notification goes to the dead-letter stream "
        "jc:notify:dead (about 3.5 hours of failures at the default back-off)",
    )
    notifier_lease_seconds: float = Field(
        60.0, gt=0, description="a notification being sent is retried if not done by then (a crash)"
    )
    notifier_dedup_days: float = Field(
        30.0, gt=0, description="how long the (alert, transition, receiver, channel) dedup marks live"
    )
    notifier_rate_per_second: float = Field(
        10.0, gt=0, description="API requests per second allowed to one token (or one address "
        "without a valid token); past it 429 with Retry-After",
    )
    notifier_rate_burst: int = Field(
        50, ge=1, description="API requests one token may make at once before the rate applies"
    )
    notifier_smtp_host: str | None = Field(None, description="mail server of e-mail channels")
    notifier_smtp_port: int = Field(25, ge=1, le=65535, description="port of the mail server")
    notifier_smtp_username: str | None = Field(None, description="user name at the mail server")
    notifier_smtp_password: SecretStr | None = Field(None, description="password at the mail server")
    notifier_smtp_starttls: bool = Field(False, description="STARTTLS after connecting")
    notifier_smtp_ssl: bool = Field(False, description="SMTP over TLS (port 465)")
    notifier_smtp_from: str = Field("jiancha@localhost", description="sender address of the mails")


@dataclass(frozen=True)
class Process:
    """A process and the settings class it loads."""

    name: str
    command: str
    settings: type[JianchaSettings]


PROCESSES: dict[str, Process] = {p.name: p for p in (
    Process("worker", "jiancha worker", WorkerSettings),
    Process("notifier", "jiancha notifier", NotifierSettings),
    Process("producer", "jiancha send", ProducerSettings),
    Process("simulator", "jiancha simulate", SimulatorSettings),
    Process("replay", "jiancha replay, report, rules, catalog", ReplaySettings),
    Process("alerts", "jiancha alerts", AlertsSettings),
)}

#: the parts, in the order docs/settings.md shows them
PARTS: tuple[type[JianchaSettings], ...] = (
    KafkaSettings, TopicSettings, SigningSettings, WorkerKafkaSettings, RedisSettings,
    CatalogSettings, RuleSetSettings, CalendarSettings, ClockSettings, ApiTokensSettings,
)


_SECRET_FIELD = re.compile(r"password|secret")


def mask_url(url: str) -> str:
    """The URL with the credentials before its last ``@`` hidden, for messages: a rejected
    ``redis://:secret@host:port`` is shown as ``redis://***@host:port``."""
    head, at, rest = url.rpartition("@")
    if not at:
        return url
    scheme = head.partition("://")[0] + "://" if "://" in head else ""
    return f"{scheme}***@{rest}"


def _check_secret_file(v: Path | None, info: ValidationInfo) -> Path | None:
    """A ``*_password_file``: readable, one line, and not set together with its password."""
    if v is None:
        return v
    assert info.field_name is not None
    inline = info.field_name.removesuffix("_file")
    if info.data.get(inline) is not None:
        raise ValueError(f"set either {ENV_PREFIX}{inline.upper()} or this, not both")
    read_secret_file(v)
    return v


def _explain(cls: type[BaseSettings], exc: ValidationError) -> str:
    lines = ["invalid jiancha settings:"]
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        var = ENV_PREFIX + field.upper()
        desc = cls.model_fields[field].description if field in cls.model_fields else ""
        hint = f" ({desc})" if desc else ""
        got = err.get("input")
        if isinstance(got, str):
            got = "***" if _SECRET_FIELD.search(field) else mask_url(got) if "url" in field else got
        lines.append(f"  {var}={got!r}: {err['msg']}{hint}")
    return "\n".join(lines)
