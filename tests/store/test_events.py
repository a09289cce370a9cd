from __future__ import annotations

import asyncio

import pytest

from comfyfleet.clock import FrozenClock
from comfyfleet.errors import NotFound
from comfyfleet.models.job import JobError, JobErrorCode, JobStatus, OutputRef
from comfyfleet.store.jobs import JobStore

from .conftest import LEASE_MS, StoreFactory, spec

# Generous bound for "returned early": far below the waits' timeouts, far above any latency.
EARLY_S = 10.0


async def test_state_changes_are_logged_in_order(store: JobStore, clock: FrozenClock) -> None:
    job, _ = await store.enqueue(spec(max_attempts=2))
    await store.claim("n", lease_ms=LEASE_MS)
    await store.renew(job.id, "n", lease_ms=LEASE_MS)
    await store.fail(
        job.id, "n", JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="y", retryable=True)
    )
    await store.claim("n", lease_ms=LEASE_MS)
    await store.append_event(job.id, "progress", {"value": 3, "max": 10})
    await store.complete(job.id, "n", [OutputRef(index=0, filename="a.png", size=1)])

    events = [e for _, e in await store.events(job.id)]
    assert [(e["type"], e.get("status")) for e in events] == [
        ("state", "queued"),
        ("state", "running"),
        ("lease", None),
        ("state", "queued"),
        ("state", "running"),
        ("progress", None),
        ("state", "succeeded"),
    ]
    assert events[1] == {
        "type": "state",
        "status": "running",
        "node_id": "n",
        "attempt": 1,
        "lease_deadline_ms": clock.now_ms() + LEASE_MS,
        "at_ms": clock.now_ms(),
    }
    assert events[3]["error"]["code"] == "comfy_unavailable"
    assert events[5] == {"type": "progress", "value": 3, "max": 10}
    assert events[6]["outputs"][0]["filename"] == "a.png"
    assert await store.last_event(job.id, "progress") == events[5]
    assert await store.last_event(job.id, "preview") is None


async def test_events_replay_from_an_id(store: JobStore) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)  # nodes append to the jobs they hold
    ids = [await store.append_event(job.id, "progress", {"value": i}) for i in range(5)]
    after = await store.events(job.id, after=ids[1])
    assert [i for i, _ in after] == ids[2:]
    assert [e["value"] for _, e in after] == [2, 3, 4]
    page = await store.events(job.id, after="0", count=3)
    assert [e["type"] for _, e in page] == ["state", "state", "progress"]
    assert await store.events(job.id, after=ids[-1]) == []


async def test_event_log_is_capped(make_store: StoreFactory) -> None:
    store = await make_store(events_maxlen=10)
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)
    for i in range(1_000):
        last_id = await store.append_event(job.id, "progress", {"value": i})
    length = await store.redis.xlen(store.keys.events(job.id))
    # MAXLEN ~ trims whole stream nodes (100 entries by default), so the cap is approximate.
    assert length < 200
    events = await store.events(job.id, count=1_000)
    assert events[-1][0] == last_id
    assert events[0][1]["type"] == "progress"  # the state events were trimmed away


async def test_event_for_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFound):
        await store.append_event("nope", "progress", {})
    assert not await store.redis.exists(store.keys.events("nope"))


