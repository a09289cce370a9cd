"""A finished job's event log is compacted by the script that ends the job: every event a
reader replaying it needs stays, under its own id (contract C3 in docs/design.md), and
only progress, preview and lease events a later one of their kind supersedes within the
same attempt go. The stream is then sized to what it holds and kept for the events grace
(what is left after it, the log folded into the job, is tests/store/test_folded_log.py),
and the job's hash keeps no cleared field."""

from __future__ import annotations

from typing import Any

from comfyfleet.config import DEFAULT_EVENTS_GRACE_MS
from comfyfleet.models.job import FOLDED_LOG, JobError, JobErrorCode, OutputRef
from comfyfleet.store.jobs import JobStore

from .conftest import LEASE_MS, spec

# What Redis allocates for a fresh stream's first node whatever it holds (bytes): a log
# still sized this way was not compacted.
STREAM_PREALLOC = 4096


async def log(store: JobStore, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    return await store.events(job_id, count=1000)


async def usage(store: JobStore, key: str) -> int:
    return int(await store.redis.memory_usage(key, samples=0) or 0)


async def run_an_attempt(store: JobStore, job_id: str, node: str) -> None:
    """What a node writes while it runs a job: two sampler nodes' progress, previews,
    lease renewals and the other node-side events."""
    await store.append_event(job_id, "submitted", {"prompt_id": "p"})
    await store.append_event(job_id, "started", {"prompt_id": "p"})
    for sampler in ("3", "7"):
        await store.append_event(job_id, "executing", {"node": sampler})
        for step in range(1, 5):
            await store.append_event(job_id, "progress", {"value": step, "max": 4,
                                                          "node": sampler})  # fmt: skip
            await store.append_event(job_id, "preview", {"n": step, "size": 10})
            await store.renew(job_id, node, lease_ms=LEASE_MS)
    await store.append_event(job_id, "executing", {"node": "9"})


async def test_a_finished_log_keeps_all_but_superseded_progress_under_its_ids(
    store: JobStore,
) -> None:
    job, _ = await store.enqueue(spec(max_attempts=2))
    await store.claim("a", lease_ms=LEASE_MS)
    await run_an_attempt(store, job.id, "a")
    error = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="gone", retryable=True)
    await store.fail(job.id, "a", error)
    await store.claim("b", lease_ms=LEASE_MS)
    await run_an_attempt(store, job.id, "b")
    full = await log(store, job.id)
    await store.complete(job.id, "b", [OutputRef(index=0, filename="o.png", size=1)])
    finished = await log(store, job.id)

    def superseded(i: int) -> bool:
        """A later event of its kind (same sampler for progress) before the next state."""
        _, event = full[i]
        if event["type"] not in ("progress", "preview", "lease"):
            return False
        for _, later in full[i + 1 :]:
            if later["type"] == "state":
                return False
            if later["type"] == event["type"] and later.get("node") == event.get("node"):
                return True
        return False

    expected = [entry for i, entry in enumerate(full) if not superseded(i)]
    assert finished[:-1] == expected  # same events, same ids, same order
    assert finished[-1][1]["status"] == "succeeded"
    kinds = [event["type"] for _, event in finished]
    # Per attempt: each sampler's last progress, the last preview, the last lease.
    counts = {kind: kinds.count(kind) for kind in ("progress", "preview", "lease", "executing")}
    assert counts == {"progress": 4, "preview": 2, "lease": 2, "executing": 6}
    last_progress = [e for _, e in finished if e["type"] == "progress"][-2:]
    assert [(e["node"], e["value"]) for e in last_progress] == [("3", 4), ("7", 4)]
    assert len(finished) < len(full) - 20


async def test_a_reader_resumes_from_a_dropped_event(store: JobStore) -> None:
    """Last-Event-ID may name an event compaction dropped: the reader gets what followed
    it that was kept, nothing twice, nothing missed."""
    job, _ = await store.enqueue(spec())
    await store.claim("a", lease_ms=LEASE_MS)
    await run_an_attempt(store, job.id, "a")
    full = await log(store, job.id)
    cursor = next(i for i, (_, e) in enumerate(full) if e["type"] == "progress")
    await store.complete(job.id, "a", [])
    kept = {entry_id for entry_id, _ in await log(store, job.id)}
    assert full[cursor][0] not in kept
    resumed = await store.events(job.id, after=full[cursor][0], count=1000)
    assert [i for i, _ in resumed] == sorted(i for i in kept if i > full[cursor][0])


async def test_every_ending_compacts_and_sizes_the_log(store: JobStore) -> None:
    endings = {}
    for ending in ("succeeded", "failed", "cancelled", "cancelled while queued"):
        job, _ = await store.enqueue(spec(max_attempts=1))
        endings[ending] = job.id
        if ending == "cancelled while queued":
            await store.cancel(job.id)
            continue
        await store.claim("a", lease_ms=LEASE_MS)
        await run_an_attempt(store, job.id, "a")
        if ending == "succeeded":
            await store.complete(job.id, "a", [])
        elif ending == "failed":
            error = JobError(code=JobErrorCode.EXECUTION_ERROR, message="x", retryable=False)
            await store.fail(job.id, "a", error)
        else:
            await store.cancel(job.id)
            await store.finish_cancelled(job.id, "a")
    for ending, job_id in endings.items():
        key = store.keys.events(job_id)
        kinds = [event["type"] for _, event in await log(store, job_id)]
        assert kinds.count("progress") <= 2, ending
        assert 0 < await usage(store, key) < STREAM_PREALLOC, ending
        async with store.redis.pipeline(transaction=True) as pipe:
            pipe.pttl(key)
            pipe.pttl(store.keys.job(job_id))
            pipe.hexists(store.keys.job(job_id), FOLDED_LOG)
            log_ttl, job_ttl, folded = await pipe.execute()
        assert job_ttl > DEFAULT_EVENTS_GRACE_MS, ending
        # The stream lives for the grace; the job keeps the log folded for its retention.
        assert DEFAULT_EVENTS_GRACE_MS - 5000 < log_ttl <= DEFAULT_EVENTS_GRACE_MS, ending
        assert folded, ending


async def test_a_finished_jobs_hash_keeps_no_cleared_field(store: JobStore) -> None:
    job, _ = await store.enqueue(spec(max_attempts=2))
    await store.claim("a", lease_ms=LEASE_MS)
    error = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="y", retryable=True)
    await store.fail(job.id, "a", error, backoff_ms=60_000)  # sets not_before_ms
    await store.cancel(job.id)
    fields = await store.redis.hgetall(store.keys.job(job.id))
    assert b"" not in fields.values()
    assert {b"lease_deadline_ms", b"not_before_ms"}.isdisjoint(fields)
    finished = await store.get(job.id)
    assert finished is not None
    assert (finished.status, finished.lease_deadline_ms, finished.not_before_ms) == (
        "cancelled", None, None)  # fmt: skip
