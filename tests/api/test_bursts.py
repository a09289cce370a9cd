"""A burst of submits against a balancer whose Redis pool is far smaller than the burst:
every submit waits for a connection and is accepted exactly once; only past the bounded
wait does a client get a 503, with Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from comfyfleet.balancer.app import create_app
from comfyfleet.balancer.appkeys import REDIS
from comfyfleet.config import BalancerConfig, RedisConfig
from comfyfleet.store.keys import Keys
from tests.api.conftest import ADMIN_AUTH, Role, server

SUBMITTERS = 200
GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}  # fmt: skip


async def _balancer(
    redis_config: RedisConfig, session: aiohttp.ClientSession, pool_size: int, wait_s: float
) -> AsyncIterator[Role]:
    redis = redis_config.model_copy(update={"pool_size": pool_size, "pool_timeout_s": wait_s})
    app = create_app(BalancerConfig(server=server(), redis=redis))
    async with TestServer(app, host="127.0.0.1") as srv:
        yield Role(app, str(srv.make_url("")).rstrip("/"), session)


@pytest.fixture
async def small_pool(
    redis_config: RedisConfig, session: aiohttp.ClientSession
) -> AsyncIterator[Role]:
    async for role in _balancer(redis_config, session, pool_size=4, wait_s=30.0):
        yield role


@pytest.fixture
async def impatient(
    redis_config: RedisConfig, session: aiohttp.ClientSession
) -> AsyncIterator[Role]:
    async for role in _balancer(redis_config, session, pool_size=2, wait_s=0.2):
        yield role


async def test_a_burst_bigger_than_the_pool_is_accepted_exactly_once(
    small_pool: Role, redis_config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    connector = aiohttp.TCPConnector(limit=SUBMITTERS)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def submit(n: int) -> tuple[int, str]:
            headers = {"Authorization": ADMIN_AUTH, "Idempotency-Key": f"burst-{n}"}
            async with http.post(f"{small_pool.url}/api/v1/jobs", json={"graph": GRAPH},
                                 headers=headers) as resp:  # fmt: skip
                body = orjson.loads(await resp.read())
                return resp.status, str(body.get("id") or body)

        answers = await asyncio.gather(*(submit(n) for n in range(SUBMITTERS)))
    assert [status for status, _ in answers] == [202] * SUBMITTERS, answers
    ids = {job_id for _, job_id in answers}
    assert len(ids) == SUBMITTERS
    queued = await redis_client.zrange(Keys(redis_config.namespace).jobs_by_status("queued"), 0, -1)
    assert {member.decode() for member in queued} == ids


async def test_past_the_bounded_wait_a_submit_gets_503_with_retry_after(
    impatient: Role,
) -> None:
    redis = impatient.app[REDIS]
    async with redis.client() as first, redis.client() as second:
        await first.ping()
        await second.ping()  # the balancer's two connections are taken
        status, headers, body = await impatient.call(
            "POST", "/api/v1/jobs", ADMIN_AUTH, json={"graph": GRAPH}
        )
        assert status == 503
        assert headers["Retry-After"].isdigit()
        problem = orjson.loads(body)
        assert problem["type"].endswith("store-unavailable")
        assert "No connection available" in problem["detail"]
    status, _, _ = await impatient.call("POST", "/api/v1/jobs", ADMIN_AUTH, json={"graph": GRAPH})
    assert status == 202
