"""Capability routing through the real scripts: requirements, the refusal at submit, and
claims that only take jobs a node's inventory covers, with no head-of-line blocking."""

from __future__ import annotations

from typing import Any

import pytest

from comfyfleet.errors import NoCapableNode
from comfyfleet.models.capability import FileNeed, Requirement, covers, missing, requirement_of
from comfyfleet.models.job import ANY_CAPABILITY, JobSpec
from comfyfleet.models.node import NodeInfo
from comfyfleet.store.inventory import InventoryStore
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.store.routing import CapabilityStore, Router

LEASE_MS = 30_000

LOADER = {
    "input": {
        "required": {"ckpt_name": [["a.safetensors", "b.safetensors"], {}]},
        "optional": {"image": ["COMBO", {"options": ["x.png"], "image_upload": True}]},
    }
}
BASIC = {"EmptyImage": {"input": {}}, "SaveImage": {"input": {}}}
# d1: has the loader with a.safetensors and a custom class; d2: only the basic classes.
INFO_1 = {**BASIC, "CheckpointLoaderSimple": LOADER, "Custom": {"input": {}}}
INFO_2 = {**BASIC}


def graph(*classes: str, ckpt: str | None = None) -> dict[str, Any]:
    nodes: dict[str, Any] = {str(i): {"class_type": c, "inputs": {}} for i, c in enumerate(classes)}
    if ckpt is not None:
        nodes["ck"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}
    return nodes


def test_requirement_names_classes_and_model_files_not_uploads() -> None:
    g = graph("EmptyImage", ckpt="a.safetensors")
    g["ck"]["inputs"]["image"] = "upload.png"  # an upload travels with the job
    req = requirement_of(g, INFO_1)
    assert req.classes == ("CheckpointLoaderSimple", "EmptyImage")
    assert req.files == (FileNeed("CheckpointLoaderSimple", "ckpt_name", "a.safetensors"),)
    assert covers(INFO_1, req)
    assert not covers(INFO_2, req)
    assert missing(requirement_of(graph(ckpt="zzz.safetensors"), INFO_1), INFO_1).files == (
        FileNeed("CheckpointLoaderSimple", "ckpt_name", "zzz.safetensors"),
    )
    # Equal needs, equal class; no need at all: the class every node runs.
    assert req.class_id == requirement_of(dict(reversed(g.items())), INFO_1).class_id
    assert Requirement().class_id == ANY_CAPABILITY
    assert Requirement.from_json(req.to_json()) == req


@pytest.fixture
async def fleet(store: JobStore) -> tuple[NodeRegistry, InventoryStore, CapabilityStore]:
    registry = NodeRegistry(store.redis, store.keys)
    inventories = InventoryStore(store.redis, store.keys)
    return registry, inventories, CapabilityStore(store.redis, store.keys, inventories)


async def node_up(
    fleet: tuple[NodeRegistry, InventoryStore, CapabilityStore],
    node_id: str,
    digest: str,
    info: dict[str, Any],
) -> None:
    """What a node does (node/monitor.py): publish its inventory, beat, cover the classes."""
    registry, inventories, capabilities = fleet
    await inventories.publish(digest, info, {})
    await registry.heartbeat(NodeInfo(node_id=node_id, inventory_digest=digest))
    listed = await capabilities.listed_since(0)
    mine = [c.class_id for c in listed if covers(info, c.requirement)]
    await capabilities.cover(digest, mine, ["default"])


async def test_submit_refuses_what_no_node_can_run_naming_it(
    store: JobStore, fleet: tuple[NodeRegistry, InventoryStore, CapabilityStore]
) -> None:
    store.router = Router(fleet[0], fleet[2])
    # No inventory known yet: nothing to judge by, accepted for any node.
    early, _ = await store.enqueue(JobSpec(graph=graph("Nope")))
    assert early.capability == ANY_CAPABILITY
    await node_up(fleet, "n1", "d1", INFO_1)
    await node_up(fleet, "n2", "d2", INFO_2)
    store.router = Router(fleet[0], fleet[2])  # a fresh look at the fleet
    with pytest.raises(NoCapableNode) as refused:
        await store.enqueue(JobSpec(graph=graph("EmptyImage", "Nope")))
    assert refused.value.status == 400
    assert refused.value.extra["missing_classes"] == ["Nope"]
    assert "Nope" in refused.value.detail
    with pytest.raises(NoCapableNode) as refused:
        await store.enqueue(JobSpec(graph=graph(ckpt="zzz.safetensors")))
    assert refused.value.extra["missing_files"] == [
        {"class_type": "CheckpointLoaderSimple", "input": "ckpt_name", "name": "zzz.safetensors"}
    ]
    assert "zzz.safetensors" in refused.value.detail
    job, _ = await store.enqueue(JobSpec(graph=graph(ckpt="a.safetensors")))
    assert await fleet[2].covering(job.capability) == {"d1"}


