"""One middleware renders every error as application/problem+json (RFC 9457).

Known errors carry their own status and stable `type`; aiohttp's HTTP errors (404, 405,
413) are translated; anything else becomes a 500 whose body names only the request id --
the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from comfyfleet.errors import PROBLEM_BASE, ComfyfleetError
from comfyfleet.web.responses import dumps

PROBLEM_CONTENT_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(body: dict[str, Any], request_id: str) -> web.Response:
    body = {**body, "request_id": request_id}
    return web.Response(
        body=dumps(body),
        status=int(body["status"]),
        content_type=PROBLEM_CONTENT_TYPE,
        headers={REQUEST_ID_HEADER: request_id},
    )


def validation_problem(exc: ValidationError, *, where: str = "body") -> dict[str, Any]:
    """A pydantic error as a 422 problem listing each field that is wrong."""
    errors = [
        {
            "field": ".".join(str(p) for p in err["loc"]),
            "message": err["msg"],
        }
        for err in exc.errors()
    ]
    fields = ", ".join(e["field"] or where for e in errors)
    return {
        "type": PROBLEM_BASE + "validation",
        "title": "Invalid request",
        "status": 422,
        "detail": f"invalid {where}: {fields}",
        "code": "validation",
        "errors": errors,
    }


# Stable codes for the errors aiohttp raises itself (router, body limits, auth refusals).
HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
}


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the bad field; empty: the whole body")
    message: str


class Problem(BaseModel):
    """An error (RFC 9457). `type` and `code` are stable: branch on them, not on `detail`.
    Some problems add fields of their own (e.g. `job_id`, `param`)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": PROBLEM_BASE + "not-found",
                    "title": "Not found",
                    "status": 404,
                    "detail": "no job '0123abcd'",
                    "code": "not-found",
                    "request_id": "5b0c1f9e2a7d4c36a1e0f3b2c4d5e6f7",
                }
            ]
        },
    )

    type: str = Field(description="a URI naming the kind of error")
    title: str
    status: int
    detail: str
    code: str = Field(description="the last part of `type`, for switch statements")
    request_id: str = Field(description="also in the X-Request-ID header and the server's log")
    errors: list[FieldError] | None = Field(default=None, description="422: each bad field")


def _http_problem(exc: web.HTTPException) -> dict[str, Any]:
    code = HTTP_CODES.get(exc.status, f"http-{exc.status}")
    return {
        "type": PROBLEM_BASE + code,
        "title": exc.reason,
        "status": exc.status,
        "detail": exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason,
        "code": code,
    }


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    if len(request_id) > 128 or not request_id.isprintable():
        request_id = uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    except ComfyfleetError as exc:
        if exc.status >= 500:
            log.warning("request_failed", error=exc.code, detail=exc.detail)
        return problem_response(exc.problem(), request_id)
    except ValidationError as exc:
        return problem_response(validation_problem(exc), request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = _http_problem(exc)
        response = problem_response(problem, request_id)
        for name in ("Allow", "WWW-Authenticate", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unhandled_error", path=request.path)
        return problem_response(
            {
                "type": PROBLEM_BASE + "internal",
                "title": "Internal error",
                "status": 500,
                "detail": "the server failed to handle this request; see its log",
                "code": "internal",
            },
            request_id,
        )
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    if not response.prepared:
        response.headers.setdefault(REQUEST_ID_HEADER, request_id)
    return response
