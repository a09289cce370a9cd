"""Node registration and heartbeats, on the suite's real Redis (the result store's tests
are in tests/blobs)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from comfyfleet.config import RedisConfig
from comfyfleet.models.node import NodeInfo, NodeState
from comfyfleet.store.keys import Keys
from comfyfleet.store.nodes import LOST_AFTER_BEATS, NodeRegistry
from tests.support.clock import SteppedClock


@pytest.fixture
def keys(redis_config: RedisConfig) -> Keys:
    return Keys(redis_config.namespace)


async def test_heartbeat_then_lost_after_missed_beats(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    clock = SteppedClock(redis_client, keys)
    await clock.freeze()
    registry = NodeRegistry(redis_client, keys, clock, heartbeat_ms=1000)
    await registry.heartbeat(NodeInfo(node_id="n1", comfy_healthy=True))
    await registry.heartbeat(NodeInfo(node_id="n2"))
    assert [n.node_id for n in await registry.all()] == ["n1", "n2"]
    got = await registry.get("n1")
    assert got is not None
    assert got.state is NodeState.READY
    assert got.last_seen_ms == clock.now_ms()
    await clock.step(LOST_AFTER_BEATS * 1000 + 1)
    await registry.heartbeat(NodeInfo(node_id="n2"))
    assert await registry.lost_nodes() == ["n1"]
    states = {n.node_id: n.state for n in await registry.all()}
    assert states == {"n1": NodeState.LOST, "n2": NodeState.READY}
    await registry.deregister("n1")
    assert await registry.get("n1") is None


async def test_drain_requests_round_trip(redis_client: aioredis.Redis, keys: Keys) -> None:
    registry = NodeRegistry(redis_client, keys)
    assert await registry.drain_requested("n1") is None
    await registry.request_drain("n1", True)
    assert await registry.drain_requested("n1") is True
    await registry.request_drain("n1", False)
    assert await registry.drain_requested("n1") is False
