"""Every receiver format sent over real HTTP to a loopback listener, its payload checked
against the service's documented shape (and signature), and e-mail through a real SMTP
server (aiosmtpd) with STARTTLS and login."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from comfyfleet.alerts.config import Receiver
from comfyfleet.alerts.model import AlertState, Notice, Notification
from comfyfleet.alerts.send import Sender
from comfyfleet.balancer.webhook_signing import verify
from comfyfleet.redis_server import free_port
from tests.alerts.conftest import SECRET, Listener

NOW = int(time.time() * 1000)
CHAT_SECRET = "SEC0123456789abcdef"


def notification(receiver: str) -> Notification:
    firing = AlertState(
        {"alertname": "NodeLost", "severity": "critical", "node_id": "gpu-1"},
        "node gpu-1 stopped heartbeating",
        7.0,
        "firing",
        NOW - 5000,
        NOW - 5000,
    )
    resolved = AlertState(
        {"alertname": "NodeLost", "severity": "critical", "node_id": "gpu-2"},
        "node gpu-2 stopped heartbeating",
        9.0,
        "firing",
        NOW - 9000,
        NOW - 9000,
    )
    notices = (Notice(firing, "firing"), Notice(resolved, "resolved", NOW - 1000))
    return Notification("alrt_abc", receiver, "NodeLost", NOW, notices)


async def deliver(
    listener: Listener, kind: str, path: str = "/hook?x=1", **kw: Any
) -> dict[str, Any]:
    receiver = Receiver(name=kind, kind=kind, url=listener.url + path, **kw)  # type: ignore[arg-type]
    sender = Sender(timeout_ms=5000, external_url="http://fleet.example:7999",
                    webhook_secret=SECRET)  # fmt: skip
    try:
        outcome = await sender.send(notification(kind), receiver, NOW)
    finally:
        await sender.close()
    assert outcome.ok, outcome.error
    assert len(listener.got) == 1
    got = listener.got[0]
    assert got.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = {"_body": got.json(), "_query": got.query, "_headers": got.headers,
                            "_path": got.path}  # fmt: skip
    return body


async def test_slack_incoming_webhook(listener: Listener) -> None:
    body = (await deliver(listener, "slack"))["_body"]
    assert body["text"] == "[FIRING:1] NodeLost"  # the notification fallback text
    header, section = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[FIRING:1] NodeLost"},
    }
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert "[CRITICAL] node gpu-1" in section["text"]["text"]
    assert "[RESOLVED] node gpu-2" in section["text"]["text"]


async def test_discord_webhook(listener: Listener) -> None:
    body = (await deliver(listener, "discord"))["_body"]
    assert 0 < len(body["content"]) <= 2000
    (embed,) = body["embeds"]
    assert len(embed["title"]) <= 256
    assert len(embed["description"]) <= 4096
    assert isinstance(embed["color"], int)
    assert body["allowed_mentions"] == {"parse": []}  # an alert text never pings @everyone


async def test_feishu_bot_with_signature(listener: Listener) -> None:
    body = (await deliver(listener, "feishu", secret=CHAT_SECRET))["_body"]
    assert body["msg_type"] == "text"
    assert "node gpu-1 stopped heartbeating" in body["content"]["text"]
    stamp = int(body["timestamp"])
    assert abs(stamp - NOW // 1000) <= 1
    # Feishu's documented check: HMAC-SHA256 keyed "timestamp\nsecret" over nothing.
    key = f"{stamp}\n{CHAT_SECRET}".encode()
    expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["sign"] == expected


async def test_dingtalk_robot_with_signature(listener: Listener) -> None:
    got = await deliver(listener, "dingtalk", secret=CHAT_SECRET)
    body, query = got["_body"], got["_query"]
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "[FIRING:1] NodeLost"
    assert "- [RESOLVED] node gpu-2" in body["markdown"]["text"]
    assert query["x"] == "1"  # the URL's own query (access_token=...) is kept
    stamp = int(query["timestamp"])
    assert stamp == NOW  # ms
    mac = hmac.new(CHAT_SECRET.encode(), f"{stamp}\n{CHAT_SECRET}".encode(), hashlib.sha256)
    assert query["sign"] == base64.b64encode(mac.digest()).decode()  # after URL-decoding


async def test_wecom_group_robot(listener: Listener) -> None:
    body = (await deliver(listener, "wecom"))["_body"]
    assert body["msgtype"] == "markdown"
    assert len(body["markdown"]["content"].encode()) <= 4096
    assert "> [CRITICAL] node gpu-1" in body["markdown"]["content"]


async def test_generic_webhook_is_signed_like_job_webhooks(listener: Listener) -> None:
    got = await deliver(listener, "webhook")
    headers = {k.lower(): v for k, v in got["_headers"].items()}
    assert headers["webhook-id"] == "alrt_abc"
    assert verify(SECRET, headers, listener.got[0].body, now_s=NOW // 1000)
    body = got["_body"]
    assert body["type"] == "alerts.firing"
    assert [(a["labels"]["node_id"], a["status"]) for a in body["alerts"]] == [
        ("gpu-1", "firing"), ("gpu-2", "resolved")]  # fmt: skip


async def test_alertmanager_v2_alerts(listener: Listener) -> None:
    got = await deliver(listener, "alertmanager", path="/am/")
    assert got["_path"] == "/am/api/v2/alerts"  # the receiver's base URL + the API path
    firing, resolved = got["_body"]
    assert firing["labels"] == {"alertname": "NodeLost", "severity": "critical", "node_id": "gpu-1"}
    assert firing["annotations"]["summary"] == "node gpu-1 stopped heartbeating"
    assert datetime.fromisoformat(firing["endsAt"]).timestamp() > NOW / 1000  # still firing
    assert datetime.fromisoformat(resolved["endsAt"]).timestamp() == (NOW - 1000) / 1000
    assert firing["generatorURL"] == "http://fleet.example:7999/api/v1/alerts"


async def test_a_chat_service_refusal_in_the_body_is_not_retried(listener: Listener) -> None:
    listener.reply = {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
    sender = Sender(timeout_ms=5000, external_url="", webhook_secret=None)
    receiver = Receiver(name="f", kind="feishu", url=listener.url, secret=CHAT_SECRET)
    outcome = await sender.send(notification("f"), receiver, NOW)
    await sender.close()
    assert not outcome.ok
    assert not outcome.retry
    assert "19021" in outcome.error


async def test_a_5xx_is_retried_and_a_400_is_not(listener: Listener) -> None:
    sender = Sender(timeout_ms=5000, external_url="", webhook_secret=None)
    receiver = Receiver(name="s", kind="slack", url=listener.url)
    listener.status = 503
    assert (await sender.send(notification("s"), receiver, NOW)).retry
    listener.status = 400
    outcome = await sender.send(notification("s"), receiver, NOW)
    await sender.close()
    assert not outcome.ok
    assert not outcome.retry


# -- e-mail -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), standing in for a mail relay's."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"ops", b"pw")
    return AuthResult(success=ok)


@pytest.fixture
def smtp(certificate: tuple[Path, Path]) -> Iterator[tuple[Controller, Inbox]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port("127.0.0.1"),
                            tls_context=context,
                            require_starttls=True, auth_required=True,
                            authenticator=_authenticate)  # fmt: skip
    controller.start()
    yield controller, inbox
    controller.stop()


async def test_email_over_starttls_with_login(
    smtp: tuple[Controller, Inbox], certificate: tuple[Path, Path]
) -> None:
    controller, inbox = smtp
    receiver = Receiver(name="mail", kind="email", smtp_host="127.0.0.1",
                        smtp_port=controller.port,
                        smtp_username="ops", smtp_password="pw",  # type: ignore[arg-type]
                        smtp_ca_file=str(certificate[0]), email_from="fleet@example.com",
                        email_to=("oncall@example.com",))  # fmt: skip
    sender = Sender(timeout_ms=5000, external_url="", webhook_secret=None)
    outcome = await sender.send(notification("mail"), receiver, NOW)
    await sender.close()
    assert outcome.ok, outcome.error
    ((mail_from, rcpt, content),) = inbox.messages
    assert mail_from == "fleet@example.com"
    assert rcpt == ["oncall@example.com"]
    assert b"Subject: [FIRING:1] NodeLost" in content
    assert b"alrt_abc" in content  # the Message-ID: the same on every attempt
    assert b"[RESOLVED] node gpu-2 stopped heartbeating" in content
