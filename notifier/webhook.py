"""Webhook channel: HTTP POST of the notification JSON.

Headers: ``Content-Type: application/json``, ``Idempotency-Key`` and
``X-Jiancha-Notification-Id`` (the notification id: a receiver that keeps the ids it has
seen never acts twice, even if a notifier dies between the receiver's 2xx and its own
bookkeeping), ``X-Jiancha-Timestamp`` (unix seconds) and, when the channel has a key
(``secret_env``), ``X-Jiancha-Signature: sha256=<hex>`` = HMAC-SHA256 over
``{timestamp}.{body}`` with that key. A 2xx answer is delivery; a 4xx other than 408, 425
and 429, or a URL that is not a valid http(s) URL, can never succeed (dead letter at once);
anything else (or no answer within ``timeout_seconds``) is retried by the queue with
exponential backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import ClassVar

import aiohttp
from yarl import URL

from .types import DeliveryError, Outbound, WebhookConfig

#: 4xx answers that say "later" (timeout, too early, rate limited), not "never"
_TRY_AGAIN = (408, 425, 429)


def check_url(url: str) -> None:
    """An http(s) URL with a host, or a permanent :class:`DeliveryError` (e.g. a contact's
    webhook rendered into ``https://`` or ``http://a b``)."""
    try:
        parsed = URL(url)
        ok = (parsed.scheme in ("http", "https") and bool(parsed.host)
              and not any(c.isspace() or not c.isprintable() for c in url))
        if ok:
            parsed.port  # noqa: B018 - raises on a port that is not a number
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise DeliveryError(f"webhook URL {url!r} is not a valid http(s) URL with a host",
                            permanent=True)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel:
    type: ClassVar[str] = "webhook"

    def __init__(self, config: WebhookConfig, http: aiohttp.ClientSession) -> None:
        check_url(config.url)
        self.config = config
        self.http = http

    def _secret(self) -> bytes | None:
        if not self.config.secret_env:
            return None
        value = os.environ.get(self.config.secret_env)
        if not value:
            raise DeliveryError(f"webhook key variable {self.config.secret_env} is not set",
                                permanent=True)
        return value.encode()

    async def send(self, message: Outbound) -> None:
        timestamp = str(int(time.time()))
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "User-Agent": "jiancha-notifier/1",
            "Idempotency-Key": message.notification.notification_id,
            "X-Jiancha-Notification-Id": message.notification.notification_id,
            "X-Jiancha-Timestamp": timestamp,
        }
        secret = self._secret()
        if secret is not None:
            headers["X-Jiancha-Signature"] = sign(secret, timestamp, message.body)
        try:
            async with self.http.post(
                self.config.url, data=message.body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            ) as resp:
                if 200 <= resp.status < 300:
                    return
                text = (await resp.text(errors="replace"))[:200]
                raise DeliveryError(
                    f"{self.config.url} answered {resp.status}: {text}",
                    permanent=400 <= resp.status < 500 and resp.status not in _TRY_AGAIN)
        except aiohttp.InvalidURL as exc:
            raise DeliveryError(f"webhook URL {exc}: not a valid URL", permanent=True) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"{self.config.url}: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        pass
