from __future__ import annotations

import asyncio
from collections import Counter

from comfyfleet.clock import FrozenClock
from comfyfleet.models.job import JobError, JobErrorCode, JobStatus
from comfyfleet.store.jobs import JobStore

from .conftest import LEASE_MS, StoreFactory, spec


async def test_claim_records_owner_lease_and_attempt(store: JobStore, clock: FrozenClock) -> None:
    job, _ = await store.enqueue(spec())
    await clock.step(5)
    (got,) = await store.claim("n1", lease_ms=LEASE_MS)
    assert got.id == job.id
    assert got.status is JobStatus.RUNNING
    assert got.node_id == "n1"
    assert got.attempts == 1
    assert got.started_ms == got.updated_ms == clock.now_ms()
    assert got.lease_deadline_ms == clock.now_ms() + LEASE_MS
    assert await store.get(job.id) == got
    assert await store.jobs_of("n1") == [job.id]
    assert await store.claim("n2", lease_ms=LEASE_MS) == []
    stats = await store.stats()
    assert (stats["claimed"], stats["running"]) == (1, 1)


async def test_many_claimers_take_each_job_exactly_once(make_store: StoreFactory) -> None:
    producer = await make_store()
    ids = {(await producer.enqueue(spec()))[0].id for _ in range(200)}
    claimers = [await make_store() for _ in range(20)]

    async def drain(store: JobStore, node: str) -> list[str]:
        mine: list[str] = []
        while batch := await store.claim(node, capacity=3, lease_ms=LEASE_MS):
            mine += [job.id for job in batch]
        return mine

    results = await asyncio.gather(*(drain(s, f"n{i}") for i, s in enumerate(claimers)))
    counts = Counter(job_id for mine in results for job_id in mine)
    assert set(counts) == ids
    assert set(counts.values()) == {1}
    assert await producer.queue_depth() == 0
    for i, mine in enumerate(results):
        assert sorted(mine) == await producer.jobs_of(f"n{i}")


async def test_priority_then_fifo(store: JobStore) -> None:
    low1, _ = await store.enqueue(spec(priority=-5))
    mid1, _ = await store.enqueue(spec())
    high, _ = await store.enqueue(spec(priority=10))
    mid2, _ = await store.enqueue(spec())
    low2, _ = await store.enqueue(spec(priority=-5))
    got = await store.claim("n", capacity=10, lease_ms=LEASE_MS)
    assert [j.id for j in got] == [high.id, mid1.id, mid2.id, low1.id, low2.id]


async def test_claim_across_pools_keeps_global_order(store: JobStore) -> None:
    a1, _ = await store.enqueue(spec(pool="a"))
    b1, _ = await store.enqueue(spec(pool="b", priority=1))
    a2, _ = await store.enqueue(spec(pool="a"))
    c1, _ = await store.enqueue(spec(pool="c", priority=50))
    got = await store.claim("n", pools=["a", "b"], capacity=10, lease_ms=LEASE_MS)
    assert [j.id for j in got] == [b1.id, a1.id, a2.id]
    assert await store.queue_depth("c") == 1
    assert await store.queue_position(c1.id) == 0


async def test_capacity_limits_a_claim(store: JobStore) -> None:
    for _ in range(5):
        await store.enqueue(spec())
    assert len(await store.claim("n", capacity=2, lease_ms=LEASE_MS)) == 2
    assert await store.queue_depth() == 3
    assert await store.claim("n", capacity=0, lease_ms=LEASE_MS) == []


async def test_retried_job_keeps_its_place_ahead_of_later_ones(store: JobStore) -> None:
    first, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    later = [(await store.enqueue(spec()))[0].id for _ in range(3)]
    error = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="flaky", retryable=True)
    requeued = await store.fail(first.id, "n", error)
    assert requeued.status is JobStatus.QUEUED
    assert await store.queue_position(first.id) == 0
    got = await store.claim("n", capacity=10, lease_ms=LEASE_MS)
    assert [j.id for j in got] == [first.id, *later]


async def test_released_job_keeps_its_place_and_attempt_is_not_counted(
    store: JobStore,
) -> None:
    first, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    later, _ = await store.enqueue(spec())
    back = await store.release(first.id, "n")
    assert back.status is JobStatus.QUEUED
    assert (back.attempts, back.history, back.node_id, back.started_ms) == (0, [], None, None)
    assert await store.jobs_of("n") == []
    got = await store.claim("m", capacity=2, lease_ms=LEASE_MS)
    assert [j.id for j in got] == [first.id, later.id]
    assert got[0].attempts == 1


async def test_queue_position(store: JobStore) -> None:
    a, _ = await store.enqueue(spec())
    b, _ = await store.enqueue(spec())
    c, _ = await store.enqueue(spec(priority=1))
    assert [await store.queue_position(j.id) for j in (c, a, b)] == [0, 1, 2]
    await store.claim("n", lease_ms=LEASE_MS)
    assert await store.queue_position(c.id) is None
    assert await store.queue_position(a.id) == 0
    assert await store.queue_position("nope") is None


async def test_enqueue_answers_the_position_it_placed_the_job_at(store: JobStore) -> None:
    first = await store.enqueue_placed(spec())
    second = await store.enqueue_placed(spec())
    urgent = await store.enqueue_placed(spec(priority=1), idempotency_key="k")
    assert [p.queue_position for p in (first, second, urgent)] == [0, 1, 0]
    assert await store.queue_position(second.job.id) == 2  # the urgent one went ahead
    replay = await store.enqueue_placed(spec(priority=1), idempotency_key="k")
    assert (replay.created, replay.job.id, replay.queue_position) == (False, urgent.job.id, None)


async def test_stale_queue_entry_is_dropped_and_counted(store: JobStore) -> None:
    await store.redis.zadd(store.keys.queue("default", "any", "admin"), {"ghost": 0})
    real, _ = await store.enqueue(spec())
    got = await store.claim("n", capacity=2, lease_ms=LEASE_MS)
    assert [j.id for j in got] == [real.id]
    assert (await store.stats())["stale"] == 1
