"""JSON in and out, with orjson and explicit limits."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from comfyfleet.errors import BadRequest, ComfyfleetError

JSON_BODY_LIMIT = 2 * 1024 * 1024  # bytes; graphs are small, outputs never come this way


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
