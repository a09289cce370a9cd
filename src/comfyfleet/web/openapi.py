"""OpenAPI 3.1 documents built from the pydantic models the handlers use, for both roles.

Each role keeps a small table of `Op`s (`balancer/openapi_ops.py`, `node/openapi_ops.py`):
method, path, words, request/response models and examples. `build_document` turns a table
into the document: model schemas come from pydantic (`models_json_schema`, so the wire
format has one source of truth), every operation gets its problem+json error responses
(401 unless open, 400, 404 with path params, 413/422 with a body, plus the role's own), and
the security schemes make Swagger UI's Authorize button offer basic auth and bearer keys.
A role may extend the built document per request (the balancer adds each published
workflow's params, read from Redis).

To document a new route: add one `Op(...)` to the role's table -- or keep a list of `Op`s
in your own module and splice it into the table -- naming its models and an example of
each JSON body. `tests/api/test_openapi.py` walks `app.router` and fails for any route the
document lacks (and for any documented operation without a route).

`add_docs_routes` serves `/openapi.json` and the Swagger UI at `/docs` from the
swagger-ui-bundle-v2 package: no CDN, works offline, strict CSP (`connect-src 'self'`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from comfyfleet import __version__
from comfyfleet.web.problems import PROBLEM_CONTENT_TYPE, REQUEST_ID_HEADER, Problem
from comfyfleet.web.responses import json_response

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
SECURITY_SCHEMES: dict[str, Any] = {
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "API_USERNAME / API_PASSWORD (the admin; `comfyfleet up` prints them).",
    },
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key `cfk_...` from `comfyfleet apikey create` or "
        "POST /api/v1/apikeys. May do everything but manage API keys, and change workflows "
        "only when granted the `workflows` scope.",
    },
}
ANY_AUTH: list[dict[str, list[str]]] = [{"basicAuth": []}, {"bearerAuth": []}]
ADMIN_AUTH: list[dict[str, list[str]]] = [{"basicAuth": []}]
_ERROR_WORDS = {
    400: "Bad request: a malformed parameter, header or body",
    401: "Missing or wrong credentials",
    403: "Authenticated, but not allowed to do this",
    404: "No such resource",
    409: "Conflict with the resource's current state",
    413: "Request body too large",
    422: "The body is well-formed but invalid: each bad field is listed",
    429: "Too many requests: a queue is full or a tenant is at a limit; see Retry-After",
    502: "ComfyUI is unreachable or answered an error",
    503: "The state store (Redis) is unavailable; see Retry-After",
    507: "The state store (Redis) is at its memory limit: nothing was stored; see Retry-After",
}


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter. `schema` is JSON Schema."""

    name: str
    where: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = False
    example: Any = None


