"""JSON in and out, with orjson and explicit limits."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from comfyfleet.errors import BadRequest, ComfyfleetError

JSON_BODY_LIMIT = 2 * 1024 * 1024  # bytes; graphs are small, outputs never come this way
# Uploaded files (input images) get their own, larger bound (bytes). A role that accepts
# uploads sets its app's client_max_size to this and reads other bodies with read_json, so
# a JSON body still stops at JSON_BODY_LIMIT.
UPLOAD_BODY_LIMIT = 32 * 1024 * 1024
# A file name we write or serve: no path separators, no leading dot, printable, bounded.
SAFE_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_SAFE_NAME = re.compile(SAFE_NAME_PATTERN)
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class PayloadTooLarge(ComfyfleetError):
    status = 413
    code = "payload-too-large"
    title = "Request body too large"


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default)


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(data), status=status, content_type="application/json", headers=headers
    )


async def read_json(request: web.Request, *, limit: int = JSON_BODY_LIMIT) -> Any:
    """The request body parsed as JSON: 413 beyond `limit` bytes, 400 naming the problem."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {limit}")
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    if not body:
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc


def check_name(name: str, what: str = "name") -> str:
    """`name` when it is a safe file name (see SAFE_NAME_PATTERN), else a 400: never a path,
    never `..`, never a hidden file."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise BadRequest(f"{what} must match {SAFE_NAME_PATTERN} and not contain '..'")
    return name


def safe_filename(name: str, fallback: str = "output") -> str:
    """A name from elsewhere (e.g. ComfyUI's output file) made safe to put in a header or on
    disk: the last path part, unsafe characters replaced, bounded."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_CHARS.sub("_", base).lstrip("._")[:128]
    return cleaned if _SAFE_NAME.fullmatch(cleaned) and ".." not in cleaned else fallback


def content_disposition(name: str, *, inline: bool = True) -> str:
    """A Content-Disposition value that cannot break out of its quotes or the header."""
    return f'{"inline" if inline else "attachment"}; filename="{safe_filename(name)}"'


async def _security_headers(_: web.Request, response: web.StreamResponse) -> None:
    # Outputs are whatever a ComfyUI node wrote; never let a browser sniff one into HTML.
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


def add_security_headers(app: web.Application) -> None:
    """Every response of `app` says `X-Content-Type-Options: nosniff`."""
    app.on_response_prepare.append(_security_headers)
