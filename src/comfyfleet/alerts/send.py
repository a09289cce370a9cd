"""Sending one notification to one receiver: HTTP for every kind but e-mail, SMTP for
e-mail (STARTTLS and login when configured; smtplib in a worker thread, so the event loop
never blocks). Receivers are operator configuration and trusted (see alerts/config.py): no
SSRF guard, but no redirects followed and no proxy from the environment either.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import aiohttp
import orjson

from comfyfleet import __version__
from comfyfleet.alerts import formats
from comfyfleet.alerts.config import Receiver
from comfyfleet.alerts.model import Notification

USER_AGENT = f"comfyfleet-alerts/{__version__}"
# Client errors worth another try (the rest mean the message itself is refused).
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# Chat services that answer 200 with an error code in the body: the field to read.
CODE_FIELDS = {"feishu": "code", "dingtalk": "errcode", "wecom": "errcode"}


@dataclass(frozen=True)
class Outcome:
    """How a delivery went: ok, or an error and whether another try could help."""

    ok: bool
    error: str = ""
    retry: bool = True


OK = Outcome(True)


class Sender:
    """Delivers notifications; one HTTP session for all receivers."""

    def __init__(self, *, timeout_ms: int, external_url: str, webhook_secret: str | None) -> None:
        self.timeout_ms = timeout_ms
        self.external_url = external_url
        self.webhook_secret = webhook_secret
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_ms / 1000),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, n: Notification, r: Receiver, now_ms: int) -> Outcome:
        if r.kind == "email":
            return await self._mail(n, r)
        try:
            msg = formats.http_message(n, r, external_url=self.external_url, now_ms=now_ms,
                                       webhook_secret=self.webhook_secret)  # fmt: skip
        except ValueError as exc:
            return Outcome(False, str(exc), retry=False)
        try:
            async with self._client().post(msg.url, data=msg.body, headers=msg.headers,
                                           allow_redirects=False) as resp:  # fmt: skip
                body = await resp.read()
                return _judge(r, resp.status, body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}"[:300])

    async def _mail(self, n: Notification, r: Receiver) -> Outcome:
        msg = formats.email(n, r, self.external_url)
        try:
            await asyncio.to_thread(_smtp_send, r, msg, self.timeout_ms / 1000)
        except smtplib.SMTPRecipientsRefused as exc:
            return Outcome(False, f"recipients refused: {exc.recipients}"[:300], retry=False)
        except smtplib.SMTPAuthenticationError as exc:
            return Outcome(False, f"SMTP login refused: {exc.smtp_code}", retry=False)
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}"[:300])
        return OK


def _judge(r: Receiver, status: int, body: bytes) -> Outcome:
    if not 200 <= status < 300:
        retry = status >= 500 or status in RETRYABLE_4XX
        return Outcome(False, f"HTTP {status}: {body[:200]!r}", retry=retry)
    field = CODE_FIELDS.get(r.kind)
    if field is not None:
        try:
            code = orjson.loads(body).get(field, 0)
        except (orjson.JSONDecodeError, AttributeError):
            return Outcome(False, f"{r.kind} answered no JSON: {body[:200]!r}")
        if code not in (0, None):
            return Outcome(False, f"{r.kind} refused: {body[:300]!r}", retry=False)
    return OK


def _smtp_send(r: Receiver, msg: EmailMessage, timeout_s: float) -> None:
    """Blocking: run in a thread."""
    with smtplib.SMTP(r.smtp_host, r.smtp_port, timeout=timeout_s) as smtp:
        if r.smtp_starttls:
            context = ssl.create_default_context(cafile=r.smtp_ca_file or None)
            smtp.starttls(context=context)
        if r.smtp_username:
            password = r.smtp_password.get_secret_value() if r.smtp_password else ""
            smtp.login(r.smtp_username, password)
        smtp.send_message(msg)
