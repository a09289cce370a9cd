"""Suite-wide fixtures: one real Redis server per test session, a fresh namespace per test,
a frozen clock, and job stores each on a Redis client of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from comfyfleet.blobs import BlobStore, open_blob_store
from comfyfleet.config import BlobConfig, RedisConfig
from comfyfleet.redis_server import RedisServer
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys
from tests.support.clock import SteppedClock
from tests.support.s3 import S3Server, create_bucket

DATA = Path(__file__).parent / "data"
COMFY_DATA = DATA / "comfyui"
TRACES = COMFY_DATA / "traces"
SHARED_WORKFLOWS = COMFY_DATA / "workflows"
StoreFactory = Callable[..., Awaitable[JobStore]]


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


@pytest.fixture
async def clock(
    redis_client: aioredis.Redis, redis_config: RedisConfig
) -> AsyncIterator[SteppedClock]:
    """The fleet's clock (Redis TIME, as the scripts read it) frozen for this test's
    namespace; `await clock.step(ms)` moves it."""
    clock = SteppedClock(redis_client, Keys(redis_config.namespace))
    await clock.freeze()
    return clock


@pytest.fixture
async def make_store(redis_config: RedisConfig, clock: SteppedClock) -> AsyncIterator[StoreFactory]:
    """Stores sharing the test's namespace and clock, each with its own connections (as
    separate balancer replicas and nodes would have)."""
    stores: list[JobStore] = []

    async def make(**kw: Any) -> JobStore:
        store = JobStore.from_config(redis_config, kw.pop("clock", clock), **kw)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> JobStore:
    return await make_store()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-protocol server (moto) on a free loopback port, with the suite's bucket."""
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    server.start()
    create_bucket(server)
    yield server
    server.stop()


@pytest.fixture(params=["redis", "s3"])
def blob_config(request: pytest.FixtureRequest) -> BlobConfig:
    """Each blob-store test runs against both stores: Redis, and S3 on the suite's server."""
    if request.param == "redis":
        return BlobConfig()
    server: S3Server = request.getfixturevalue("s3_server")
    return server.config()


@pytest.fixture
async def blobs(blob_config: BlobConfig, redis_config: RedisConfig) -> AsyncIterator[BlobStore]:
    redis = aioredis.Redis.from_url(redis_config.url)
    store = await open_blob_store(blob_config, redis, Keys(redis_config.namespace))
    yield store
    await store.close()
    await redis.aclose()
