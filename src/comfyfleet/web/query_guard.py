"""Unknown query parameters are refused (400 naming them and what the operation takes), so
a typo like `?wiat=30` fails loudly instead of silently doing something else. What an
operation takes is read from the role's `Op` table, the same one its OpenAPI document is
built from: document a parameter and it is accepted."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from comfyfleet.errors import BadRequest
from comfyfleet.web.openapi import Op


def query_guard(ops: Iterable[Op]) -> Middleware:
    """A middleware refusing query parameters that `ops` do not document. Routes without an
    `Op` (the docs themselves) are left alone."""
    taken = {
        (op.method, op.path): frozenset(p.name for p in op.params if p.where == "query")
        for op in ops
    }

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        method = "GET" if request.method == "HEAD" else request.method
        allowed = taken.get((method, resource.canonical)) if resource is not None else None
        if allowed is not None:
            unknown = sorted(set(request.query) - allowed)
            if unknown:
                takes = ", ".join(sorted(allowed)) or "none"
                raise BadRequest(
                    f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                    f"this operation takes: {takes}",
                    field="query",
                )
        return await handler(request)

    return guard
