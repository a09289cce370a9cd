"""Figures measured in-process against a Redis of the bench's own: Redis bytes per queued
job, and claim latency with a short and a very long queue.

The long queue is filled by cloning one really enqueued job server-side (`CLONE_LUA`): each
clone gets every key and index entry the job has (hash, event stream if any, its tenant's
queue, the tenant in the fair-share set, listing and status indexes, counters, a fresh
sequence number), with the same encodings, because enqueueing a million jobs through
Python would take minutes. The clones are spread over TENANTS owners. Bytes per job are
measured on real enqueues.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.clients import solid_graph
from comfyfleet.models.job import JobSpec
from comfyfleet.redis_server import RedisServer
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys

CLAIMS = 300
WARM_UP_CLAIMS = 20
LEASE_MS = 600_000
CLONE_BATCH = 1_000
FILL_TIMEOUT_S = 300

# Tenants the filled queue is spread over: the claim picks among them by virtual time, so
# the figure covers the fair-share structures as well as the queues' length.
TENANTS = 100

# KEYS: template job hash, template events, queued index, seq, depth, fair set of the
#       template's pool and class
# ARGV: first clone number, clones, job key prefix, events key prefix, tenant queue prefix
#       ("{ns}:queue:<pool>:<class>:"), tenant record prefix, pool, tenants
CLONE_LUA = """
local fields = redis.call('HGETALL', KEYS[1])
local has_events = redis.call('EXISTS', KEYS[2]) == 1
local events = has_events and redis.call('XRANGE', KEYS[2], '-', '+') or {}
local priority = tonumber(redis.call('HGET', KEYS[1], 'priority'))
for n = tonumber(ARGV[1]), tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1 do
  local id = 'fill' .. n
  local owner = 'bench:' .. (n % tonumber(ARGV[8]))
  local seq = redis.call('INCR', KEYS[4])
  for i = 1, #fields, 2 do
    local value = fields[i + 1]
    if fields[i] == 'id' then value = id elseif fields[i] == 'seq' then value = seq
    elseif fields[i] == 'owner' then value = owner end
    redis.call('HSET', ARGV[3] .. id, fields[i], value)
  end
  for _, entry in ipairs(events) do
    redis.call('XADD', ARGV[4] .. id, '*', unpack(entry[2]))
  end
  redis.call('ZADD', ARGV[5] .. owner, (100 - priority) * 2^40 + seq, id)
  redis.call('ZADD', KEYS[6], 'NX', 0, owner)
  redis.call('HINCRBY', ARGV[6] .. owner, 'queued', 1)
  redis.call('HINCRBY', KEYS[5], ARGV[7], 1)
  redis.call('ZADD', KEYS[3], seq, id)
end
return redis.call('HGET', KEYS[5], ARGV[7])
"""


async def _fill(redis: aioredis.Redis, keys: Keys, store: JobStore, total: int) -> None:
    """`total` queued jobs (one enqueued, the rest cloned) over TENANTS tenants, in the
    default pool and the class any node runs (the bench's node has no inventory)."""
    template, _ = await store.enqueue(JobSpec(graph=solid_graph()))
    pool, cls = template.pool, template.capability
    clone = redis.register_script(CLONE_LUA)
    made = 1
    while made < total:
        batch = min(CLONE_BATCH, total - made)
        await clone(
            keys=[keys.job(template.id), keys.events(template.id),
                  keys.jobs_by_status("queued"), keys.seq, keys.depth, keys.fair(pool, cls)],
            args=[made, batch, keys.job_prefix(), keys.events_prefix(),
                  keys.queue(pool, cls, ""), keys.tenant_prefix(), pool, TENANTS],
        )  # fmt: skip
        made += batch


def _p50_p99(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[int(0.99 * len(samples)) - 1]


async def _timed_claim(store: JobStore) -> float:
    start = time.perf_counter()
    (_claimed,) = await store.claim("bench-node", capacity=1, lease_ms=LEASE_MS)
    return (time.perf_counter() - start) * 1000


async def claim_latency(redis_url: str, short: int, long: int) -> dict[str, Any]:
    """p50/p99 of one claim (ms) with `short` and with `long` jobs queued. Both queues are
    filled first (namespaces of their own) and claimed from in turn, one claim each, so
    whatever else the machine does at a moment weighs on both alike: this VM's claim
    times moved between 0.7 and 1.2 ms from one minute to the next."""
    out: dict[str, Any] = {}
    # Filling and flushing a million jobs takes longer than the client's default timeout.
    redis = aioredis.Redis.from_url(redis_url, socket_timeout=FILL_TIMEOUT_S)
    try:
        stores, fill_s = {}, {}
        for label, depth in (("short", short), ("long", long)):
            keys = Keys(f"claim{label}")
            stores[label] = JobStore(redis, keys)
            fill_start = time.perf_counter()
            await _fill(redis, keys, stores[label], depth)
            fill_s[label] = time.perf_counter() - fill_start
        samples: dict[str, list[float]] = {"short": [], "long": []}
        for round_ in range(WARM_UP_CLAIMS + CLAIMS):  # the first: the script is loaded
            for label, store in stores.items():
                took = await _timed_claim(store)
                if round_ >= WARM_UP_CLAIMS:
                    samples[label].append(took)
        for label, depth in (("short", short), ("long", long)):
            p50, p99 = _p50_p99(samples[label])
            out[label] = {"queued": depth, "p50_ms": p50, "p99_ms": p99,
                          "fill_s": fill_s[label]}  # fmt: skip
        await redis.flushdb(asynchronous=True)  # a million keys: freed in the background
    finally:
        await redis.aclose()
    return out


async def bytes_per_job(redis_url: str, jobs: int) -> dict[str, Any]:
    """Redis memory per queued job (real enqueues) beyond the graph's own JSON size, and
    MEMORY USAGE of each key kind of one job."""
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys("mem")
    store = JobStore(redis, keys)
    try:
        await store.enqueue(JobSpec(graph=solid_graph()))  # indexes and scripts exist
        before = (await redis.info("memory"))["used_memory"]
        graph_bytes = 0
        last = None
        for _ in range(jobs):
            graph = solid_graph()
            graph_bytes += len(orjson.dumps(graph))
            last, _ = await store.enqueue(JobSpec(graph=graph))
        after = (await redis.info("memory"))["used_memory"]
        assert last is not None
        per_key = {
            "job hash": await redis.memory_usage(keys.job(last.id)),
            "event stream": await redis.memory_usage(keys.events(last.id)),
        }
        return {"jobs": jobs, "bytes_per_job": (after - before) / jobs,
                "graph_bytes": graph_bytes / jobs,
                "beyond_graph": (after - before - graph_bytes) / jobs,
                "memory_usage": {k: v or 0 for k, v in per_key.items()}}  # fmt: skip
    finally:
        await redis.flushdb()
        await redis.aclose()


class OwnRedis:
    """A redis-server for the in-process figures (no AOF: memory, not durability)."""

    def __enter__(self) -> str:
        self.server = RedisServer(data_dir=Path(tempfile.mkdtemp(prefix="bench-redis-")),
                                  appendonly=False)  # fmt: skip
        self.server.start()
        return self.server.url

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
