"""SSE details that need control over the queue: positions, heartbeats, the connection
bound. A balancer in this process, no nodes: jobs are moved by the test through the store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from comfyfleet.balancer import events_api
from comfyfleet.config import RedisConfig
from comfyfleet.models.job import JobSpec
from comfyfleet.store.jobs import JobStore
from tests.live.inprocess import Balancer
from tests.live.sse import events

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {}}}


@pytest.fixture
async def store(redis_config: RedisConfig) -> AsyncIterator[JobStore]:
    store = JobStore.from_config(redis_config)
    yield store
    await store.close()


def _stream(bal: Balancer, job_id: str) -> aiohttp.client._RequestContextManager:
    return bal.http.get(f"{bal.url}/api/v1/jobs/{job_id}/events",
                        timeout=aiohttp.ClientTimeout(total=30))  # fmt: skip


async def test_queue_position_while_queued_then_the_end(bal: Balancer, store: JobStore) -> None:
    jobs = [(await store.enqueue(JobSpec(graph=GRAPH, pool="p")))[0] for _ in range(3)]
    async with _stream(bal, jobs[2].id) as resp:
        it = events(resp).__aiter__()
        first = await anext(it)
        assert (first.event, first.data["status"]) == ("state", "queued")
        assert first.id is not None
        position = await anext(it)
        assert (position.event, position.data["queue_position"]) == ("position", 2)
        assert position.id is None, "a position is not part of the log"
        await store.cancel(jobs[0].id)
        position = await anext(it)
        assert (position.event, position.data["queue_position"]) == ("position", 1)
        await store.cancel(jobs[2].id)
        end = await anext(it)
        assert (end.event, end.data["status"]) == ("state", "cancelled")
        with pytest.raises(StopAsyncIteration):
            await anext(it)


async def test_heartbeat_comments_keep_a_quiet_stream_open(
    bal: Balancer, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_api, "HEARTBEAT_S", 0.2)
    job, _ = await store.enqueue(JobSpec(graph=GRAPH, pool="p"))
    await store.claim("n1", pools=["p"], lease_ms=60_000)  # running, and quiet
    async with _stream(bal, job.id) as resp:
        seen = []
        async for raw in resp.content:
            seen.append(raw.decode())
            if raw.startswith(b": keepalive"):
                break
    assert any(line.startswith("event: state") for line in seen)
    await store.cancel(job.id)


async def test_live_connections_are_bounded(bal: Balancer, store: JobStore) -> None:
    bal.app[events_api.LIVE].limit = 1
    job, _ = await store.enqueue(JobSpec(graph=GRAPH, pool="p"))
    async with _stream(bal, job.id) as held:
        assert held.status == 200
        await held.content.readline()  # the stream is open and holds the one slot
        async with _stream(bal, job.id) as refused:
            assert refused.status == 503
            body = await refused.json(content_type=None)
            assert body["code"] == "too-many-streams"
        # A long-poll does not queue up behind the bound: it answers at once.
        async with bal.http.get(f"{bal.url}/api/v1/jobs/{job.id}?wait=30") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "queued"
        await store.cancel(job.id)
