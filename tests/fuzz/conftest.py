"""A small real fleet for the fuzzer: a ComfyUI stand-in, a node and a balancer, all in this
process on loopback with the suite's Redis. They run on an event loop in a thread of their
own because schemathesis calls them with blocking `requests`."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from pydantic import SecretStr

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.config import (
    BalancerConfig,
    InputUrlConfig,
    NodeConfig,
    RedisConfig,
    ServerConfig,
    SimConfig,
    WebhookConfig,
)
from comfyfleet.node.app import create_app as node_app
from comfyfleet.redis_server import RedisServer
from comfyfleet.sim import create_app as sim_app
from comfyfleet.web.auth import basic_auth_header

USER = "fuzz"
PASSWORD = "fuzz-" + uuid.uuid4().hex
AUTH = {"Authorization": basic_auth_header(USER, PASSWORD)}
# Examples per operation: small in `make test`, more with FUZZ_EXAMPLES (`make fuzz`).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
START_TIMEOUT_S = 30.0
WEBHOOKS = WebhookConfig(
    secret=SecretStr("whsec_" + base64.b64encode(b"fuzz-0123456789ab").decode())
)


class ThreadFleet:
    """Stand-in + node + balancer served from a background thread's event loop."""

    def __init__(self, redis: RedisConfig) -> None:
        self.redis = redis
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-fleet")
        self.runners: list[web.AppRunner] = []
        self.urls: dict[str, str] = {}

    def __enter__(self) -> ThreadFleet:
        self.thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT_S * 2)

    async def _serve(self, name: str, app: web.Application) -> str:
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        host, port = runner.addresses[0][:2]
        self.urls[name] = f"http://{host}:{port}"
        return self.urls[name]

    async def _start(self) -> None:
        server = ServerConfig(port=0, username=USER, password=SecretStr(PASSWORD), metrics=True)
        comfy = await self._serve("sim", sim_app(SimConfig(port=0, node_ms=0, step_ms=0)))
        cfg = NodeConfig(server=server, redis=self.redis, comfy_url=comfy, node_id="fuzz-node")
        await self._serve("node", node_app(cfg))
        # Webhooks and input URLs on, so their URL checks are fuzzed, not just "off".
        cfg = BalancerConfig(server=server, redis=self.redis, webhooks=WEBHOOKS,
                             input_urls=InputUrlConfig(allow=("*.example.com",)))  # fmt: skip
        await self._serve("balancer", balancer_app(cfg))

    async def _stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        # The roles stop all they start; anything left would be a leak in them.
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not rest, f"tasks left running after shutdown: {rest}"
        await self.loop.shutdown_asyncgens()


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer) -> Iterator[ThreadFleet]:
    redis = RedisConfig(url=redis_server.url, namespace=f"fuzz{uuid.uuid4().hex[:8]}")
    with ThreadFleet(redis) as fleet:
        yield fleet


def _schema(url: str) -> Any:
    # Loaded with credentials, so the balancer's document includes each workflow's params.
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=AUTH)
    schema.config.update(base_url=url)
    return schema


@pytest.fixture(scope="module")
def balancer_schema(fleet: ThreadFleet) -> Any:
    return _schema(fleet.urls["balancer"])


@pytest.fixture(scope="module")
def node_schema(fleet: ThreadFleet) -> Any:
    return _schema(fleet.urls["node"])
