"""JSON in and out, with orjson and explicit limits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import StreamReader, web
from pydantic import BaseModel

from comfyfleet.errors import BadRequest, ComfyfleetError, ValidationFailed

JSON_BODY_LIMIT = 2 * 1024 * 1024  # bytes; graphs are small, outputs never come this way
# Uploaded files (input images) get their own, larger bound (bytes). A role that accepts
# uploads sets its app's client_max_size to this and reads other bodies with read_json, so
# a JSON body still stops at JSON_BODY_LIMIT.
UPLOAD_BODY_LIMIT = 32 * 1024 * 1024
# How deep a JSON body may nest (objects and arrays). A ComfyUI graph is about 5 deep; the
# cap keeps anything that recurses over a body (pydantic, rendering, orjson.dumps, which
# stops at 254) far from its own limit, so a deep value is a 422, never a 500.
MAX_JSON_DEPTH = 64
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


async def read_bounded(stream: StreamReader, limit: int, what: str = "body") -> bytes:
    """Every byte of `stream` up to its end: PayloadTooLarge (413) past `limit` bytes.

    The one way bodies are read: a single `read(n)` answers what has arrived so far, which
    for a large body is only its first chunk."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await stream.readany():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"{what} exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, *, limit: int = JSON_BODY_LIMIT) -> Any:
    """The request body parsed as JSON: 413 beyond `limit` bytes, 400 naming the problem,
    422 naming the place where it nests deeper than MAX_JSON_DEPTH."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {limit}")
    body = await read_bounded(request.content, limit)
    if not body:
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    check_depth(data)
    return data


def _children(value: Any) -> Iterable[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return value.items()
    return enumerate(value) if isinstance(value, list) else ()


def check_depth(data: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """ValidationFailed (422) naming the first place `data` nests more than `limit`
    objects/arrays deep (`data` itself is level 1). Walks with a stack of its own: it must
    not recurse over the very input it guards."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(data, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        for key, child in _children(value):
            if not isinstance(child, dict | list):
                continue
            if depth + 1 > limit:
                where = ".".join(str(p) for p in (*path, key)[:6])
                raise ValidationFailed(
                    f"the body nests more than {limit} levels deep (at {where}...)", field=where
                )
            stack.append((child, depth + 1, (*path, key)))


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
