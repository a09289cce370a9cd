"""Redis memory of a queued job, key kind by key kind (`MEMORY USAGE`): the hash holds only
fields with a value and stays a compact listpack; the event log does not exist until the
job's first event after `queued`; the index entries stay small."""

from __future__ import annotations

from typing import Any

import orjson

from comfyfleet.models.job import JobSpec
from comfyfleet.redis_server import HASH_MAX_LISTPACK_VALUE
from comfyfleet.store.jobs import JobStore

from .conftest import LEASE_MS

JOBS = 100
# A queued job's hash, beyond its graph's JSON (bytes): ~16 short fields and the
# listpack's own overhead (measured ~360 B).
HASH_OVERHEAD_MAX = 600
# Each of the three index entries of a queued job (queue, the owner's listing, status; the
# status indexes together are the listing of all jobs), bytes.
INDEX_ENTRY_MAX = 150


def graph(n: int) -> dict[str, Any]:
    """A two-node graph of about 170 bytes, as a small real workflow's."""
    return {"1": {"class_type": "EmptyImage",
                  "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": n}},
            "2": {"class_type": "SaveImage",
                  "inputs": {"filename_prefix": "solid", "images": ["1", 0]}}}  # fmt: skip


async def _usage(store: JobStore, key: str) -> int:
    return int(await store.redis.memory_usage(key, samples=0) or 0)


async def test_a_queued_job_costs_its_graph_and_little_more(store: JobStore) -> None:
    job, _ = await store.enqueue(JobSpec(graph=graph(1)))
    key = store.keys.job(job.id)
    fields = await store.redis.hgetall(key)
    assert all(value != b"" for value in fields.values())  # no empty field is stored
    assert await store.redis.object("encoding", key) == b"listpack"
    graph_bytes = len(orjson.dumps(job.graph))
    assert graph_bytes < HASH_MAX_LISTPACK_VALUE
    assert await _usage(store, key) <= graph_bytes + HASH_OVERHEAD_MAX
    # No event log until the job moves on: an empty stream alone costs ~4.8 KB.
    assert await _usage(store, store.keys.events(job.id)) == 0
    await store.claim("n", lease_ms=LEASE_MS)
    assert await _usage(store, store.keys.events(job.id)) > 0


async def test_index_entries_of_queued_jobs_stay_small(store: JobStore) -> None:
    queue = store.keys.queue("default", "any", "admin")
    indexes = [queue, store.keys.jobs_of_owner("admin"), store.keys.jobs_by_status("queued")]
    await store.enqueue(JobSpec(graph=graph(0)))
    before = [await _usage(store, key) for key in indexes]
    for n in range(JOBS):
        await store.enqueue(JobSpec(graph=graph(n)))
    after = [await _usage(store, key) for key in indexes]
    for key, was, now in zip(indexes, before, after, strict=True):
        assert (now - was) / JOBS <= INDEX_ENTRY_MAX, key
