"""Email channel: plain-text mail (UTF-8) in Chinese, English or both, through the SMTP
server of the settings (``JIANCHA_NOTIFIER_SMTP_*``), sent with the standard library's
``smtplib`` in a thread so that a slow mail server never blocks the notifier.

``Message-ID`` is derived from the notification id, so a mail system that deduplicates by
Message-ID drops a resend.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import ClassVar

from .types import DeliveryError, EmailConfig, Outbound

#: local@domain, no spaces, control characters or a second @ (a header cannot be injected)
_ADDRESS = re.compile(r"[^\s@<>,;\x00-\x1f\x7f]+@[^\s@<>,;\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int = 25
    sender: str = "jiancha@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_ssl: bool = False
    timeout: float = 10.0


def build_message(config: EmailConfig, server: SmtpServer, message: Outbound) -> EmailMessage:
    n = message.notification
    if config.language == "both":
        subject = f"{message.subject['zh']} / {message.subject['en']}"
        body = f"{message.text['zh']}\n\n----------------------------------------\n\n{message.text['en']}"
    else:
        subject, body = message.subject[config.language], message.text[config.language]
    mail = EmailMessage()
    mail["From"] = server.sender
    mail["To"] = ", ".join(config.to)
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = f"<{n.notification_id}@jiancha>"
    mail["X-Jiancha-Notification-Id"] = n.notification_id
    mail.set_content(body, charset="utf-8")
    return mail


class EmailChannel:
    type: ClassVar[str] = "email"

    def __init__(self, config: EmailConfig, server: SmtpServer | None) -> None:
        for address in config.to:
            if not _ADDRESS.fullmatch(address):
                raise DeliveryError(f"email address {address!r} is not an address", permanent=True)
        self.config = config
        self.server = server

    def _send_blocking(self, mail: EmailMessage) -> None:
        s = self.server
        assert s is not None
        cls = smtplib.SMTP_SSL if s.use_ssl else smtplib.SMTP
        with cls(s.host, s.port, timeout=s.timeout) as smtp:
            if s.starttls and not s.use_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if s.username:
                smtp.login(s.username, s.password or "")
            smtp.send_message(mail, from_addr=s.sender, to_addrs=list(self.config.to))

    async def send(self, message: Outbound) -> None:
        if self.server is None:
            raise DeliveryError("no SMTP server configured: set JIANCHA_NOTIFIER_SMTP_HOST",
                                permanent=True)
        mail = build_message(self.config, self.server, message)
        try:
            await asyncio.to_thread(self._send_blocking, mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP refused the recipients: {exc.recipients}",
                                permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            # a 5xx reply (sender or message refused) is final; 4xx and lost connections are not
            final = isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600
            raise DeliveryError(f"SMTP {self.server.host}:{self.server.port}: "
                                f"{type(exc).__name__}: {exc}", permanent=final) from None

    async def close(self) -> None:
        pass
