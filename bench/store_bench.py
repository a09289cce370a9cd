"""Job-store speed against plain Redis round trips measured in the same run.

Prints: jobs/s through enqueue+claim+complete, the cost of one job in PING round trips,
and the wake-up latency of a node waiting for work (enqueue on one connection until
`wait_for_work` returns on another) in PING round trips and milliseconds.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from comfyfleet.models.job import JobSpec, OutputRef
from comfyfleet.redis_server import RedisServer
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys

JOBS = 2000
WAKES = 200
GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64}}}


async def ping_rtt(redis: aioredis.Redis, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await redis.ping()
    return (time.perf_counter() - start) / n


async def job_round_trip(store: JobStore, n: int) -> float:
    out = [OutputRef(index=0, filename="a.png", size=1)]
    start = time.perf_counter()
    for _ in range(n):
        await store.enqueue(JobSpec(graph=GRAPH))
        (job,) = await store.claim("bench", capacity=1, lease_ms=30_000)
        await store.complete(job.id, "bench", out)
    return (time.perf_counter() - start) / n


async def wake_latency(waiter: JobStore, producer: JobStore, n: int) -> list[float]:
    await waiter.listen_for_work()
    samples = []
    for _ in range(n):
        while await waiter.claim("w", capacity=10, lease_ms=30_000):
            pass
        waiting = asyncio.create_task(waiter.wait_for_work(5.0))
        await asyncio.sleep(0.002)  # let the waiter block before the enqueue
        start = time.perf_counter()
        await producer.enqueue(JobSpec(graph=GRAPH))
        assert await waiting
        samples.append(time.perf_counter() - start)
    return samples


async def main() -> None:
    server = RedisServer(data_dir=Path(tempfile.mkdtemp(prefix="bench-redis-")))
    server.start()
    try:
        r1 = aioredis.Redis.from_url(server.url)
        r2 = aioredis.Redis.from_url(server.url)
        keys = Keys("bench")
        store, producer = JobStore(r1, keys), JobStore(r2, keys)
        await job_round_trip(store, 100)  # warm up: scripts loaded, connections open
        rtt = await ping_rtt(r1, 5000)
        per_job = await job_round_trip(store, JOBS)
        wakes = await wake_latency(store, producer, WAKES)
        p50, p99 = statistics.median(wakes), sorted(wakes)[int(0.99 * len(wakes)) - 1]
        print(f"PING round trip (baseline): {rtt * 1e6:.0f} us")
        print(
            f"job round trip (enqueue+claim+complete): {per_job * 1e6:.0f} us = "
            f"{per_job / rtt:.1f} PINGs; {1 / per_job:.0f} jobs/s on one connection"
        )
        print(
            f"wake-up latency: p50 {p50 * 1e3:.2f} ms ({p50 / rtt:.1f} PINGs), "
            f"p99 {p99 * 1e3:.2f} ms ({p99 / rtt:.1f} PINGs); poll fallback is 2000 ms"
        )
        await store.close()
        await r1.aclose()
        await r2.aclose()
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
