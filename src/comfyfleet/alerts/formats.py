"""Each receiver's native message format, as pure functions of a notification.

- Alertmanager API v2 `POST /api/v2/alerts`: a list of {labels, annotations, startsAt,
  endsAt, generatorURL}; firing alerts carry an endsAt a few refreshes ahead, resolved ones
  the time they resolved (Alertmanager then routes, groups and silences them itself).
- generic webhook: JSON {type, id, status, group, alerts[...]}, signed with Standard
  Webhooks headers like job webhooks (balancer/webhook_signing.py).
- Slack incoming webhook: {text, blocks[section mrkdwn]}.
- Discord webhook: {content, embeds[{title, description, color}]} within Discord's limits.
- Feishu/Lark custom bot: {msg_type: "text", content: {text}}; with a secret, also
  {timestamp, sign}: base64(HMAC-SHA256(key = "<timestamp s>\\n<secret>", message = "")).
- DingTalk custom robot: {msgtype: "markdown", markdown: {title, text}}; with a secret the
  URL gets &timestamp=<ms>&sign=urlencode(base64(HMAC-SHA256(secret, "<ms>\\n<secret>"))).
- WeCom group robot: {msgtype: "markdown", markdown: {content}} (at most 4096 bytes).
- e-mail: a plain-text message, subject "[FIRING:n] alertname".
Times: `now_ms` in ms since the epoch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import quote_plus

import orjson

from comfyfleet.alerts.config import Receiver
from comfyfleet.alerts.model import Notice, Notification
from comfyfleet.alerts.state import ALERTMANAGER_ENDS_FACTOR, ALERTMANAGER_REFRESH_MS
from comfyfleet.balancer.webhook_signing import headers as signed_headers
from comfyfleet.balancer.webhook_signing import secret_key

DISCORD_CONTENT_MAX = 2000
DISCORD_DESCRIPTION_MAX = 4096
WECOM_CONTENT_MAX_BYTES = 4096
SLACK_TEXT_MAX = 3000  # one section block's text
SEVERITY_COLOURS = {"critical": 0xD32F2F, "warning": 0xF9A825, "info": 0x1976D2}
RESOLVED_COLOUR = 0x388E3C


@dataclass(frozen=True)
class HttpMessage:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _title(n: Notification) -> str:
    firing = sum(not x.resolved for x in n.notices)
    if firing:
        return f"[FIRING:{firing}] {n.group}"
    return f"[RESOLVED] {n.group}"


def _line(notice: Notice) -> str:
    mark = "RESOLVED" if notice.resolved else notice.alert.labels.get("severity", "").upper()
    return f"[{mark}] {notice.alert.summary}"


def text(n: Notification, external_url: str = "") -> str:
    """The plain-text body every chat format and the e-mail share."""
    lines = [_title(n), *(_line(x) for x in n.notices)]
    if external_url:
        lines.append(f"{external_url.rstrip('/')}/api/v1/alerts")
    return "\n".join(lines)


def alertmanager(n: Notification, r: Receiver, external_url: str, now_ms: int) -> HttpMessage:
    alerts = []
    for notice in n.notices:
        a = notice.alert
        ends = notice.ends_ms if notice.resolved else (
            now_ms + ALERTMANAGER_REFRESH_MS * ALERTMANAGER_ENDS_FACTOR)  # fmt: skip
        alerts.append({
            "labels": dict(a.labels),
            "annotations": {"summary": a.summary, "value": f"{a.value:g}"},
            "startsAt": iso(a.fired_ms or a.since_ms),
            "endsAt": iso(ends),
            "generatorURL": f"{external_url.rstrip('/')}/api/v1/alerts" if external_url else "",
        })  # fmt: skip
    return HttpMessage(r.url.rstrip("/") + "/api/v2/alerts", orjson.dumps(alerts),
                       {"Content-Type": "application/json"})  # fmt: skip


def webhook_body(n: Notification, external_url: str) -> dict[str, Any]:
    return {
        "type": f"alerts.{n.status}",
        "id": n.id,
        "status": n.status,
        "group": n.group,
        "timestamp": iso(n.created_ms),
        "external_url": external_url,
        "alerts": [
            {"fingerprint": x.alert.fingerprint, "status": "resolved" if x.resolved else "firing",
             "labels": dict(x.alert.labels), "summary": x.alert.summary, "value": x.alert.value,
             "starts_at": iso(x.alert.fired_ms or x.alert.since_ms),
             "ends_at": iso(x.ends_ms) if x.resolved else None}
            for x in n.notices
        ],
    }  # fmt: skip


def webhook(
    n: Notification, r: Receiver, external_url: str, now_ms: int, secret: str
) -> HttpMessage:
    body = orjson.dumps(webhook_body(n, external_url))
    head = signed_headers(secret_key(secret), n.id, now_ms // 1000, body)
    return HttpMessage(r.url, body, {"Content-Type": "application/json", **head})


def slack(n: Notification, r: Receiver, external_url: str) -> HttpMessage:
    body = text(n, external_url)
    payload = {
        "text": _title(n),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _title(n)[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body[:SLACK_TEXT_MAX]}},
        ],
    }
    return HttpMessage(r.url, orjson.dumps(payload), {"Content-Type": "application/json"})


def discord(n: Notification, r: Receiver, external_url: str) -> HttpMessage:
    colour = RESOLVED_COLOUR if n.status == "resolved" else SEVERITY_COLOURS.get(
        n.notices[0].alert.labels.get("severity", ""), SEVERITY_COLOURS["warning"])  # fmt: skip
    description = "\n".join(_line(x) for x in n.notices)[:DISCORD_DESCRIPTION_MAX]
    payload = {
        "content": _title(n)[:DISCORD_CONTENT_MAX],
        "embeds": [{"title": _title(n)[:256], "description": description, "color": colour,
                    **({"url": external_url} if external_url else {})}],
        "allowed_mentions": {"parse": []},
    }  # fmt: skip
    return HttpMessage(r.url, orjson.dumps(payload), {"Content-Type": "application/json"})


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu/Lark custom bot signature (their documented algorithm: the HMAC key is
    "<timestamp>\\n<secret>", the message empty)."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def feishu(n: Notification, r: Receiver, external_url: str, now_ms: int) -> HttpMessage:
    payload: dict[str, Any] = {"msg_type": "text", "content": {"text": text(n, external_url)}}
    if r.secret is not None:
        stamp = now_ms // 1000
        payload = {"timestamp": str(stamp), "sign": feishu_sign(r.secret.get_secret_value(), stamp),
                   **payload}  # fmt: skip
    return HttpMessage(r.url, orjson.dumps(payload), {"Content-Type": "application/json"})


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk custom robot signature, URL-encoded: HMAC-SHA256 keyed with the secret over
    "<timestamp ms>\\n<secret>", base64."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return quote_plus(base64.b64encode(mac.digest()).decode())


def dingtalk(n: Notification, r: Receiver, external_url: str, now_ms: int) -> HttpMessage:
    lines = [f"### {_title(n)}", *(f"- {_line(x)}" for x in n.notices)]
    if external_url:
        lines.append(f"\n[alerts]({external_url.rstrip('/')}/api/v1/alerts)")
    payload = {"msgtype": "markdown", "markdown": {"title": _title(n), "text": "\n".join(lines)}}
    url = r.url
    if r.secret is not None:
        sign = dingtalk_sign(r.secret.get_secret_value(), now_ms)
        url += ("&" if "?" in url else "?") + f"timestamp={now_ms}&sign={sign}"
    return HttpMessage(url, orjson.dumps(payload), {"Content-Type": "application/json"})


def wecom(n: Notification, r: Receiver, external_url: str) -> HttpMessage:
    colour = "info" if n.status == "resolved" else "warning"
    lines = [f'**<font color="{colour}">{_title(n)}</font>**',
             *(f"> {_line(x)}" for x in n.notices)]  # fmt: skip
    content = "\n".join(lines).encode()[:WECOM_CONTENT_MAX_BYTES].decode("utf-8", "ignore")
    payload = {"msgtype": "markdown", "markdown": {"content": content}}
    return HttpMessage(r.url, orjson.dumps(payload), {"Content-Type": "application/json"})


def email(n: Notification, r: Receiver, external_url: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = _title(n)
    msg["From"] = r.email_from
    msg["To"] = ", ".join(r.email_to)
    # The same Message-ID on every attempt: mail systems drop a duplicate delivery.
    msg["Message-ID"] = make_msgid(idstring=n.id, domain="comfyfleet.alerts")
    msg["X-Comfyfleet-Notification"] = n.id
    msg.set_content(text(n, external_url) + "\n")
    return msg


def http_message(
    n: Notification, r: Receiver, *, external_url: str, now_ms: int, webhook_secret: str | None
) -> HttpMessage:
    """The HTTP request for any receiver but e-mail."""
    if r.kind == "alertmanager":
        return alertmanager(n, r, external_url, now_ms)
    if r.kind == "webhook":
        secret = r.secret.get_secret_value() if r.secret is not None else webhook_secret
        if not secret:
            raise ValueError(f"receiver {r.name}: a webhook receiver needs a whsec_ secret")
        return webhook(n, r, external_url, now_ms, secret)
    if r.kind == "slack":
        return slack(n, r, external_url)
    if r.kind == "discord":
        return discord(n, r, external_url)
    if r.kind == "feishu":
        return feishu(n, r, external_url, now_ms)
    if r.kind == "dingtalk":
        return dingtalk(n, r, external_url, now_ms)
    if r.kind == "wecom":
        return wecom(n, r, external_url)
    raise ValueError(f"receiver {r.name}: {r.kind} is not an HTTP receiver")
