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
from pydantic import ValidationError

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


def _http_problem(exc: web.HTTPException) -> dict[str, Any]:
    code = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
        exc.status, f"http-{exc.status}"
    )
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
