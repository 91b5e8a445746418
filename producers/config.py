"""How a producer reaches Kafka: bootstrap servers, security (SASL/SCRAM, TLS), topics and
signing keys, as plain data.

A department builds a :class:`ProducerConfig` in code, or reads it with
:meth:`ProducerConfig.from_env` from the same ``JIANCHA_*`` variables the engine reads
(docs/settings.md); the engine's settings convert to it. Only ``from_env`` reads the
environment.

    config = ProducerConfig.from_env()
    async with producer_from_config(config, "gongan") as producer:
        await producer.send(event)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl

__all__ = [
    "ENV_PREFIX",
    "KafkaConnection",
    "ProducerConfig",
    "ProducerConfigError",
    "parse_broker_url",
    "read_secret_file",
]

ENV_PREFIX = "JIANCHA_"
SecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
DEFAULT_BROKER_URL = "kafka://127.0.0.1:9092"
DEFAULT_EVENTS_TOPIC = "approval-events"
DEFAULT_COMPLAINTS_TOPIC = "complaints"
#: the keys file's entry whose keys sign complaints (the complaint centre)
DEFAULT_COMPLAINTS_SIGNER = "complaint-centre"


class ProducerConfigError(ValueError):
    """A producer setting has a value that cannot be used; the message names the variable."""


def parse_broker_url(url: str) -> list[str]:
    """``kafka://host:port[;host:port]`` (the scheme may be left out) → ``["host:port", …]``."""
    servers = []
    for part in url.split(";"):
        parsed = urlsplit(part if "://" in part else f"kafka://{part}")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if parsed.scheme not in {"kafka", "aiokafka"} or not parsed.hostname or not port:
            raise ValueError("expected kafka://host:port (several separated by ';')")
        servers.append(parsed.netloc)
    return servers


def read_secret_file(path: Path) -> str:
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


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how to authenticate to them."""

    bootstrap_servers: list[str] = field(default_factory=lambda: parse_broker_url(DEFAULT_BROKER_URL))
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-256"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    #: PEM file of the CA that signed the brokers' certificates (None: the system's CAs)
    ssl_cafile: Path | None = None
    client_id: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in get_args(SecurityProtocol):
            raise ProducerConfigError(f"security_protocol {self.security_protocol!r}: expected one "
                                      f"of {', '.join(get_args(SecurityProtocol))}")
        if self.sasl_mechanism not in get_args(SaslMechanism):
            raise ProducerConfigError(f"sasl_mechanism {self.sasl_mechanism!r}: expected one of "
                                      f"{', '.join(get_args(SaslMechanism))}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaConnection:
        """The connection of the ``JIANCHA_BROKER_URL`` and ``JIANCHA_KAFKA_*`` variables
        (of ``os.environ`` unless ``environ`` is given)."""
        env = _Env(os.environ if environ is None else environ)
        password = env.get("KAFKA_SASL_PASSWORD")
        password_file = env.get("KAFKA_SASL_PASSWORD_FILE")
        if password_file is not None:
            if password is not None:
                raise env.error("KAFKA_SASL_PASSWORD_FILE", password_file,
                                f"set either {ENV_PREFIX}KAFKA_SASL_PASSWORD or this, not both")
            password = env.parse("KAFKA_SASL_PASSWORD_FILE", read_secret_file, Path(password_file))
        cafile = env.get("KAFKA_SSL_CAFILE")
        if cafile is not None and not Path(cafile).is_file():
            raise env.error("KAFKA_SSL_CAFILE", cafile, "not a file (a PEM CA certificate)")
        return cls(
            bootstrap_servers=env.parse("BROKER_URL", parse_broker_url,
                                        env.get("BROKER_URL", DEFAULT_BROKER_URL)),
            security_protocol=env.choice("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", SecurityProtocol),
            sasl_mechanism=env.choice("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256", SaslMechanism),
            sasl_username=env.get("KAFKA_SASL_USERNAME"),
            sasl_password=password,
            ssl_cafile=Path(cafile) if cafile is not None else None,
        )

    def security_kwargs(self) -> dict[str, Any]:
        """aiokafka's security keyword arguments (producer, consumer or admin client)."""
        protocol = self.security_protocol
        kwargs: dict[str, Any] = {"security_protocol": protocol}
        if protocol.startswith("SASL_"):
            missing = [var for var, value in (("KAFKA_SASL_USERNAME", self.sasl_username),
                                              ("KAFKA_SASL_PASSWORD", self.sasl_password))
                       if not value]
            if missing:
                raise ProducerConfigError(f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={protocol} needs "
                                          + " and ".join(ENV_PREFIX + var for var in missing))
            kwargs.update(sasl_mechanism=self.sasl_mechanism,
                          sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        if protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """TLS towards the brokers: their certificates and host names checked against
        ``ssl_cafile`` (the deployment's own CA), else against the system's CAs."""
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(cafile=str(self.ssl_cafile) if self.ssl_cafile is not None else None)

    def client_kwargs(self) -> dict[str, Any]:
        """aiokafka's keyword arguments: bootstrap servers, client id and security."""
        kwargs: dict[str, Any] = {"bootstrap_servers": list(self.bootstrap_servers)}
        if self.client_id is not None:
            kwargs["client_id"] = self.client_id
        return kwargs | self.security_kwargs()


@dataclass(frozen=True)
class ProducerConfig:
    """A producer's connection, its topics and the department signing keys file."""

    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    events_topic: str = DEFAULT_EVENTS_TOPIC
    complaints_topic: str = DEFAULT_COMPLAINTS_TOPIC
    #: YAML {department: key | [keys]} of HMAC-SHA256 signing keys (producers.keys)
    department_keys_file: Path | None = None
    complaints_signer: str = DEFAULT_COMPLAINTS_SIGNER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProducerConfig:
        """The configuration of the ``JIANCHA_*`` variables (of ``os.environ`` unless
        ``environ`` is given): ``BROKER_URL``, ``KAFKA_*``, ``EVENTS_TOPIC``,
        ``COMPLAINTS_TOPIC``, ``DEPARTMENT_KEYS_FILE``, ``COMPLAINTS_SIGNER``."""
        env = _Env(os.environ if environ is None else environ)
        keys_file = env.get("DEPARTMENT_KEYS_FILE")
        return cls(
            kafka=KafkaConnection.from_env(environ),
            events_topic=env.get("EVENTS_TOPIC", DEFAULT_EVENTS_TOPIC),
            complaints_topic=env.get("COMPLAINTS_TOPIC", DEFAULT_COMPLAINTS_TOPIC),
            department_keys_file=Path(keys_file) if keys_file is not None else None,
            complaints_signer=env.get("COMPLAINTS_SIGNER", DEFAULT_COMPLAINTS_SIGNER),
        )


class _Env:
    """The ``JIANCHA_*`` variables of an environment; errors name the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def get(self, name: str, default: str | None = None) -> Any:
        return self.environ.get(ENV_PREFIX + name, default)

    def error(self, name: str, value: object, why: str) -> ProducerConfigError:
        shown = "***" if "PASSWORD" in name and not name.endswith("_FILE") else value
        return ProducerConfigError(f"{ENV_PREFIX}{name}={shown!r}: {why}")

    def parse(self, name: str, parse: Any, value: Any) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(name, value, str(exc)) from None

    def choice(self, name: str, default: str, choices: Any) -> Any:
        value = self.get(name, default)
        if value not in get_args(choices):
            raise self.error(name, value, f"expected one of {', '.join(get_args(choices))}")
        return value
