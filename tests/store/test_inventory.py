"""Node inventories (C2): stored once per digest, and the union the fleet shows as its
/object_info, merged and cached by digest set."""

from __future__ import annotations

from typing import Any

import pytest

from comfyfleet.clock import SYSTEM_CLOCK
from comfyfleet.comfy import ComfyClient
from comfyfleet.models.job import ANY_CAPABILITY
from comfyfleet.node.monitor import beat_once, publish_inventory
from comfyfleet.node.state import NodeStatus
from comfyfleet.store.inventory import InventoryStore, merge_object_info, union_id
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.nodes import NodeRegistry
from tests.reliability.rig import make_worker


def loader(*choices: str, new_form: bool = False) -> dict[str, Any]:
    spec: list[Any] = (
        ["COMBO", {"options": list(choices)}] if new_form else [list(choices), {"tooltip": "t"}]
    )
    return {"input": {"required": {"ckpt_name": spec}}, "output": ["MODEL"]}


A = {"CheckpointLoaderSimple": loader("a.safetensors"), "OnlyOnA": {"input": {}}}
B = {"CheckpointLoaderSimple": loader("b.safetensors", "a.safetensors"), "OnlyOnB": {}}


@pytest.fixture
def inventories(store: JobStore) -> InventoryStore:
    return InventoryStore(store.redis, store.keys)


def test_union_has_every_class_and_merged_combos() -> None:
    merged = merge_object_info([A, B])
    assert set(merged) == {"CheckpointLoaderSimple", "OnlyOnA", "OnlyOnB"}
    spec = merged["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    assert spec == [["a.safetensors", "b.safetensors"], {"tooltip": "t"}]
    new = merge_object_info(
        [
            {"L": loader("x.pt", new_form=True)},
            {"L": loader("y.pt", "x.pt", new_form=True)},
        ]
    )
    assert new["L"]["input"]["required"]["ckpt_name"] == ["COMBO", {"options": ["x.pt", "y.pt"]}]
    assert A["CheckpointLoaderSimple"] == loader("a.safetensors")  # inputs untouched


def test_union_id_ignores_order_and_repeats() -> None:
    assert union_id(["b", "a", "a"]) == union_id(["a", "b"]) != union_id(["a"])


async def test_publish_stores_once_per_digest(inventories: InventoryStore) -> None:
    assert await inventories.publish("d1", A, {"checkpoints": ["a.safetensors"]})
    assert not await inventories.publish("d1", B, {})  # a digest's inventory never changes
    got = await inventories.get("d1")
    assert got is not None
    assert (got.object_info, got.models) == (A, {"checkpoints": ["a.safetensors"]})
    assert await inventories.get("nope") is None
    assert await inventories.known() == {"d1"}


async def test_union_is_cached_by_digest_set_only_when_complete(
    inventories: InventoryStore, store: JobStore
) -> None:
    await inventories.publish("d1", A, {})
    partial = await inventories.union(["d1", "d2"])  # d2 not published yet
    assert set(partial) == {"CheckpointLoaderSimple", "OnlyOnA"}
    await inventories.publish("d2", B, {})
    full = await inventories.union(["d2", "d1"])
    assert set(full) == {"CheckpointLoaderSimple", "OnlyOnA", "OnlyOnB"}
    # Another process reads the cached union from Redis.
    assert await store.redis.exists(store.keys.inventory_union(union_id(["d1", "d2"])))
    assert await InventoryStore(store.redis, store.keys).union(["d1", "d2"]) == full


async def test_a_node_publishes_its_inventory_when_its_digest_changes(
    inventories: InventoryStore,
) -> None:
    status = NodeStatus("n1", "http://c", "http://n", SYSTEM_CLOCK.now_ms())
    status.set_inventory(A, {"checkpoints": ["a.safetensors"]})
    await publish_inventory(inventories, status)
    assert status.published_digest == status.digest
    assert status.digest is not None
    first = await inventories.get(status.digest)
    assert first is not None
    assert first.object_info == A
    status.set_inventory(B, {})
    await publish_inventory(inventories, status)
    assert await inventories.known() == {first.digest, status.digest}


async def test_an_inventory_unused_for_the_keep_time_goes_with_its_coverage(
    inventories: InventoryStore, store: JobStore
) -> None:
    keys, redis = store.keys, store.redis
    await inventories.publish("d1", A, {})
    await inventories.publish("d2", B, {})
    # Both cover a listed class and the class any node runs; d2 has a job class to serve.
    await redis.zadd(keys.classes, {"c1": 1})
    for cls in ("c1", ANY_CAPABILITY):
        await redis.sadd(keys.cover(cls), "d1", "d2")
    await redis.hset(keys.depth, "default", 1)
    await redis.zadd(keys.serve("default", "d2"), {"c1": 5})

    assert await inventories.sweep({"d1"}, now_ms=1_000, keep_ms=100) == []  # d2 noted
    assert await inventories.sweep({"d1"}, now_ms=1_099, keep_ms=100) == []
    assert await inventories.sweep({"d1"}, now_ms=1_100, keep_ms=100) == ["d2"]

    assert await inventories.known() == {"d1"}
    assert await inventories.get("d2") is None
    assert await redis.exists(keys.inventory("d2"), keys.serve("default", "d2")) == 0
    for cls in ("c1", ANY_CAPABILITY):
        assert await redis.smembers(keys.cover(cls)) == {b"d1"}
    assert await redis.hgetall(keys.inventories_unused) == {}
    kept = await inventories.get("d1")
    assert kept is not None
    assert kept.object_info == A


async def test_a_digest_in_use_again_starts_its_keep_time_over(
    inventories: InventoryStore,
) -> None:
    await inventories.publish("d1", A, {})
    assert await inventories.sweep(set(), now_ms=0, keep_ms=100) == []
    assert await inventories.sweep({"d1"}, now_ms=50, keep_ms=100) == []  # a node has it
    assert await inventories.sweep(set(), now_ms=120, keep_ms=100) == []  # unused from 120
    assert await inventories.sweep(set(), now_ms=219, keep_ms=100) == []
    assert await inventories.sweep(set(), now_ms=220, keep_ms=100) == ["d1"]


async def test_a_node_whose_inventory_was_dropped_publishes_it_again(
    inventories: InventoryStore, store: JobStore
) -> None:
    """A node away long enough to be forgotten comes back to a fleet that dropped its
    inventory: its heartbeat says so, and the next beat publishes it and covers anew."""
    registry = NodeRegistry(store.redis, store.keys)
    status = NodeStatus("node-1", "http://127.0.0.1:9", "", 0, comfy_healthy=True)
    status.set_inventory(A, {})
    comfy = ComfyClient("http://127.0.0.1:9")
    worker = make_worker(store, comfy, status)
    try:
        await beat_once(registry, store, status, worker)
        digest = status.digest
        assert digest is not None
        assert worker.digest == digest
        assert await store.redis.sismember(store.keys.cover(ANY_CAPABILITY), digest)

        assert await inventories.sweep(set(), now_ms=0, keep_ms=0) == []
        assert await inventories.sweep(set(), now_ms=0, keep_ms=0) == [digest]
        await beat_once(registry, store, status, worker)  # hears the inventory is gone
        assert worker.digest is None  # claims only what any node runs, meanwhile
        await beat_once(registry, store, status, worker)
        assert worker.digest == digest
        assert await inventories.known() == {digest}
        assert await store.redis.sismember(store.keys.cover(ANY_CAPABILITY), digest)
    finally:
        await comfy.close()
