"""Finding 8 (part): a `SaveImage` prefix with CR/LF crashed the stand-in's `/view`, and the
node called that retryable. The balancer now refuses such a graph at submit
(test_graph_files); here the job reaches a node anyway (written to the store directly, as
a workflow param bound to a prefix could), and the node fails it once, for good."""

from __future__ import annotations

import aiohttp

from comfyfleet.config import RedisConfig, SimConfig
from comfyfleet.models.job import JobSpec
from comfyfleet.sim import create_app
from comfyfleet.store.jobs import JobStore
from tests.security.fleet import fleet, serve
from tests.security.graphs import solid


async def test_a_crlf_prefix_fails_once_not_retried(redis_config: RedisConfig) -> None:
    async with fleet(redis_config, node=True) as f:
        store = JobStore.from_config(redis_config)
        try:
            job, _ = await store.enqueue(JobSpec(graph=solid(prefix="evil\r\nX-Injected: 1"),
                                                 max_attempts=3))  # fmt: skip
        finally:
            await store.close()
        done = await f.finished(job.id)
    assert done["status"] == "failed"
    assert done["attempts"] == 1
    assert done["error"]["retryable"] is False
    assert "control character" in done["error"]["message"]


async def test_the_stand_ins_view_answers_400_to_control_characters() -> None:
    runner, url = await serve(create_app(SimConfig(port=0)))
    try:
        async with aiohttp.ClientSession() as http:
            for query in ("filename=a%0D%0Ab.png", "filename=a.png&subfolder=x%0Ay",
                          "filename=a%00.png", "filename=a%7F.png"):  # fmt: skip
                async with http.get(f"{url}/view?{query}&type=output") as r:
                    assert r.status == 400, query
    finally:
        await runner.cleanup()
