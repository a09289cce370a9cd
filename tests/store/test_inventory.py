"""Node inventories (C2): stored once per digest, and the union the fleet shows as its
/object_info, merged and cached by digest set."""

from __future__ import annotations

from typing import Any

import pytest

from comfyfleet.clock import SYSTEM_CLOCK
from comfyfleet.node.monitor import publish_inventory
from comfyfleet.node.state import NodeStatus
from comfyfleet.store.inventory import InventoryStore, merge_object_info, union_id
from comfyfleet.store.jobs import JobStore


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
