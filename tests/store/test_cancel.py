from __future__ import annotations

import pytest

from comfyfleet.clock import FrozenClock
from comfyfleet.errors import InvalidTransition, NotOwner
from comfyfleet.models.job import JobError, JobErrorCode, JobStatus, OutputRef
from comfyfleet.store.jobs import JobStore

from .conftest import LEASE_MS, spec

FLAKY = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="flaky", retryable=True)


async def test_cancel_queued_job(store: JobStore, clock: FrozenClock) -> None:
    job, _ = await store.enqueue(spec())
    cancelled = await store.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.finished_ms == clock.now_ms()
    assert await store.queue_depth() == 0
    assert await store.claim("n", lease_ms=LEASE_MS) == []
    assert (await store.stats())["cancelled"] == 1


async def test_cancel_job_waiting_out_a_backoff(store: JobStore, clock: FrozenClock) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    await store.fail(job.id, "n", FLAKY, backoff_ms=1_000)
    cancelled = await store.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.not_before_ms is None
    await clock.step(2_000)
    assert await store.claim("n", lease_ms=LEASE_MS) == []
    assert (await store.stats())["delayed"] == 0


async def test_cancel_running_job_is_a_request_until_the_owner_finishes(
    store: JobStore,
) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    pubsub = store.redis.pubsub()
    await pubsub.subscribe(store.keys.cancel_channel)
    await pubsub.get_message(timeout=5)  # the subscribe confirmation

    requested = await store.cancel(job.id)
    assert requested.status is JobStatus.RUNNING
    assert requested.cancel_requested
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    await pubsub.aclose()
    assert message is not None
    assert message["data"] == job.id.encode()

    with pytest.raises(NotOwner):
        await store.finish_cancelled(job.id, "other")
    done = await store.finish_cancelled(job.id, "n")
    assert done.status is JobStatus.CANCELLED
    assert [r.outcome for r in done.history] == ["cancelled"]
    assert await store.jobs_of("n") == []
    with pytest.raises(InvalidTransition):
        await store.finish_cancelled(job.id, "n")


async def test_cancel_requested_job_is_not_retried(store: JobStore) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    await store.cancel(job.id)
    ended = await store.fail(job.id, "n", FLAKY)
    assert ended.status is JobStatus.CANCELLED
    assert await store.queue_depth() == 0


async def test_cancel_requested_job_released_ends_cancelled(store: JobStore) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    await store.cancel(job.id)
    assert (await store.release(job.id, "n")).status is JobStatus.CANCELLED


async def test_cancel_terminal_job_is_a_no_op(store: JobStore) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    done = await store.complete(job.id, "n", [OutputRef(index=0, filename="a", size=1)])
    assert await store.cancel(job.id) == done
    assert (await store.stats())["cancelled"] == 0