async def test_each_node_takes_only_what_it_can_run_and_nothing_blocks(
    store: JobStore, fleet: tuple[NodeRegistry, InventoryStore, CapabilityStore]
) -> None:
    await node_up(fleet, "n1", "d1", INFO_1)
    await node_up(fleet, "n2", "d2", INFO_2)
    store.router = Router(fleet[0], fleet[2])
    # 50 jobs only n1 can run, queued first (and at a higher priority), then basic ones.
    only_1 = [
        (await store.enqueue(JobSpec(graph=graph("Custom"), priority=5)))[0].id for _ in range(50)
    ]
    basic = [(await store.enqueue(JobSpec(graph=graph("EmptyImage"))))[0].id for _ in range(5)]
    # n2 finds the basic jobs at once, behind the 50 it cannot run.
    got = await store.claim("n2", capacity=10, lease_ms=LEASE_MS, digest="d2")
    assert [j.id for j in got] == basic
    assert await store.claim("n2", lease_ms=LEASE_MS, digest="d2") == []
    # A node without an inventory runs only jobs queued without a capability.
    assert await store.claim("n3", lease_ms=LEASE_MS) == []
    got = await store.claim("n1", capacity=100, lease_ms=LEASE_MS, digest="d1")
    assert [j.id for j in got] == only_1


async def test_a_node_that_comes_up_later_finds_the_work_waiting_for_it(
    store: JobStore, fleet: tuple[NodeRegistry, InventoryStore, CapabilityStore]
) -> None:
    await node_up(fleet, "n2", "d2", INFO_2)
    store.router = Router(fleet[0], fleet[2])
    await node_up(fleet, "n1", "d1", INFO_1)  # registered after the router's look
    store.router = Router(fleet[0], fleet[2])
    job, _ = await store.enqueue(JobSpec(graph=graph("Custom")))
    # A second node of d1's kind, serving another pool too, covers on startup.
    await fleet[2].cover("d1", [job.capability], ["default", "other"])
    (got,) = await store.claim("n1b", pools=["other", "default"], lease_ms=LEASE_MS, digest="d1")
    assert got.id == job.id


async def test_cancel_and_retry_keep_the_queues_consistent(
    store: JobStore, fleet: tuple[NodeRegistry, InventoryStore, CapabilityStore]
) -> None:
    await node_up(fleet, "n1", "d1", INFO_1)
    store.router = Router(fleet[0], fleet[2])
    first, _ = await store.enqueue(JobSpec(graph=graph("Custom")))
    second, _ = await store.enqueue(JobSpec(graph=graph("Custom")))
    await store.cancel(first.id)
    assert await store.queue_depth() == 1
    (got,) = await store.claim("n1", lease_ms=LEASE_MS, digest="d1")
    assert got.id == second.id
    await store.release(got.id, "n1")  # back at its place, still only for d1 nodes
    assert await store.claim("n2", lease_ms=LEASE_MS, digest="d2") == []
    (again,) = await store.claim("n1", lease_ms=LEASE_MS, digest="d1")
    assert again.id == second.id
    assert await store.queue_depth() == 0


async def test_a_tenants_best_job_is_taken_whatever_its_class(
    store: JobStore, fleet: tuple[NodeRegistry, InventoryStore, CapabilityStore]
) -> None:
    """Priority, then FIFO, across the capability classes a node can run: one tenant's
    urgent job of one workflow is not held behind its backlog of another's, and its jobs
    of two classes run in the order they were queued."""
    await node_up(fleet, "n1", "d1", INFO_1)
    store.router = Router(fleet[0], fleet[2])
    custom = [(await store.enqueue(JobSpec(graph=graph("Custom"))))[0].id for _ in range(2)]
    basic = [(await store.enqueue(JobSpec(graph=graph("EmptyImage"))))[0].id for _ in range(2)]
    more = (await store.enqueue(JobSpec(graph=graph("Custom"))))[0].id
    urgent = (await store.enqueue(JobSpec(graph=graph("EmptyImage"), priority=10)))[0].id
    order = []
    while got := await store.claim("n1", lease_ms=LEASE_MS, digest="d1"):
        order.append(got[0].id)
    assert order == [urgent, *custom, *basic, more]
