"""Store-level guarantees under faults, stepped with a frozen clock: a retried job avoids the
node that failed it while another can take it; a lost node's jobs come back at once; the
queue bound holds under racing submits; cancel racing completion ends exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest

from comfyfleet.clock import FrozenClock
from comfyfleet.errors import InvalidTransition, NotOwner
from comfyfleet.models.job import JobError, JobStatus, OutputRef
from comfyfleet.models.node import NodeState
from comfyfleet.store.jobs import CLAIM_SCAN, JobStore, QueueFull
from comfyfleet.store.nodes import NodeRegistry

from .conftest import LEASE_MS, StoreFactory, node_info, spec

NODE_FAULT = JobError(code="comfy_lost", message="ComfyUI restarted", retryable=True)
OUT = [OutputRef(index=0, filename="a.png", size=1)]


async def _ready(registry: NodeRegistry, *node_ids: str) -> None:
    for node_id in node_ids:
        await registry.heartbeat(node_info(node_id))


async def test_retry_avoids_the_failing_node_while_another_is_ready(
    store: JobStore, registry: NodeRegistry
) -> None:
    await _ready(registry, "n1", "n2")
    job, _ = await store.enqueue(spec())
    await store.claim("n1", lease_ms=LEASE_MS)
    failed = await store.fail(job.id, "n1", NODE_FAULT)
    assert (failed.status, failed.avoid_node) == (JobStatus.QUEUED, "n1")
    assert await store.claim("n1", lease_ms=LEASE_MS) == []
    (again,) = await store.claim("n2", lease_ms=LEASE_MS)
    assert (again.id, again.attempts) == (job.id, 2)


async def test_retry_returns_to_the_failing_node_when_no_other_is_ready(
    store: JobStore, registry: NodeRegistry, clock: FrozenClock
) -> None:
    await _ready(registry, "n1", "n2")
    await registry.heartbeat(node_info("n3", NodeState.DRAINING))
    job, _ = await store.enqueue(spec())
    await store.claim("n1", lease_ms=LEASE_MS)
    await store.fail(job.id, "n1", NODE_FAULT)
    await clock.step(registry.lost_after_ms + 1)  # n2's readiness is now stale
    await _ready(registry, "n1")
    (again,) = await store.claim("n1", lease_ms=LEASE_MS)
    assert again.id == job.id


async def test_avoided_job_does_not_block_the_jobs_behind_it(
    store: JobStore, registry: NodeRegistry
) -> None:
    await _ready(registry, "n1", "n2")
    avoided = []
    for _ in range(CLAIM_SCAN - 1):
        job, _ = await store.enqueue(spec())
        avoided.append(job.id)
    later, _ = await store.enqueue(spec())
    for _ in avoided:
        (got,) = await store.claim("n1", lease_ms=LEASE_MS)
        await store.fail(got.id, "n1", NODE_FAULT)
    (got,) = await store.claim("n1", lease_ms=LEASE_MS)
    assert got.id == later.id
    taken = await store.claim("n2", capacity=len(avoided), lease_ms=LEASE_MS)
    assert [j.id for j in taken] == avoided  # still in their order


async def test_lease_expiry_also_avoids_the_node(
    store: JobStore, registry: NodeRegistry, clock: FrozenClock
) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n1", lease_ms=LEASE_MS)
    await clock.step(LEASE_MS)
    assert await store.requeue_expired() == [job.id]
    await _ready(registry, "n1", "n2")
    assert await store.claim("n1", lease_ms=LEASE_MS) == []
    assert [j.id for j in await store.claim("n2", lease_ms=LEASE_MS)] == [job.id]


async def test_lost_node_jobs_come_back_before_their_leases_expire(
    store: JobStore, registry: NodeRegistry, clock: FrozenClock
) -> None:
    await _ready(registry, "n1", "n2")
    a, _ = await store.enqueue(spec())
    b, _ = await store.enqueue(spec(max_attempts=1))
    await store.claim("n1", capacity=2, lease_ms=LEASE_MS)
    await clock.step(registry.lost_after_ms + 1)
    await _ready(registry, "n2")
    assert await registry.lost_nodes() == ["n1"]
    marked, ids = await store.reap_node("n1", lost_after_ms=registry.lost_after_ms)
    assert marked
    assert sorted(ids) == sorted([a.id, b.id])
    requeued, failed = await store.get(a.id), await store.get(b.id)
    assert requeued is not None
    assert failed is not None
    assert (requeued.status, requeued.avoid_node) == (JobStatus.QUEUED, "n1")
    assert [r.outcome for r in requeued.history] == ["node_lost"]
    # Out of attempts: failed, with the history saying why.
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "node_lost"
    assert await store.jobs_of("n1") == []
    assert await registry.marked_lost() == {"n1": clock.now_ms()}
    # The lost node's late writes are refused.
    with pytest.raises(NotOwner):
        await store.complete(a.id, "n1", OUT)
    with pytest.raises(InvalidTransition):
        await store.complete(b.id, "n1", OUT)


async def test_concurrent_reapers_mark_a_lost_node_once(
    make_store: StoreFactory, registry: NodeRegistry, clock: FrozenClock
) -> None:
    stores = [await make_store() for _ in range(5)]
    await _ready(registry, "n1")
    ids = [(await stores[0].enqueue(spec()))[0].id for _ in range(20)]
    await stores[0].claim("n1", capacity=20, lease_ms=LEASE_MS)
    await clock.step(registry.lost_after_ms + 1)
    lost_after = registry.lost_after_ms
    results = await asyncio.gather(*(s.reap_node("n1", lost_after_ms=lost_after) for s in stores))
    assert sum(marked for marked, _ in results) == 1
    taken = Counter(job_id for _, got in results for job_id in got)
    assert sorted(taken) == sorted(ids)
    assert set(taken.values()) == {1}


async def test_a_node_that_beat_again_keeps_its_jobs(
    store: JobStore, registry: NodeRegistry, clock: FrozenClock
) -> None:
    await _ready(registry, "n1")
    job, _ = await store.enqueue(spec())
    await store.claim("n1", lease_ms=LEASE_MS)
    await clock.step(registry.lost_after_ms + 1)
    assert await registry.lost_nodes() == ["n1"]  # read by a reaper ...
    await _ready(registry, "n1")  # ... then the node's heartbeat lands
    assert await store.reap_node("n1", lost_after_ms=registry.lost_after_ms) == (False, [])
    assert await store.jobs_of("n1") == [job.id]


async def test_queue_bound_holds_under_racing_submits(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(10)]

    async def submit(store: JobStore, i: int) -> bool:
        try:
            await store.enqueue(spec(), idempotency_key=f"k{i}", queue_limit=20)
        except QueueFull:
            return False
        return True

    accepted = await asyncio.gather(*(submit(stores[i % 10], i) for i in range(100)))
    assert sum(accepted) == 20
    assert await stores[0].queue_depth() == 20
    # A replay of an accepted submit is still answered; a new one is refused.
    first = accepted.index(True)
    _job, created = await stores[0].enqueue(spec(), idempotency_key=f"k{first}", queue_limit=20)
    assert not created
    with pytest.raises(QueueFull) as refused:
        await stores[0].enqueue(spec(), queue_limit=20)
    assert (refused.value.status, refused.value.code) == (429, "queue-full")


async def test_retries_are_never_refused_by_the_bound(store: JobStore) -> None:
    job, _ = await store.enqueue(spec(), queue_limit=1)
    await store.claim("n1", lease_ms=LEASE_MS)
    await store.enqueue(spec(), queue_limit=1)  # the queue is at its bound again
    back = await store.fail(job.id, "n1", NODE_FAULT)
    assert back.status is JobStatus.QUEUED
    assert await store.queue_depth() == 2


async def test_cancel_racing_completion_ends_exactly_once(
    make_store: StoreFactory, clock: FrozenClock
) -> None:
    node, client = await make_store(), await make_store()
    jobs = [(await client.enqueue(spec()))[0] for _ in range(40)]
    await node.claim("n1", capacity=40, lease_ms=LEASE_MS)

    async def finish(job_id: str) -> None:
        with contextlib.suppress(InvalidTransition):
            await node.complete(job_id, "n1", OUT)

    async def cancel_then_finish(job_id: str) -> None:
        await client.cancel(job_id)
        with contextlib.suppress(InvalidTransition):  # the node, seeing the cancel
            await node.finish_cancelled(job_id, "n1")

    await asyncio.gather(*(f(j.id) for j in jobs for f in (finish, cancel_then_finish)))
    for job in jobs:
        done = await client.get(job.id)
        assert done is not None
        assert done.is_terminal
        events = await client.events(job.id, count=100)
        ends = [e for _, e in events if e["type"] == "state" and e["status"] != "running"]
        ends = [e for e in ends if e["status"] != "queued"]
        assert [e["status"] for e in ends] == [done.status.value], job.id
        assert (done.outputs == OUT) == (done.status is JobStatus.SUCCEEDED)