async def test_blocking_read_wakes_on_a_new_event(make_store: StoreFactory) -> None:
    reader, writer = await make_store(), await make_store()
    job, _ = await writer.enqueue(spec())
    await writer.claim("n", lease_ms=LEASE_MS)
    *_, (first_id, _) = await reader.events(job.id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    read = asyncio.create_task(reader.events(job.id, after=first_id, block_ms=60_000))
    new_id = await writer.append_event(job.id, "progress", {"value": 1})
    got = await read
    assert [i for i, _ in got] == [new_id]
    assert loop.time() - started < EARLY_S


async def test_a_blocking_read_brings_the_job_as_it_is_after_the_events(
    make_store: StoreFactory,
) -> None:
    reader, writer = await make_store(), await make_store()
    job, _ = await writer.enqueue(spec())
    after = f"{job.created_ms}-0"  # the id of its queued event, as a fresh submit knows
    read = asyncio.create_task(reader.events_and_job(job.id, after=after, block_ms=60_000))
    await writer.claim("n", lease_ms=LEASE_MS)
    events, seen = await read
    assert [e["status"] for _, e in events] == ["running"]
    assert seen is not None
    assert seen.status is JobStatus.RUNNING
    await writer.complete(job.id, "n", [])
    events, seen = await reader.events_and_job(job.id, after=events[-1][0], block_ms=60_000)
    assert [e["status"] for _, e in events] == ["succeeded"]
    assert seen is not None
    assert seen.status is JobStatus.SUCCEEDED
    # Nothing new: after the timeout, no events and the job as it is.
    assert await reader.events_and_job(job.id, after=events[-1][0], block_ms=20) == ([], seen)
    assert await reader.events_and_job("nope", after="1-0", block_ms=20) == ([], None)


async def test_blocking_read_times_out_empty(store: JobStore) -> None:
    job, _ = await store.enqueue(spec())
    ((first_id, _),) = await store.events(job.id)
    assert await store.events(job.id, after=first_id, block_ms=20) == []


async def test_wait_for_work_wakes_on_enqueue_from_another_connection(
    make_store: StoreFactory,
) -> None:
    node, balancer = await make_store(), await make_store()
    assert await node.listen_for_work(timeout_s=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.create_task(node.wait_for_work(60))
    job, _ = await balancer.enqueue(spec())
    assert await waiting
    assert loop.time() - started < EARLY_S
    # The hint followed the enqueue: the job is there to claim.
    (claimed,) = await node.claim("n", lease_ms=LEASE_MS)
    assert claimed.id == job.id


async def test_wait_for_work_times_out_without_a_hint(store: JobStore) -> None:
    assert not await store.wait_for_work(0.05)


async def test_wait_for_work_wakes_on_release_and_requeue(
    make_store: StoreFactory, clock: FrozenClock
) -> None:
    node, other = await make_store(), await make_store()
    # Enqueued before the node listens: that hint cannot reach it.
    job, _ = await other.enqueue(spec())
    assert await node.listen_for_work(timeout_s=30)
    await other.claim("n", lease_ms=LEASE_MS)
    await other.release(job.id, "n")
    assert await node.wait_for_work(60)
    await other.claim("n", lease_ms=LEASE_MS)
    await clock.step(LEASE_MS)
    assert await other.requeue_expired() == [job.id]
    assert await node.wait_for_work(60)


async def test_a_hint_that_came_between_waits_is_kept(make_store: StoreFactory) -> None:
    node, other = await make_store(), await make_store()
    assert await node.listen_for_work(timeout_s=30)
    await other.enqueue(spec())
    assert await node.wait_for_work(60)  # the hint, however late it lands
    # Consumed: the next wait needs a new hint.
    assert not await node.wait_for_work(0)


async def test_a_queued_job_has_no_log_yet_and_readers_see_its_queued_event(
    make_store: StoreFactory,
) -> None:
    reader, writer = await make_store(), await make_store()
    job, _ = await writer.enqueue(spec())
    # An empty stream costs kilobytes per queued job: the log opens with the next event.
    assert not await writer.redis.exists(writer.keys.events(job.id))
    (shown,) = await reader.events(job.id)
    assert shown == (f"{job.created_ms}-0", {"type": "state", "status": "queued",
                     "pool": job.pool, "priority": job.priority, "seq": shown[1]["seq"],
                     "at_ms": job.created_ms})  # fmt: skip
    # A reader blocked past that event wakes when the claim opens the log...
    read = asyncio.create_task(reader.events(job.id, after=shown[0], block_ms=60_000))
    await writer.claim("n", lease_ms=LEASE_MS)
    ((_, running),) = await read
    assert running["status"] == "running"
    # ...and the log now holds, first, exactly the event readers were shown.
    first, second = await reader.events(job.id)
    assert first == shown
    assert second[1] == running
