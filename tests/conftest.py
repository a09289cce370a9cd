"""Suite-wide fixtures: one real Redis server per test session, a fresh namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from comfyfleet.config import RedisConfig
from comfyfleet.redis_server import RedisServer

DATA = Path(__file__).parent / "data"
COMFY_DATA = DATA / "comfyui"
TRACES = COMFY_DATA / "traces"
SHARED_WORKFLOWS = COMFY_DATA / "workflows"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port (REDIS_SERVER_BIN overrides the binary)."""
    server = RedisServer(
        data_dir=tmp_path_factory.mktemp("redis"),
        binary=os.environ.get("REDIS_SERVER_BIN") or None,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_config(redis_server: RedisServer) -> RedisConfig:
    """A namespace of its own for each test, so tests never see each other's keys."""
    return RedisConfig(url=redis_server.url, namespace=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()
