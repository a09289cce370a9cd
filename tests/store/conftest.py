"""Fixtures for the job store: a frozen clock, and stores each on a client of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from comfyfleet.clock import FrozenClock
from comfyfleet.config import RedisConfig
from comfyfleet.models.job import JobSpec
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys

LEASE_MS = 30_000
StoreFactory = Callable[..., Awaitable[JobStore]]


def spec(**kw: Any) -> JobSpec:
    """A small job spec; the graph content does not matter to the store."""
    return JobSpec(graph={"1": {"class_type": "EmptyImage", "inputs": {}}}, **kw)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def keys(redis_config: RedisConfig) -> Keys:
    return Keys(redis_config.namespace)


@pytest.fixture
async def make_store(redis_config: RedisConfig, clock: FrozenClock) -> AsyncIterator[StoreFactory]:
    """Build stores sharing the test's namespace and clock, each with its own connections
    (as separate balancer replicas and nodes would have)."""
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
