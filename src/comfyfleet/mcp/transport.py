"""Serving `FleetMcp`: over stdio (what desktop clients launch) or streamable HTTP (remote
agents), with a bearer token checked in front of every HTTP request."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import orjson
import structlog
import uvicorn
from mcp.server.stdio import stdio_server

from comfyfleet.config import McpConfig
from comfyfleet.mcp.client import ApiError, BalancerClient
from comfyfleet.mcp.server import FleetMcp
from comfyfleet.web.auth import credentials_headers

log = structlog.get_logger(__name__)
MCP_PATH = "/mcp"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class Refused(Exception):
    """The balancer refused our credentials, or cannot be reached, at start."""


class BearerGuard:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <token>`, compared
    in constant time; otherwise 401 problem+json with an RFC 6750 challenge."""

    def __init__(self, app: Asgi, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await _unauthorized(send, bool(given))
                return
        await self.app(scope, receive, send)


async def _unauthorized(send: Send, had_token: bool) -> None:
    challenge = 'Bearer realm="comfyfleet-mcp"' + (', error="invalid_token"' if had_token else "")
    body = orjson.dumps({
        "type": "https://comfyfleet.dev/problems/unauthorized", "title": "Authentication required",
        "status": 401, "code": "unauthorized", "detail": "missing or wrong bearer token",
    })  # fmt: skip
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/problem+json"), (b"www-authenticate", challenge.encode()),
        (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def serve(cfg: McpConfig) -> None:
    """Run until stdin closes (stdio) or SIGINT/SIGTERM (HTTP). Refused when the balancer
    does not take our credentials: better to fail at start than on an agent's first call."""
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    password = cfg.password.get_secret_value() if cfg.password else None
    async with BalancerClient(cfg.url, credentials_headers(cfg.username, password, key)) as client:
        fleet = FleetMcp(cfg, client)
        try:
            await fleet.catalog.refresh()
        except ApiError as exc:
            raise Refused(f"the balancer at {cfg.url} refused: {exc}") from None
        log.info("mcp_ready", url=cfg.url, workflows=sorted(fleet.catalog.workflows),
                 transport="http" if cfg.http else "stdio")  # fmt: skip
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(fleet.watch)
            if cfg.http:
                await _serve_http(cfg, fleet)
            else:
                async with stdio_server() as (read, write):
                    await fleet.server.run(read, write, fleet.init_options())
            tasks.cancel_scope.cancel()


async def _serve_http(cfg: McpConfig, fleet: FleetMcp) -> None:
    app: Asgi = fleet.server.streamable_http_app(streamable_http_path=MCP_PATH, host=cfg.host)
    if cfg.http_token is not None:
        app = BearerGuard(app, cfg.http_token.get_secret_value())
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", lifespan="on")
    log.info("listening", url=f"http://{cfg.host}:{cfg.port}{MCP_PATH}", what="comfyfleet mcp")
    await uvicorn.Server(config).serve()
