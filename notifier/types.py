"""The notification channel interface and the records the notifier keeps in Redis.

A :class:`Notification` is what the notifier queues (durably, in Redis) for one channel of
one receiver: the alerts of one group (department, rule, receiver, transition) at one
flush. At delivery it is rendered (``notifier/render.py``) into an :class:`Outbound`
message with the alerts as they are *then* (status, severity), and handed to the channel.

A channel implements :class:`Channel`: ``send`` delivers or raises :class:`DeliveryError`
(the queue then retries with exponential backoff, or dead-letters a notification that can
never be delivered: nothing is dropped unseen). A channel whose
target lives in jiancha's own Redis (the stream channel) implements :class:`AtomicChannel`
instead: its write happens in the same Lua script that removes the notification from the
queue, so it is delivered exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

import orjson
from pydantic import BaseModel, ConfigDict, Field

#: What happened to the alert that a notification tells about.
Transition = Literal["open", "escalated", "retracted", "repeat", "resolved"]


class _ChannelBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$",
        description="unique within the receiver; default: the channel type")

    @property
    def key(self) -> str:
        return self.name or self.type  # type: ignore[attr-defined]


class WebhookConfig(_ChannelBase):
    """HTTP POST of the notification JSON, signed with HMAC-SHA256."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^(https?://|\{)", description="http(s) URL; may use {contact.x}")
    secret_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the HMAC-SHA256 key (never stored in Redis)")
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    headers: dict[str, str] = Field(default_factory=dict)


class EmailConfig(_ChannelBase):
    """Mail through the SMTP server of the settings (JIANCHA_NOTIFIER_SMTP_*)."""

    type: Literal["email"]
    to: list[str] = Field(min_length=1)
    language: Literal["zh", "en", "both"] = "both"


class StreamConfig(_ChannelBase):
    """An entry (field ``notification``) on a Redis stream of jiancha's Redis, read by in-house
    systems through a consumer group."""

    type: Literal["stream"]
    stream: str = Field("notifications", pattern=r"^[A-Za-z0-9:_.{}-]+$",
                        description="key after the Redis prefix, e.g. notifications:oa")
    group: str | None = Field("inhouse", description="consumer group created for the readers")
    maxlen: int = Field(100_000, ge=100)


ChannelConfig = Annotated[WebhookConfig | EmailConfig | StreamConfig, Field(discriminator="type")]


class NotificationItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    alert_id: str
    transition: str  # 'open', 'escalated', 'retracted', 'resolved' or 'repeat-N'


class Notification(BaseModel):
    """One queued notification: one channel of one receiver, the alerts of one group."""

    model_config = ConfigDict(frozen=True)

    notification_id: str
    group_key: str
    receiver: str  # the receiver instance, e.g. 'bureau', 'contact@gongan', 'handler@h1'
    channel: str  # the channel's key within the receiver
    channel_config: dict[str, Any]  # rendered (templates filled), without secrets
    transition: Transition
    department: str | None = None
    rule: str
    severity: str
    items: list[NotificationItem]
    created_at: float  # real unix time

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @property
    def queue(self) -> str:
        """The per-channel queue it lives in."""
        return f"{self.receiver}/{self.channel}"


@dataclass
class Outbound:
    """A notification rendered for sending: JSON payload and texts in zh and en."""

    notification: Notification
    payload: dict[str, Any]
    subject: Mapping[str, str]  # language -> subject line
    text: Mapping[str, str]  # language -> plain-text body
    body: bytes = field(default=b"")

    def __post_init__(self) -> None:
        if not self.body:
            self.body = orjson.dumps(self.payload)


class DeliveryError(Exception):
    """The channel could not deliver. Transient (the default): the queue retries with
    backoff, up to ``JIANCHA_NOTIFIER_MAX_ATTEMPTS``. Permanent (sending the same again can
    never succeed: a malformed URL, an HTTP 4xx, recipients refused, no mail server): the
    notification goes to the dead-letter stream at once."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    type: ClassVar[str]

    async def send(self, message: Outbound) -> None:
        """Deliver, or raise :class:`DeliveryError`."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class AtomicChannel(Protocol):
    """A channel written in the same Redis transaction that removes the notification."""

    type: ClassVar[str]

    def stream_write(self, message: Outbound) -> tuple[str, int, bytes]:
        """(stream key, approximate maxlen, entry value of field ``notification``)."""
        ...

    async def close(self) -> None: ...
