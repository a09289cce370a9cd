"""A balancer app served from the test's own process (real Redis, real HTTP on loopback),
for tests that need its handlers and background loops but no node processes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from comfyfleet.balancer.app import create_app
from comfyfleet.config import (
    BalancerConfig,
    BlobConfig,
    InputUrlConfig,
    RedisConfig,
    ServerConfig,
    WebhookConfig,
)


@dataclass
class Balancer:
    app: web.Application
    url: str
    http: aiohttp.ClientSession


@contextlib.asynccontextmanager
async def balancer(
    redis: RedisConfig,
    webhooks: WebhookConfig | None = None,
    input_urls: InputUrlConfig | None = None,
    blobs: BlobConfig | None = None,
) -> AsyncIterator[Balancer]:
    """A balancer on a free loopback port, with auth off (loopback, no credentials)."""
    cfg = BalancerConfig(
        server=ServerConfig(port=0),
        redis=redis,
        webhooks=webhooks or WebhookConfig(),
        input_urls=input_urls or InputUrlConfig(),
        blobs=blobs or BlobConfig(),
    )
    app = create_app(cfg)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            yield Balancer(app, f"http://127.0.0.1:{port}", http)
    finally:
        await runner.cleanup()
