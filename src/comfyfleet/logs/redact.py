"""Secrets never reach a log line: passwords in URLs, `Authorization` values, bearer tokens,
`key=value` pairs whose key names a secret, and token shapes known on sight (this fleet's
API keys, webhook secrets, common provider keys).

`redact` rewrites one text; `redact_event` is a structlog processor applied to every line of
every role, so ComfyUI's own lines (which may echo a custom node's API key or a model URL
with credentials) and our own fields are covered alike. What stays is enough to debug: the
user name of a URL, the kind of credential, the key's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from structlog.typing import EventDict, WrappedLogger

MASK = "***"
# Names whose value is a secret: api_key, x-api-key, auth_token_comfy_org, password, ...
_SECRET_NAME = (
    r"[\w.-]*(?:api[_-]?key|apikey|access[_-]?key|secret|token|password|passwd|pwd|"
    r"credential)[\w.-]*"
)
_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # scheme://user:password@host -> scheme://user:***@host
    (
        re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@/\s]+@"),
        rf"\g<head>:{MASK}@",
    ),
    # Authorization: Basic xxx / "authorization": "Bearer xxx"
    (
        re.compile(
            r"(?i)(?P<head>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
            r"(?:(?P<kind>bearer|basic|token|digest)\s+)?[^\s\"',;}]+"
        ),
        lambda m: f"{m['head']}{m['kind'] + ' ' if m['kind'] else ''}{MASK}",
    ),
    (re.compile(r"(?i)\b(?P<kind>bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\g<kind> {MASK}"),
    # --password xxx, --api-key=xxx (command lines)
    (
        re.compile(rf"(?i)(?P<head>--{_SECRET_NAME})(?P<sep>\s+|=)(?!-)\S+"),
        rf"\g<head>\g<sep>{MASK}",
    ),
    # api_key=xxx, "password": "xxx", token: xxx
    (
        re.compile(rf"(?i)(?P<head>\b{_SECRET_NAME}[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}}]+"),
        rf"\g<head>{MASK}",
    ),
    # Shapes that are secrets wherever they stand.
    (
        re.compile(
            r"\b(?:cfk_[A-Za-z0-9_-]{8,}|whsec_[A-Za-z0-9+/=]{8,}|sk-[A-Za-z0-9_-]{16,}|"
            r"hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{16,}|xox[abposr]-[A-Za-z0-9-]{8,}|"
            r"comfyui-[A-Za-z0-9]{16,})"
        ),
        MASK,
    ),
)


# Text without any of these cannot match a rule (each rule needs one of them: a URL's
# `://`, the words `authorization` / `bearer`, a secret's name, a known key prefix), so one
# search spares most lines -- timestamps, levels, routes -- the six substitutions, which
# were a tenth of the balancer's CPU under submit load (every line is redacted).
_MAYBE_SECRET = re.compile(
    r"(?i)://|authorization|bearer|key|secret|token|passw|pwd|credential|"
    r"cfk_|whsec_|sk-|hf_|gh[pousr]_|xox[abposr]-|comfyui-"
)


def redact(text: str) -> str:
    """`text` with every secret the rules recognise replaced by `***`."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if depth < 2 and isinstance(value, list | tuple):
        return [_redact_value(v, depth + 1) for v in value]
    if depth < 2 and isinstance(value, dict):
        return {k: _redact_value(v, depth + 1) for k, v in value.items()}
    return value


def redact_event(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every string value of the line (and in lists or dicts
    two levels down). Runs after the traceback is rendered, so tracebacks are covered."""
    for key, value in event_dict.items():
        event_dict[key] = _redact_value(value)
    return event_dict
