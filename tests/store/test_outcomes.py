from __future__ import annotations

import pytest

from comfyfleet.clock import FrozenClock
from comfyfleet.errors import InvalidTransition
from comfyfleet.models.job import JobError, JobErrorCode, JobStatus, OutputRef
from comfyfleet.store.jobs import JobStore

from .conftest import LEASE_MS, spec

FLAKY = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="down", retryable=True)
BROKEN = JobError(code=JobErrorCode.EXECUTION_ERROR, message="bad node", retryable=False)


async def test_complete_records_outputs_once(store: JobStore, clock: FrozenClock) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    await clock.step(100)
    outputs = [OutputRef(index=i, filename=f"{i}.png", size=i + 1) for i in range(2)]
    done = await store.complete(job.id, "n", outputs)
    assert done.status is JobStatus.SUCCEEDED
    assert done.outputs == outputs
    assert done.finished_ms == done.updated_ms == clock.now_ms()
    assert [r.outcome for r in done.history] == ["succeeded"]
    assert await store.jobs_of("n") == []
    with pytest.raises(InvalidTransition):
        await store.complete(job.id, "n", [])
    stats = await store.stats()
    assert (stats["succeeded"], stats["running"]) == (1, 0)


async def test_retryable_failure_requeues_with_history(store: JobStore) -> None:
    job, _ = await store.enqueue(spec(max_attempts=3))
    await store.claim("n", lease_ms=LEASE_MS)
    back = await store.fail(job.id, "n", FLAKY)
    assert back.status is JobStatus.QUEUED
    assert back.attempts == 1
    assert back.node_id is None
    assert back.error is not None
    assert back.error.code == FLAKY.code
    (record,) = back.history
    assert (record.attempt, record.outcome, record.node_id) == (1, "failed", "n")
    assert record.error is not None
    assert record.error.node_id == "n"
    (again,) = await store.claim("n", lease_ms=LEASE_MS)
    assert again.attempts == 2
    assert (await store.stats())["retried"] == 1


async def test_exhausting_attempts_fails_with_full_history(store: JobStore) -> None:
    job, _ = await store.enqueue(spec(max_attempts=3))
    for attempt in range(1, 4):
        (claimed,) = await store.claim(f"n{attempt}", lease_ms=LEASE_MS)
        assert claimed.attempts == attempt
        last = await store.fail(job.id, f"n{attempt}", FLAKY)
    assert last.status is JobStatus.FAILED
    assert [(r.attempt, r.node_id) for r in last.history] == [(1, "n1"), (2, "n2"), (3, "n3")]
    assert all(r.outcome == "failed" for r in last.history)
    assert last.finished_ms is not None
    assert await store.queue_depth() == 0
    assert (await store.stats())["failed"] == 1


async def test_permanent_error_fails_at_once(store: JobStore) -> None:
    job, _ = await store.enqueue(spec(max_attempts=5))
    await store.claim("n", lease_ms=LEASE_MS)
    failed = await store.fail(job.id, "n", BROKEN)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "execution_error"
    assert len(failed.history) == 1


async def test_backoff_delays_the_retry(store: JobStore, clock: FrozenClock) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    back = await store.fail(job.id, "n", FLAKY, backoff_ms=5_000)
    assert back.status is JobStatus.QUEUED
    assert back.not_before_ms == clock.now_ms() + 5_000
    assert await store.queue_position(job.id) is None
    assert (await store.stats())["delayed"] == 1

    await clock.step(4_999)
    assert await store.claim("n", lease_ms=LEASE_MS) == []
    await clock.step(1)
    (again,) = await store.claim("n", lease_ms=LEASE_MS)
    assert again.id == job.id
    assert again.not_before_ms is None
    assert (await store.stats())["delayed"] == 0


async def test_backed_off_job_keeps_its_place(store: JobStore, clock: FrozenClock) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    await store.fail(job.id, "n", FLAKY, backoff_ms=1_000)
    later, _ = await store.enqueue(spec())
    await clock.step(1_000)
    # The reaper promotes due jobs too, so they show up in the queue before any claim.
    assert await store.requeue_expired() == []
    assert await store.queue_position(job.id) == 0
    got = await store.claim("n", capacity=2, lease_ms=LEASE_MS)
    assert [j.id for j in got] == [job.id, later.id]
