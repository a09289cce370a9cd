"""Real node processes that run their ComfyUI themselves (`--comfy-cmd`), with `comfyfleet
sim` as the ComfyUI, on loopback with the suite's Redis; a fake Logdy listens for their
lines."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from comfyfleet.cli.fleet import Proc
from comfyfleet.redis_server import RedisServer, free_port
from tests.logs.conftest import LineServer


def sim_cmd(data_dir: Path, *extra: str) -> str:
    """`comfyfleet sim` as the ComfyUI command (the node adds --listen/--port)."""
    argv = [sys.executable, "-m", "comfyfleet", "sim", "--data-dir", str(data_dir), *extra]
    return shlex.join(argv)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines a process wrote (its banner and other text skipped)."""
    out = []
    for raw in path.read_bytes().splitlines():
        if raw.startswith(b"{"):
            try:
                out.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                continue
    return out


def start_node(
    tmp: Path, redis_url: str, comfy_cmd: str, *args: str, name: str = "node"
) -> tuple[Proc, str]:
    """A node process without credentials (loopback); (its Proc, its base URL)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, COMFYFLEET_NAMESPACE=f"np{uuid.uuid4().hex[:8]}")
    proc = Proc(
        name=name,
        argv=[sys.executable, "-m", "comfyfleet", "node", "--port", str(port),
              "--node-id", name, "--comfy-cmd", comfy_cmd, *args],
        env=env,
        log_path=tmp / f"{name}.log",
        health_url=f"http://127.0.0.1:{port}/healthz",
    )  # fmt: skip
    proc.start()
    return proc, f"http://127.0.0.1:{port}"


def process_state(pid: int) -> str | None:
    """The kernel's state letter of a process (Z: a zombie, which holds no port), or None
    once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.fixture
async def nodes(
    tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[Callable[..., tuple[Proc, str]]]:
    """Starts node processes; stops (SIGTERM, then SIGKILL) whatever is left at the end."""
    started: list[Proc] = []

    def start(comfy_cmd: str, *args: str, name: str = "node") -> tuple[Proc, str]:
        proc, url = start_node(tmp_path, redis_server.url, comfy_cmd, *args, name=name)
        started.append(proc)
        return proc, url

    yield start
    for proc in started:
        await asyncio.to_thread(proc.stop)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        return await resp.json(content_type=None)


@pytest.fixture(scope="module")
async def logdy() -> AsyncIterator[LineServer]:
    server = await LineServer().start()
    yield server
    await server.aclose()
