"""The bounded, blocking connection pool every role uses (store/connect.py): a burst waits
for a connection instead of failing, the number of connections stays bounded, and past the
bounded wait the failure is a clear "no connection available"."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from comfyfleet.config import RedisConfig
from comfyfleet.store.connect import connect
from tests.support.waiting import until

HOLD_S = 20  # a blocking pop that holds its connection until the test pushes


async def _blocked_pops(admin: aioredis.Redis, marker: str) -> int:
    """Connections the server sees blocked in a BLPOP on one of the test's keys."""
    clients = await admin.client_list()
    return sum(1 for c in clients if c.get("cmd") == "blpop" and c.get("name") == marker)


async def test_a_burst_waits_for_a_connection_and_stays_bounded(
    redis_config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    cfg = redis_config.model_copy(update={"pool_size": 3, "pool_timeout_s": 30.0})
    client = connect(cfg)
    marker = f"pool{uuid.uuid4().hex[:8]}"
    keys = [f"{marker}:{i}" for i in range(10)]
    try:

        async def pop(key: str) -> bytes:
            async with client.client() as conn:  # one connection of the pool
                await conn.client_setname(marker)
                _, value = await conn.blpop([key], timeout=HOLD_S)
                return bytes(value)

        pops = [asyncio.create_task(pop(key)) for key in keys]
        # Three connections block on the server; the seven others wait for one, not fail.
        await until(lambda: _blocked_pops(redis_client, marker), lambda n: n == 3,
                    what="the pool's three connections to block")  # fmt: skip
        assert not any(task.done() for task in pops)
        for key in keys:
            await redis_client.rpush(key, key)
            assert await _blocked_pops(redis_client, marker) <= 3
        assert await asyncio.gather(*pops) == [key.encode() for key in keys]
    finally:
        await client.aclose()


async def test_past_the_bounded_wait_a_command_fails_clearly(redis_config: RedisConfig) -> None:
    cfg = redis_config.model_copy(update={"pool_size": 2, "pool_timeout_s": 0.2})
    client = connect(cfg)
    try:
        async with client.client() as first, client.client() as second:
            await first.ping()
            await second.ping()  # both connections of the pool are taken
            with pytest.raises(RedisConnectionError, match="No connection available"):
                await client.ping()
        assert await client.ping()  # and free again once given back
    finally:
        await client.aclose()
