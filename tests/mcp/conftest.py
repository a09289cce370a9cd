"""A real fleet on loopback (the suite's Redis, a balancer, a node, a ComfyUI stand-in, each
its own process, as `comfyfleet up` starts them) and `comfyfleet mcp` as real processes in
front of it, driven by the `mcp` SDK's own client over stdio and streamable HTTP."""

from __future__ import annotations

import io
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from comfyfleet.cli.fleet import Fleet, FleetSpec, Proc
from comfyfleet.redis_server import RedisServer, free_port
from comfyfleet.web.auth import basic_auth_header
from mcp import Client, StdioServerParameters
from tests.support.waiting import until

USER = "mcp"
PASSWORD = "mcp-" + uuid.uuid4().hex
TOKEN = "tok-" + uuid.uuid4().hex
# Every sampler step takes this long in the stand-in (ms): a 150-step job runs for seconds,
# long enough to cancel in the middle of it.
STEP_MS = 20


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    spec = FleetSpec(
        nodes=1, balancer_port=0, first_node_port=0, redis_url=redis_server.url,
        namespace=f"mcp{uuid.uuid4().hex[:8]}", username=USER, password=PASSWORD,
        node_ms=5, step_ms=STEP_MS, prefetch=0, data_dir=tmp_path_factory.mktemp("mcpfleet"),
    )  # fmt: skip
    with Fleet(spec) as fleet:
        yield fleet


def mcp_env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "COMFYFLEET_"))}
    env.update(API_USERNAME=USER, API_PASSWORD=PASSWORD, **more)
    return env


def mcp_argv(fleet: Fleet, *extra: str) -> list[str]:
    return ["-m", "comfyfleet", "mcp", "--url", fleet.balancer_url, "--watch-ms", "100", *extra]


@asynccontextmanager
async def stdio_client(fleet: Fleet, *extra: str, **kw: Any) -> AsyncIterator[Client]:
    """`comfyfleet mcp` launched the way desktop clients launch it (command, args, env)."""
    params = StdioServerParameters(command=sys.executable, args=mcp_argv(fleet, *extra),
                                   env=mcp_env())  # fmt: skip
    async with Client(params, **kw) as client:
        yield client


@pytest.fixture(scope="module")
def http_server(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`comfyfleet mcp --http` as a process; yields its /mcp URL."""
    port = free_port("127.0.0.1")
    proc = Proc(
        name="mcp-http",
        argv=[sys.executable, *mcp_argv(fleet, "--http", "--port", str(port))],
        env=mcp_env(COMFYFLEET_MCP_TOKEN=TOKEN),
        log_path=tmp_path_factory.mktemp("mcphttp") / "mcp.log",
        health_url=f"http://127.0.0.1:{port}/mcp",
    )
    proc.start()
    try:
        _wait_listening(proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.stop()


def _wait_listening(proc: Proc) -> None:
    """Until the process accepts connections (it has no health route: /mcp needs a token)."""
    host, port = "127.0.0.1", int(proc.health_url.split(":")[2].split("/")[0])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.alive, Path(proc.log_path).read_text()[-3000:]
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{proc.name} did not listen within 60 s")


@asynccontextmanager
async def http_client(url: str, token: str = TOKEN, **kw: Any) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(url, http_client=http), **kw) as client:
        yield client


@pytest.fixture
async def api(fleet: Fleet) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(
        headers={"Authorization": basic_auth_header(USER, PASSWORD)}
    ) as session:
        yield Api(session, fleet.balancer_url)


class Api:
    """The balancer's API, to check what the MCP server did."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body) as r:
            raw = await r.read()
            return r.status, (await r.json(content_type=None)) if raw else None

    async def job_ended(self, job_id: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any]:
            return dict((await self.call("GET", f"/api/v1/jobs/{job_id}"))[1])

        return await until(probe, lambda j: j["status"] in ("succeeded", "failed", "cancelled"),
                           timeout_s=60, what=f"job {job_id} to end")  # fmt: skip


def pixels(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
