"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Every request carries `webhook-id` (the message id, the same on each retry, so receivers can
drop duplicates), `webhook-timestamp` (seconds since the epoch, of this attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
bytes the secret `whsec_<base64>` encodes. A receiver recomputes the HMAC over the raw body,
compares in constant time, and refuses timestamps far from its clock (replays); see
`verify` and the README.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
# How far a receiver's clock may be from the timestamp before `verify` refuses (s).
DEFAULT_TOLERANCE_S = 300


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_<base64>` secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(key: bytes, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256>`."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(key: bytes, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature(key, msg_id, timestamp_s, body),
    }


def verify(
    secret: str,
    headers: dict[str, str],
    body: bytes,
    *,
    now_s: int,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a receiver does: True when one of the space-separated `v1,` signatures matches
    and the timestamp is within `tolerance_s` seconds of `now_s`."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp = lower.get("webhook-id", ""), lower.get("webhook-timestamp", "")
    # isascii: isdigit() alone says yes to "²", which int() refuses.
    ok_stamp = stamp.isascii() and stamp.isdigit()
    if not msg_id or not ok_stamp or abs(now_s - int(stamp)) > tolerance_s:
        return False
    expected = signature(secret_key(secret), msg_id, int(stamp), body)
    return any(
        hmac.compare_digest(expected, candidate)
        for candidate in lower.get("webhook-signature", "").split()
    )
