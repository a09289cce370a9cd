"""Failed-login records across processes: what one process remembers as a clean source
holds only until a failure from that source is recorded anywhere."""

from __future__ import annotations

import redis.asyncio as aioredis

from comfyfleet.config import RedisConfig
from comfyfleet.store.keys import Keys
from comfyfleet.store.logins import FREE_FAILURES, LoginThrottle
from tests.support.waiting import until

SOURCE = "192.0.2.7"


async def test_a_failure_anywhere_ends_what_each_process_trusted(
    redis_config: RedisConfig, keys: Keys
) -> None:
    client_here, client_there = (
        aioredis.Redis.from_url(redis_config.url),
        aioredis.Redis.from_url(redis_config.url),
    )
    here, there = LoginThrottle(client_here, keys), LoginThrottle(client_there, keys)
    try:
        await until(here.listening, bool, timeout_s=10, what="the failure channel")
        assert await here.wait_ms(SOURCE) == (0, 0)  # asked Redis, and now remembered
        # A record written behind every process's back is not seen: the answer is trusted.
        await client_there.hset(keys.login_failures(SOURCE), mapping={"count": 1})
        assert await here.wait_ms(SOURCE) == (0, 0)
        await client_there.delete(keys.login_failures(SOURCE))
        # A failure recorded by another process is published, so this one asks again.
        for _ in range(FREE_FAILURES + 1):
            await there.failed(SOURCE)
        _, failures = await until(lambda: here.wait_ms(SOURCE), lambda r: r[0] > 0,
                                  timeout_s=10, what="the other process's failures")  # fmt: skip
        assert failures == FREE_FAILURES + 1
        assert await here.wait_ms("192.0.2.8") == (0, 0)  # other sources are not slowed
    finally:
        await here.close()
        await there.close()
        await client_here.aclose()
        await client_there.aclose()
