"""A finished job of a published workflow keeps no graph in Redis (drop_rendered_graph in
store/lua/_lib.lua); ComfyUI's /history, the one reader of a finished job's graph, shows
the graph it ran all the same, rendered again from its version and params."""

from __future__ import annotations

from typing import Any

import orjson

from comfyfleet.config import RedisConfig
from comfyfleet.store.jobs import JobStore
from tests.live.inprocess import Balancer


async def submit(bal: Balancer, body: dict[str, Any]) -> str:
    async with bal.http.post(f"{bal.url}/api/v1/jobs", json=body) as resp:
        assert resp.status == 202, await resp.text()
        job_id: str = (await resp.json())["id"]
        return job_id


async def history_graph(bal: Balancer, job_id: str) -> Any:
    async with bal.http.get(f"{bal.url}/history/{job_id}") as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())[job_id]["prompt"][2]


async def test_history_shows_the_graph_a_finished_workflow_job_ran(
    bal: Balancer, redis_config: RedisConfig
) -> None:
    store = JobStore.from_config(redis_config)
    try:
        params = {"width": 96, "height": 64, "color": 255}
        raw = {"1": {"class_type": "EmptyImage", "inputs": {}}}
        ids = [await submit(bal, {"workflow": "solid", "params": params}),
               await submit(bal, {"graph": raw})]  # fmt: skip
        queued = {}
        for job_id in ids:
            raw = await store.redis.hget(store.keys.job(job_id), "graph")
            queued[job_id] = orjson.loads(raw or b"")
        assert queued[ids[0]]["1"]["inputs"]["width"] == 96
        for _ in ids:
            await store.claim("n1", lease_ms=60_000)
        for job_id in ids:
            await store.complete(job_id, "n1", [])
        stored = [await store.redis.hexists(store.keys.job(job_id), "graph") for job_id in ids]
        assert stored == [False, True]  # the workflow job's graph went, the raw one stayed
        for job_id in ids:
            assert await history_graph(bal, job_id) == queued[job_id]
    finally:
        await store.close()
