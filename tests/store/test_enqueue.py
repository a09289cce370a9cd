from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from comfyfleet.clock import FrozenClock
from comfyfleet.errors import Conflict, ValidationFailed
from comfyfleet.models.job import (
    MAX_PRIORITY,
    AttemptRecord,
    Job,
    JobError,
    JobErrorCode,
    JobSpec,
    JobStatus,
    OutputRef,
)
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys

from .conftest import LEASE_MS, StoreFactory, spec


async def test_enqueue_creates_a_queued_job(store: JobStore, clock: FrozenClock) -> None:
    job, created = await store.enqueue(spec(priority=5, pool="gpu", metadata={"a": "b"}))
    assert created
    assert job.status is JobStatus.QUEUED
    assert job.created_ms == job.updated_ms == clock.now_ms()
    assert job.seq == 1
    assert (job.priority, job.pool, job.metadata) == (5, "gpu", {"a": "b"})
    assert await store.get(job.id) == job
    assert await store.queue_depth("gpu") == 1
    assert (await store.stats())["enqueued"] == 1


async def test_idempotent_enqueue_under_concurrent_duplicates(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(5)]
    results = await asyncio.gather(
        *(stores[i % 5].enqueue(spec(), idempotency_key="same") for i in range(50))
    )
    assert len({job.id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await stores[0].queue_depth() == 1
    assert (await stores[0].stats())["enqueued"] == 1


async def test_different_idempotency_keys_make_different_jobs(store: JobStore) -> None:
    a, _ = await store.enqueue(spec(), idempotency_key="a")
    b, _ = await store.enqueue(spec(), idempotency_key="b")
    again, created = await store.enqueue(spec(), idempotency_key="a")
    assert a.id != b.id
    assert (again.id, created) == (a.id, False)


async def test_expired_job_frees_its_idempotency_key(
    store: JobStore, keys: Keys, redis_client: aioredis.Redis
) -> None:
    first, _ = await store.enqueue(spec(), idempotency_key="k")
    await redis_client.delete(keys.job(first.id))  # as the retention TTL would
    second, created = await store.enqueue(spec(), idempotency_key="k")
    assert created
    assert second.id != first.id


async def test_taken_job_id_is_a_conflict(store: JobStore) -> None:
    await store.enqueue(spec(), job_id="mine")
    with pytest.raises(Conflict):
        await store.enqueue(spec(), job_id="mine")


@pytest.mark.parametrize("priority", [MAX_PRIORITY + 1, -1000])
async def test_priority_out_of_range_is_refused(store: JobStore, priority: int) -> None:
    bad = JobSpec.model_construct(**{**spec().model_dump(), "priority": priority})
    with pytest.raises(ValidationFailed, match="priority"):
        await store.enqueue(bad)
    assert await store.queue_depth() == 0


async def test_bad_job_id_is_refused(store: JobStore) -> None:
    with pytest.raises(ValidationFailed):
        await store.enqueue(spec(), job_id="has space")


async def test_every_job_field_round_trips(store: JobStore, clock: FrozenClock) -> None:
    full = JobSpec(
        graph={"3": {"class_type": "KSampler", "inputs": {"seed": 5, "cfg": 7.5}}},
        workflow="txt2img",
        workflow_version="abc123",
        params={"prompt": "a cat", "steps": 20, "tags": [], "nested": {}},
        priority=-7,
        pool="big",
        max_attempts=2,
        timeout_ms=60_000,
        webhook_url="http://hook.example/x",
        metadata={"user": "u1"},
    )
    job, _ = await store.enqueue(full, idempotency_key="idem-1")
    (claimed,) = await store.claim("n1", pools=["big"], lease_ms=LEASE_MS)
    error = JobError(
        code=JobErrorCode.COMFY_OOM,
        message="boom",
        retryable=True,
        comfy_node_id="3",
        comfy_node_type="KSampler",
        details={"trace": ["a"], "empty": []},
    )
    await clock.step(10)
    await store.fail(job.id, "n1", error)
    await clock.step(10)
    await store.claim("n1", pools=["big"], lease_ms=LEASE_MS)
    await clock.step(10)
    output = OutputRef(index=0, filename="a.png", size=10, node_id="9", sha256="ff")
    done = await store.complete(job.id, "n1", [output])

    assert done == await store.get(job.id)
    assert Job.from_fields(done.to_fields(), done.id) == done
    expected = Job(
        id=job.id,
        status=JobStatus.SUCCEEDED,
        workflow="txt2img",
        workflow_version="abc123",
        params=full.params,
        graph=full.graph,
        priority=-7,
        pool="big",
        seq=1,
        attempts=2,
        max_attempts=2,
        timeout_ms=60_000,
        created_ms=job.created_ms,
        updated_ms=job.created_ms + 30,
        started_ms=job.created_ms + 20,
        finished_ms=job.created_ms + 30,
        not_before_ms=None,
        node_id="n1",
        lease_deadline_ms=None,
        avoid_node="n1",  # its first attempt failed there with a retryable error
        cancel_requested=False,
        idempotency_key="idem-1",
        webhook_url="http://hook.example/x",
        metadata={"user": "u1"},
        outputs=[output],
        error=None,
        history=[
            AttemptRecord(
                attempt=1,
                node_id="n1",
                started_ms=claimed.started_ms or 0,
                ended_ms=job.created_ms + 10,
                outcome="failed",
                error=error.model_copy(update={"node_id": "n1"}),
            ),
            AttemptRecord(
                attempt=2,
                node_id="n1",
                started_ms=job.created_ms + 20,
                ended_ms=job.created_ms + 30,
                outcome="succeeded",
            ),
        ],
    )
    assert done == expected
