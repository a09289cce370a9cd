"""Shared pieces of the alert tests: a recording HTTP receiver on loopback, and configs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from comfyfleet.alerts.config import AlertsConfig, Receiver

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # 24 bytes, base64


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Listener:
    """An HTTP server on a loopback port that records every POST and answers `status`
    (and `reply` as JSON, for the chat services that answer an error code in the body)."""

    port: int = 0
    status: int = 200
    reply: dict[str, Any] = field(default_factory=dict)
    got: list[Received] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.got.append(Received(request.path, dict(request.query), dict(request.headers),
                                 await request.read()))  # fmt: skip
        return web.json_response(self.reply, status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    server = Listener()
    await server.start()
    yield server
    await server.stop()


def config(*receivers: Receiver, **kw: Any) -> AlertsConfig:
    """Fast settings for tests: resolve at once, retry after 20 ms, no jitter."""
    settings: dict[str, Any] = {"interval_ms": 100, "resolve_hold_s": 0, "retry_base_ms": 20,
                                "retry_max_ms": 100, "timeout_ms": 5000}  # fmt: skip
    settings.update(kw)
    return AlertsConfig(receivers=receivers, **settings)
