"""A webhook receiver on loopback that fails a chosen number of times, and a job store,
dispatcher and webhook store sharing a frozen clock, so retries are stepped, not slept."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from pydantic import SecretStr

from comfyfleet.balancer.webhooks import Dispatcher
from comfyfleet.clock import FrozenClock
from comfyfleet.config import RedisConfig, WebhookConfig
from comfyfleet.store.connect import connect
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.webhooks import WebhookStore

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef-test-secret").decode()
BASE_MS = 1000


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers `fail` (HTTP status) to the first `failures` requests, then 204."""

    url: str
    failures: int = 0
    fail: int = 503
    got: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append(Received(dict(request.headers), await request.read()))
        if len(self.got) <= self.failures:
            return web.Response(status=self.fail)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    rec = Receiver(url="")
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


def webhook_config(**kw: object) -> WebhookConfig:
    base: dict[str, object] = {"secret": SecretStr(SECRET), "allow": ("127.0.0.1/32",),
                               "retry_base_ms": BASE_MS, "retry_jitter": False,
                               "max_attempts": 4, "poll_ms": 20}  # fmt: skip
    return WebhookConfig.model_validate({**base, **kw})


@pytest.fixture
async def jobs(redis_config: RedisConfig, clock: FrozenClock) -> AsyncIterator[JobStore]:
    store = JobStore.from_config(redis_config, clock)
    yield store
    await store.close()


@pytest.fixture
async def hooks(redis_config: RedisConfig) -> AsyncIterator[WebhookStore]:
    redis = connect(redis_config)
    yield WebhookStore(redis, Keys(redis_config.namespace))
    await redis.aclose()


DispatcherFactory = Callable[..., Awaitable[Dispatcher]]


@pytest.fixture
async def make_dispatcher(
    redis_config: RedisConfig, jobs: JobStore, clock: FrozenClock
) -> AsyncIterator[DispatcherFactory]:
    """Dispatchers, each on a Redis client of its own (as separate replicas would be)."""
    made: list[tuple[Dispatcher, aioredis.Redis]] = []

    async def make(**kw: object) -> Dispatcher:
        redis = connect(redis_config)
        store = WebhookStore(redis, Keys(redis_config.namespace))
        d = Dispatcher(store, jobs, webhook_config(**kw), base_url="http://bal", clock=clock)
        made.append((d, redis))
        return d

    yield make
    for d, redis in made:
        await d.close()
        await redis.aclose()
