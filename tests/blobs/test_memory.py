"""Redis keeps state, not bytes: with the S3 store, 1,000 finished jobs with a real 2 MB
output each add under 2 MB to Redis (`INFO memory`) beyond what the same 1,000 jobs cost
with no output at all -- the job record and event log, which every job has whatever the
store (about 3 KB a job; tests/blobs/test_fleet_memory.py measures the whole of it on a
real fleet). Each job goes through the store as a node's would: enqueue, claim, the output
streamed into S3 through the result store, complete with the object's key, size, type and
sha256."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from comfyfleet.blobs import RedisBlobStore, open_blob_store
from comfyfleet.models.job import Job, JobSpec, OutputRef
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.results import ResultStore
from tests.support.s3 import S3Server

JOBS = 1000
OUTPUT_BYTES = 2 * 1000 * 1000
CHUNK = 256 * 1024
WRITERS = 8  # concurrent "nodes"
GRAPH = {"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}}}


async def output(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def redis_growth(
    store: JobStore, finish: Callable[[Job, str], Awaitable[None]], jobs: int = JOBS
) -> int:
    """Bytes Redis grew by while `jobs` jobs were enqueued, claimed and finished by
    `finish`, by WRITERS concurrent "nodes"."""
    before = int((await store.redis.info("memory"))["used_memory"])

    async def node(name: str) -> None:
        for _ in range(jobs // WRITERS):
            await store.enqueue(JobSpec(graph=GRAPH, workflow="txt2img"))
            (job,) = await store.claim(name, lease_ms=30_000)
            await finish(job, name)

    await asyncio.gather(*(node(f"n{i}") for i in range(WRITERS)))
    return int((await store.redis.info("memory"))["used_memory"]) - before


async def test_the_measure_sees_bytes_kept_in_redis(store: JobStore) -> None:
    """The same measure with the Redis store: each output's bytes show up (so the S3 test
    above could fail). A few jobs suffice: the bytes dwarf the state."""
    results = ResultStore(RedisBlobStore(store.redis, store.keys))
    data = os.urandom(OUTPUT_BYTES)

    async def with_output(job: Job, node: str) -> None:
        stored = await results.put(job, 0, "o.png", output(data), content_type="image/png")
        ref = OutputRef(index=0, filename="o.png", size=stored.size, key=stored.key)
        await store.complete(job.id, node, [ref])

    grown = await redis_growth(store, with_output, jobs=16)
    try:
        assert grown > 16 * OUTPUT_BYTES
    finally:
        blobs = [k async for k in store.redis.scan_iter(match=store.keys.blob("*"))]
        await store.redis.delete(*blobs)


async def test_a_thousand_finished_jobs_with_2mb_outputs_add_under_2mb_of_redis(
    s3_server: S3Server, store: JobStore
) -> None:
    blobs = await open_blob_store(s3_server.config(), store.redis, store.keys)
    results = ResultStore(blobs)
    data = os.urandom(OUTPUT_BYTES)

    async def with_output(job: Job, node: str) -> None:
        stored = await results.put(job, 0, "ComfyUI_00001_.png", output(data),
                                   content_type="image/png")  # fmt: skip
        ref = OutputRef(index=0, filename="ComfyUI_00001_.png", size=stored.size,
                        node_id=node, sha256=stored.sha256, key=stored.key)  # fmt: skip
        await store.complete(job.id, node, [ref])

    async def without_output(job: Job, node: str) -> None:
        await store.complete(job.id, node, [])

    try:
        baseline = await redis_growth(store, without_output)
        grown = await redis_growth(store, with_output)
        assert (await store.stats()).get("succeeded") == 2 * JOBS
        objects = [b.key async for b in blobs.list_blobs("outputs/")]
        assert len(objects) == JOBS  # 2 GB of outputs, all in S3
        added = grown - baseline
        print(f"\nredis: {baseline // JOBS} B a job without outputs, {grown // JOBS} B with a "
              f"2 MB output in S3 (outputs add {added // JOBS} B a job)")  # fmt: skip
        assert added < 2 * 1024 * 1024
    finally:
        await blobs.delete([b.key async for b in blobs.list_blobs("")])  # free the server
        await blobs.close()
