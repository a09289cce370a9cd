"""The reaper, stepped with `run_once` and a frozen clock: lost nodes are marked once and
their jobs come back without waiting for leases; expired leases come back; attempts run out
into a failure with the history; an outage of Redis does not make every node look lost."""

from __future__ import annotations

import asyncio

from comfyfleet.balancer.reaper import INVENTORY_SWEEP_MS, Reaper
from comfyfleet.clock import FrozenClock
from comfyfleet.models.job import JobError, JobStatus
from comfyfleet.models.node import NodeState
from comfyfleet.store.inventory import InventoryStore
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.nodes import NodeRegistry

from .conftest import LEASE_MS, StoreFactory, node_info, spec


async def test_lost_node_is_marked_once_and_its_jobs_requeued(
    store: JobStore, registry: NodeRegistry, clock: FrozenClock
) -> None:
    reaper = Reaper(store, registry, forget_after_ms=60_000)
    await registry.heartbeat(node_info("n1"))
    await registry.heartbeat(node_info("n2"))
    job, _ = await store.enqueue(spec())
    await store.claim("n1", lease_ms=LEASE_MS)
    assert (await reaper.run_once()).jobs == []
    await clock.step(registry.lost_after_ms + 1)
    await registry.heartbeat(node_info("n2"))
    result = await reaper.run_once()
    assert (result.lost_nodes, result.taken_back, result.expired) == (["n1"], [job.id], [])
    assert (await registry.get("n1")).state is NodeState.LOST  # type: ignore[union-attr]
    again = await reaper.run_once()
    assert (again.lost_nodes, again.jobs) == ([], [])
    (claimed,) = await store.claim("n2", lease_ms=LEASE_MS)
    assert claimed.id == job.id
    # Listed as lost for a while, then forgotten.
    await clock.step(60_000)
    await registry.heartbeat(node_info("n2"))
    await reaper.run_once()
    assert [n.node_id for n in await registry.all()] == ["n2"]
    assert await registry.marked_lost() == {}


async def test_node_back_from_lost_is_unmarked(
    store: JobStore, registry: NodeRegistry, clock: FrozenClock
) -> None:
    reaper = Reaper(store, registry)
    await registry.heartbeat(node_info("n1"))
    await clock.step(registry.lost_after_ms + 1)
    assert (await reaper.run_once()).lost_nodes == ["n1"]
    await registry.heartbeat(node_info("n1"))
    assert await registry.marked_lost() == {}
    assert (await registry.get("n1")).state is NodeState.READY  # type: ignore[union-attr]


async def test_expired_leases_until_attempts_run_out_fail_with_history(
    store: JobStore, registry: NodeRegistry, clock: FrozenClock
) -> None:
    reaper = Reaper(store, registry)
    job, _ = await store.enqueue(spec(max_attempts=3))
    for attempt in range(1, 4):
        await registry.heartbeat(node_info(f"n{attempt}"))
        (got,) = await store.claim(f"n{attempt}", lease_ms=LEASE_MS)
        assert got.attempts == attempt
        await clock.step(LEASE_MS)
        await registry.heartbeat(node_info(f"n{attempt}"))  # alive, but not renewing: hung
        assert (await reaper.run_once()).expired == [job.id]
    done = await store.get(job.id)
    assert done is not None
    assert done.status is JobStatus.FAILED
    assert [(r.attempt, r.node_id, r.outcome) for r in done.history] == [
        (1, "n1", "lease_expired"),
        (2, "n2", "lease_expired"),
        (3, "n3", "lease_expired"),
    ]
    assert done.error is not None
    assert done.error.code == "lease_expired"


async def test_replicas_reaping_at_once_take_each_job_back_once(
    make_store: StoreFactory, clock: FrozenClock
) -> None:
    stores = [await make_store() for _ in range(4)]
    registries = [NodeRegistry(s.redis, s.keys, clock) for s in stores]
    reapers = [Reaper(s, r) for s, r in zip(stores, registries, strict=True)]
    await registries[0].heartbeat(node_info("n1"))
    await registries[0].heartbeat(node_info("n2"))
    ids = [(await stores[0].enqueue(spec()))[0].id for _ in range(30)]
    await stores[0].claim("n1", capacity=15, lease_ms=LEASE_MS)
    await stores[0].claim("n2", capacity=15, lease_ms=LEASE_MS)
    await clock.step(LEASE_MS)
    await registries[0].heartbeat(node_info("n2"))  # n2 alive but its leases lapsed
    results = await asyncio.gather(*(r.run_once() for r in reapers))
    taken = [job_id for result in results for job_id in result.jobs]
    assert sorted(taken) == sorted(ids)
    assert sum(len(r.lost_nodes) for r in results) == 1


async def test_after_a_redis_outage_nodes_get_a_lost_bound_to_beat_again(
    store: JobStore, registry: NodeRegistry, clock: FrozenClock
) -> None:
    reaper = Reaper(store, registry)
    await registry.heartbeat(node_info("n1"))
    job, _ = await store.enqueue(spec())
    await store.claim("n1", lease_ms=LEASE_MS)
    await clock.step(registry.lost_after_ms + 1)  # nobody could write during the outage
    reaper.outage_seen()
    assert (await reaper.run_once()).jobs == []
    await registry.heartbeat(node_info("n1"))  # the node is back in time
    await clock.step(registry.lost_after_ms)
    await registry.heartbeat(node_info("n1"))
    assert (await reaper.run_once()).jobs == []
    assert await store.jobs_of("n1") == [job.id]


async def test_failed_job_error_names_the_node(store: JobStore, registry: NodeRegistry) -> None:
    # A retryable error with attempts left keeps the job, with the failing node to avoid.
    job, _ = await store.enqueue(spec(max_attempts=2))
    await store.claim("n1", lease_ms=LEASE_MS)
    error = JobError(code="comfy_oom", message="CUDA out of memory", retryable=True)
    back = await store.fail(job.id, "n1", error)
    assert (back.status, back.avoid_node, back.error.node_id) == (  # type: ignore[union-attr]
        JobStatus.QUEUED,
        "n1",
        "n1",
    )


async def test_inventories_no_registered_node_has_are_dropped_after_the_keep_time(
    store: JobStore, registry: NodeRegistry, clock: FrozenClock
) -> None:
    """Checked once a minute: an inventory a registered node has stays, even while the
    node is lost; one nobody has goes after the keep time, as does a forgotten node's."""
    minute = INVENTORY_SWEEP_MS
    reaper = Reaper(store, registry, forget_after_ms=minute, inventory_keep_ms=2 * minute)
    inventories = InventoryStore(store.redis, store.keys)
    for digest in ("d-live", "d-gone", "d-nobody"):
        await inventories.publish(digest, {"EmptyImage": {}}, {})
    await registry.heartbeat(node_info("n1", inventory_digest="d-live"))
    await registry.heartbeat(node_info("n2", inventory_digest="d-gone"))

    async def pass_after(step_ms: int) -> set[str]:
        await clock.step(step_ms)
        await registry.heartbeat(node_info("n1", inventory_digest="d-live"))
        await reaper.run_once()
        return await inventories.known()

    assert await pass_after(0) == {"d-live", "d-gone", "d-nobody"}  # d-nobody unused from 0
    assert await pass_after(minute) == {"d-live", "d-gone", "d-nobody"}  # n2 lost
    assert await pass_after(minute) == {"d-live", "d-gone"}  # n2 forgotten: d-gone unused
    assert [n.node_id for n in await registry.all()] == ["n1"]
    assert await pass_after(minute) == {"d-live", "d-gone"}
    assert await pass_after(minute) == {"d-live"}