@dataclass(frozen=True)
class Body:
    """A JSON request body; `examples` name -> value (shown in Swagger's example menu).
    `other_media`: media type -> OpenAPI media object, for the other forms the operation
    takes (e.g. a multipart upload)."""

    model: type[BaseModel]
    examples: Mapping[str, Any]
    description: str = ""
    required: bool = True
    other_media: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A success response: a JSON model, a raw schema, or bytes of `media_type`."""

    description: str
    model: type[BaseModel] | None = None
    schema: Mapping[str, Any] | None = None
    example: Any = None
    media_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    tag: str
    replies: Mapping[int, Reply]
    body: Body | None = None
    params: Sequence[Param] = ()
    # Problem statuses this operation may answer beyond the automatic ones.
    errors: Sequence[int] = ()
    # "open": no credentials needed; "admin": basic auth only; "any": basic or bearer.
    auth: Literal["open", "admin", "any"] = "any"


def _models(ops: Iterable[Op]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Problem, "serialization")]
    for op in ops:
        if op.body is not None:
            wanted.append((op.body.model, "validation"))
        wanted += [(r.model, "serialization") for r in op.replies.values() if r.model]
    return list(dict.fromkeys(wanted))


def _error_statuses(op: Op) -> list[int]:
    statuses = set(op.errors)
    if op.auth != "open":
        statuses.add(401)
    if op.auth == "admin":
        statuses.add(403)
    if op.params or op.body:
        statuses.add(400)
    if any(p.where == "path" for p in op.params):
        statuses.add(404)
    if op.body is not None:
        statuses.update((413, 422))
    return sorted(statuses)


def _request_id_header() -> dict[str, Any]:
    return {"$ref": "#/components/headers/RequestId"}


def _reply(reply: Reply, refs: Mapping[Any, Any]) -> dict[str, Any]:
    headers: dict[str, Any] = {REQUEST_ID_HEADER: _request_id_header()}
    for name, words in reply.headers.items():
        headers[name] = {"description": words, "schema": {"type": "string"}}
    out: dict[str, Any] = {"description": reply.description, "headers": headers}
    if reply.model is not None:
        schema: Mapping[str, Any] = refs[(reply.model, "serialization")]
    elif reply.schema is not None:
        schema = reply.schema
    else:
        return out
    media: dict[str, Any] = {"schema": dict(schema)}
    if reply.example is not None:
        media["example"] = reply.example
    out["content"] = {reply.media_type: media}
    return out


def _operation(op: Op, refs: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": op.description,
        "tags": [op.tag],
    }
    if op.params:
        out["parameters"] = [_parameter(p) for p in op.params]
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body.required,
            "description": op.body.description,
            "content": {
                "application/json": {
                    "schema": refs[(op.body.model, "validation")],
                    "examples": {k: {"value": v} for k, v in op.body.examples.items()},
                },
                **{media: dict(obj) for media, obj in op.body.other_media.items()},
            },
        }
    responses: dict[str, Any] = {str(s): _reply(r, refs) for s, r in sorted(op.replies.items())}
    for status in _error_statuses(op):
        responses[str(status)] = {"$ref": f"#/components/responses/Problem{status}"}
    out["responses"] = responses
    out["security"] = {"open": [], "admin": ADMIN_AUTH, "any": ANY_AUTH}[op.auth]
    return out


def _parameter(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "description": param.description,
        "schema": dict(param.schema),
    }
    if param.example is not None:
        out["example"] = param.example
    return out


def _problem_responses(statuses: Iterable[int]) -> dict[str, Any]:
    return {
        f"Problem{status}": {
            "description": _ERROR_WORDS.get(status, "Error"),
            "headers": {REQUEST_ID_HEADER: _request_id_header()},
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": REF.format(model="Problem")}}},
        }
        for status in sorted(set(statuses))
    }


def build_document(
    *, title: str, description: str, ops: Sequence[Op], tags: Mapping[str, str]
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `ops` (a fresh dict: callers may extend it)."""
    refs, defs = models_json_schema(_models(ops), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    statuses = [s for op in ops for s in _error_statuses(op)]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": __version__, "description": description},
        "tags": [{"name": name, "description": words} for name, words in tags.items()],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "responses": _problem_responses(statuses),
            "headers": {
                "RequestId": {
                    "description": "The request's id (echoed when the client sent one); "
                    "every log line of the request carries it.",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
        "security": ANY_AUTH,
    }


def documented(document: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation in a document."""
    return {
        (method.upper(), path)
        for path, item in document.get("paths", {}).items()
        for method in item
    }


# Routes that serve the docs themselves; they are not operations of the API.
DOCS_ROUTES = frozenset({"/openapi.json", "/docs", "/docs/{asset}"})
# The name prefix of the balancer's ComfyUI-native routes (balancer/native): ComfyUI's own
# API in ComfyUI's shapes, described by ComfyUI, not by this document.
NATIVE_ROUTE_PREFIX = "comfyui_"


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, canonical path) of every route an app serves, less HEAD twins of GETs and
    the docs routes."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.resource.canonical not in DOCS_ROUTES
        and not (route.resource.name or "").startswith(NATIVE_ROUTE_PREFIX)
    }


# --- Swagger UI, served from the swagger-ui-bundle-v2 package ---------------------------

# The bundle's files the page loads; nothing else under /docs/ is served (no traversal).
_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
# Swagger UI sets inline styles, hence 'unsafe-inline' for styles only; connect-src 'self'
# keeps the page from calling anything but this server (no validator badge, no CDN).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_STATIC_DIR = Path(__file__).parent / "static"


def swagger_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def _page(title: str) -> str:
    return (_STATIC_DIR / "docs.html").read_text().replace("{{title}}", title)


DocumentFn = Callable[[web.Request], Awaitable[dict[str, Any]]]


def add_docs_routes(app: web.Application, document: DocumentFn, title: str) -> None:
    """Serve `document` at /openapi.json and Swagger UI at /docs, behind auth like the API."""
    page = _page(title).encode()
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}

    async def openapi_json(request: web.Request) -> web.Response:
        return json_response(await document(request), headers={"Cache-Control": "no-store"})

    async def docs(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", headers=headers)

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["asset"]
        if name == "init.js":
            path = _STATIC_DIR / "swagger-init.js"
        elif name in _ASSETS:
            path = swagger_dir() / name
        else:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**headers, "Cache-Control": "private, max-age=3600"})

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    app.router.add_get("/docs/{asset}", asset)
