"""The fleet's clock under a test's control.

The scripts read Redis TIME (see store/lua/_clock.lua); a test freezes and steps it through
the `{ns}:clock` key of its own namespace, the one seam the API cannot reach. `now_ms()`
stays synchronous (it is the frozen value), so a test can compute expected times."""

from __future__ import annotations

import redis.asyncio as aioredis

from comfyfleet.clock import FrozenClock
from comfyfleet.store.keys import Keys

START_MS = 1_700_000_000_000


class SteppedClock(FrozenClock):
    """Redis's clock for one namespace, frozen at `start_ms` and moved only by `step`."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, start_ms: int = START_MS) -> None:
        super().__init__(start_ms)
        self.redis = redis
        self.keys = keys

    async def freeze(self) -> None:
        await self.redis.hset(self.keys.clock, "frozen_ms", str(self.now_ms()))

    async def step(self, ms: int) -> None:
        """Move the fleet's time `ms` forward (scripts and this clock alike)."""
        self.advance(ms)
        await self.freeze()


async def skew_redis(redis: aioredis.Redis, keys: Keys, offset_ms: int) -> None:
    """Run the namespace's Redis clock `offset_ms` ahead of real time (negative: behind),
    still ticking: to the nodes this is their own clock being that far behind (ahead)."""
    await redis.hset(keys.clock, mapping={"offset_ms": str(offset_ms)})
