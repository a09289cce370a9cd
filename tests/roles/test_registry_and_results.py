"""Node registration/heartbeats and the result store, on the suite's real Redis."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from comfyfleet.clock import FrozenClock
from comfyfleet.config import RedisConfig
from comfyfleet.models.node import NodeInfo, NodeState
from comfyfleet.store.keys import Keys
from comfyfleet.store.nodes import LOST_AFTER_BEATS, NodeRegistry
from comfyfleet.store.results import OutputTooLarge, RedisResultStore


@pytest.fixture
def keys(redis_config: RedisConfig) -> Keys:
    return Keys(redis_config.namespace)


async def test_heartbeat_then_lost_after_missed_beats(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    clock = FrozenClock()
    registry = NodeRegistry(redis_client, keys, clock, heartbeat_ms=1000)
    await registry.heartbeat(NodeInfo(node_id="n1", comfy_healthy=True))
    await registry.heartbeat(NodeInfo(node_id="n2"))
    assert [n.node_id for n in await registry.all()] == ["n1", "n2"]
    got = await registry.get("n1")
    assert got is not None
    assert got.state is NodeState.READY
    assert got.last_seen_ms == clock.now_ms()
    clock.advance(LOST_AFTER_BEATS * 1000 + 1)
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


async def test_results_have_a_ttl_and_a_size_cap(redis_client: aioredis.Redis, keys: Keys) -> None:
    results = RedisResultStore(redis_client, keys, ttl_ms=60_000, max_bytes=10)
    await results.put("job1", 0, b"0123456789")
    assert await results.get("job1", 0) == b"0123456789"
    ttl = await redis_client.pttl(keys.result("job1", 0))
    assert 0 < ttl <= 60_000
    with pytest.raises(OutputTooLarge, match="cap is 10"):
        await results.put("job1", 1, b"x" * 11)
    assert await results.get("job1", 1) is None
    await results.delete("job1", 2)
    assert await results.get("job1", 0) is None
