from __future__ import annotations

import asyncio

import pytest

from comfyfleet.clock import FrozenClock
from comfyfleet.errors import InvalidTransition, NotFound, NotOwner
from comfyfleet.models.job import JobError, JobErrorCode, JobStatus, OutputRef
from comfyfleet.store.jobs import JobStore

from .conftest import LEASE_MS, StoreFactory, spec

OUT = [OutputRef(index=0, filename="a.png", size=1)]


async def test_renew_moves_the_deadline(store: JobStore, clock: FrozenClock) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n1", lease_ms=LEASE_MS)
    await clock.step(LEASE_MS - 1)
    assert await store.renew(job.id, "n1", lease_ms=LEASE_MS)
    await clock.step(LEASE_MS - 1)
    assert await store.requeue_expired() == []
    renewed = await store.get(job.id)
    assert renewed is not None
    assert renewed.lease_deadline_ms == clock.now_ms() + 1
    assert not await store.renew(job.id, "n2", lease_ms=LEASE_MS)


async def test_expired_lease_is_requeued_with_history(store: JobStore, clock: FrozenClock) -> None:
    job, _ = await store.enqueue(spec())
    later, _ = await store.enqueue(spec())
    await store.claim("n1", lease_ms=LEASE_MS)
    await clock.step(LEASE_MS)
    assert await store.requeue_expired() == [job.id]
    back = await store.get(job.id)
    assert back is not None
    assert back.status is JobStatus.QUEUED
    assert (back.attempts, back.node_id, back.lease_deadline_ms) == (1, None, None)
    (record,) = back.history
    assert (record.outcome, record.node_id, record.attempt) == ("lease_expired", "n1", 1)
    assert record.error is not None
    assert (record.error.code, record.error.retryable) == ("lease_expired", True)
    assert await store.jobs_of("n1") == []
    assert await store.queue_position(job.id) == 0
    assert await store.queue_position(later.id) == 1
    stats = await store.stats()
    assert (stats["expired"], stats["retried"], stats["running"]) == (1, 1, 0)


async def test_late_writes_from_a_reaped_owner_are_refused(
    store: JobStore, clock: FrozenClock
) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("old", lease_ms=LEASE_MS)
    await clock.step(LEASE_MS + 1)
    await store.requeue_expired()
    # Reaped but not yet reclaimed: still not the old owner's job.
    with pytest.raises(NotOwner):
        await store.complete(job.id, "old", OUT)
    await store.claim("new", lease_ms=LEASE_MS)

    with pytest.raises(NotOwner):
        await store.complete(job.id, "old", OUT)
    with pytest.raises(NotOwner):
        await store.fail(
            job.id, "old", JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="late")
        )
    with pytest.raises(NotOwner):
        await store.release(job.id, "old")
    with pytest.raises(NotOwner):
        await store.finish_cancelled(job.id, "old")
    assert not await store.renew(job.id, "old", lease_ms=LEASE_MS)

    current = await store.get(job.id)
    assert current is not None
    assert (current.status, current.node_id, current.attempts) == (JobStatus.RUNNING, "new", 2)
    done = await store.complete(job.id, "new", OUT)
    assert done.outputs == OUT
    # After the end, even the owner cannot write again, and the outcome stays.
    with pytest.raises(InvalidTransition):
        await store.complete(job.id, "new", [])
    with pytest.raises(InvalidTransition):
        await store.fail(
            job.id, "old", JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="late")
        )
    assert not await store.renew(job.id, "new", lease_ms=LEASE_MS)
    final = await store.get(job.id)
    assert final is not None
    assert (final.status, final.outputs) == (JobStatus.SUCCEEDED, OUT)


async def test_writes_to_unknown_job_are_not_found(store: JobStore) -> None:
    with pytest.raises(NotFound):
        await store.complete("nope", "n", OUT)
    with pytest.raises(NotFound):
        await store.fail("nope", "n", JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="y"))
    with pytest.raises(NotFound):
        await store.cancel("nope")


async def test_two_reapers_racing_requeue_each_job_once(
    make_store: StoreFactory, clock: FrozenClock
) -> None:
    store = await make_store()
    ids = [(await store.enqueue(spec()))[0].id for _ in range(60)]
    await store.claim("n", capacity=60, lease_ms=LEASE_MS)
    await clock.step(LEASE_MS)
    reapers = [await make_store() for _ in range(2)]

    async def reap(reaper: JobStore) -> list[str]:
        out: list[str] = []
        while batch := await reaper.requeue_expired(limit=7):
            out += batch
        return out

    a, b = await asyncio.gather(*(reap(r) for r in reapers))
    assert sorted(a + b) == sorted(ids)
    assert not set(a) & set(b)
    assert await store.queue_depth() == 60
    for job_id in ids:
        job = await store.get(job_id)
        assert job is not None
        assert len(job.history) == 1
    assert (await store.stats())["expired"] == 60


async def test_lease_expiry_with_attempts_used_up_fails(
    store: JobStore, clock: FrozenClock
) -> None:
    job, _ = await store.enqueue(spec(max_attempts=2))
    for _ in range(2):
        await store.claim("n", lease_ms=LEASE_MS)
        await clock.step(LEASE_MS)
        assert await store.requeue_expired() == [job.id]
    failed = await store.get(job.id)
    assert failed is not None
    assert failed.status is JobStatus.FAILED
    assert failed.finished_ms == clock.now_ms()
    assert failed.error is not None
    assert failed.error.code == "lease_expired"
    assert [r.outcome for r in failed.history] == ["lease_expired", "lease_expired"]
    assert await store.queue_depth() == 0


async def test_finished_job_expires_after_retention(
    make_store: StoreFactory,
) -> None:
    store = await make_store(retention_ms=60_000)
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    await store.complete(job.id, "n", OUT)
    assert 0 < await store.redis.pttl(store.keys.job(job.id)) <= 60_000
    assert 0 < await store.redis.pttl(store.keys.events(job.id)) <= 60_000


async def test_a_write_about_an_old_attempt_cannot_settle_the_new_one(
    store: JobStore, clock: FrozenClock
) -> None:
    # The node loses its lease, the job comes back, and the same node claims it again: a
    # late write about the first attempt names that attempt and is refused.
    job, _ = await store.enqueue(spec(max_attempts=3))
    (first,) = await store.claim("n1", lease_ms=LEASE_MS)
    await clock.step(LEASE_MS)
    assert await store.requeue_expired() == [job.id]
    (second,) = await store.claim("n1", lease_ms=LEASE_MS)
    assert (first.attempts, second.attempts) == (1, 2)
    with pytest.raises(NotOwner):
        await store.fail(job.id, "n1", FLAKY_LATE, attempt=first.attempts)
    assert not await store.renew(job.id, "n1", lease_ms=LEASE_MS, attempt=first.attempts)
    done = await store.complete(job.id, "n1", [], attempt=second.attempts)
    assert done.status is JobStatus.SUCCEEDED


FLAKY_LATE = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="late", retryable=True)
