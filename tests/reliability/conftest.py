"""Fixtures for the reliability tests: a frozen clock, job stores and node registries on the
suite's Redis (a namespace per test), and small job specs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.clock import FrozenClock
from comfyfleet.config import RedisConfig
from comfyfleet.models.job import JobSpec
from comfyfleet.models.node import NodeInfo, NodeState
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.nodes import NodeRegistry
from tests.reliability.rig import Rig, make_rig

LEASE_MS = 30_000
StoreFactory = Callable[..., Awaitable[JobStore]]


def spec(**kw: Any) -> JobSpec:
    """A small job spec; the graph content does not matter to the store."""
    return JobSpec(graph={"1": {"class_type": "EmptyImage", "inputs": {}}}, **kw)


def node_info(node_id: str, state: NodeState = NodeState.READY, **kw: Any) -> NodeInfo:
    return NodeInfo(node_id=node_id, state=state, comfy_healthy=True, **kw)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def make_store(redis_config: RedisConfig, clock: FrozenClock) -> AsyncIterator[StoreFactory]:
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


@pytest.fixture
def registry(store: JobStore, clock: FrozenClock) -> NodeRegistry:
    return NodeRegistry(store.redis, store.keys, clock)


@pytest.fixture
async def rig(redis_config: RedisConfig, tmp_path: Path) -> AsyncIterator[Rig]:
    async with make_rig(redis_config, tmp_path / "sim") as rig:
        yield rig
