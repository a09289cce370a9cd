"""A finished job read through the API before and after the events grace, when its stream
has expired and its log is read folded from the job (store/events.py): SSE replays the same
events under the same ids (less the kinds only live followers use) and a Last-Event-ID
taken before resumes after; `?wait=` answers at once; the native /history is the same; a
native /ws replaying the ended prompt from the folded log still shows its end.

A balancer in this process (events grace: the default minute, so its /ws replays a prompt
that ended within it) and a store that ends jobs with a short grace, as a node configured
so would: the folded log is then read inside the /ws replay window, the one case where a
socket meets it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from comfyfleet.config import RedisConfig
from comfyfleet.models.job import JobSpec, OutputRef
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.prompt_feed import PromptFeed
from tests.live.inprocess import Balancer
from tests.live.sse import Sse, read_all
from tests.support.waiting import until

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}  # fmt: skip
GRACE_MS = 300
UNFOLDED = {"submitted", "executing", "executed", "progress", "preview", "lease"}
CLIENT = "folded-client"


@pytest.fixture
async def store(redis_config: RedisConfig) -> AsyncIterator[JobStore]:
    store = JobStore.from_config(redis_config, events_grace_ms=GRACE_MS)
    yield store
    await store.close()


async def finished_job(store: JobStore) -> str:
    """A job run as a node runs one (every kind of event), announced to CLIENT's feed."""
    job, _ = await store.enqueue(JobSpec(graph=GRAPH))
    await PromptFeed(store.redis, store.keys).announce("admin", CLIENT, job.id)
    await store.claim("n1", lease_ms=60_000)
    await store.append_event(job.id, "submitted", {"prompt_id": "p1"})
    await store.append_event(job.id, "started", {"prompt_id": "p1"})
    await store.append_event(job.id, "cached", {"nodes": ["1"]})
    await store.append_event(job.id, "executing", {"node": "2"})
    await store.append_event(job.id, "progress", {"value": 1, "max": 1, "node": "2"})
    image = {"filename": "x_00001_.png", "subfolder": "", "type": "output"}
    await store.append_event(job.id, "executed", {"node": "2", "output": {"images": [image]}})
    output = OutputRef(index=0, filename="x_00001_.png", size=4, node_id="2", key="o/x.png")
    await store.complete(job.id, "n1", [output])
    return job.id


async def sse(bal: Balancer, job_id: str, last_id: str | None = None) -> list[Sse]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    async with bal.http.get(f"{bal.url}/api/v1/jobs/{job_id}/events", headers=headers,
                            timeout=aiohttp.ClientTimeout(total=30)) as resp:  # fmt: skip
        assert resp.status == 200
        return [event for event in await read_all(resp) if event.id is not None]


async def ws_replay(bal: Balancer) -> list[dict[str, Any]]:
    """The frames a socket opened with CLIENT gets, up to its prompt's end."""
    frames: list[dict[str, Any]] = []
    ws_url = f"{bal.url.replace('http', 'ws', 1)}/ws?clientId={CLIENT}"
    async with bal.http.ws_connect(ws_url) as ws:
        while True:
            frame = await asyncio.wait_for(ws.receive_json(), 10)
            frames.append(frame)
            if frame["type"] == "executing" and frame["data"].get("node") is None:
                return frames


async def get_json(bal: Balancer, path: str) -> Any:
    async with bal.http.get(f"{bal.url}{path}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_a_finished_job_reads_the_same_before_and_after_the_grace(
    bal: Balancer, store: JobStore
) -> None:
    job_id = await finished_job(store)
    whole = await sse(bal, job_id)
    executing = next(e.id for e in whole if e.event == "executing")
    rest = await sse(bal, job_id, last_id=executing)
    history = await get_json(bal, f"/history/{job_id}")
    frames = await ws_replay(bal)
    kinds = [frame["type"] for frame in frames]
    assert {"execution_start", "execution_cached", "executed", "execution_success"} <= set(kinds)

    key = store.keys.events(job_id)
    await until(lambda: store.redis.exists(key), lambda n: n == 0, timeout_s=10,
                what="the stream to expire after the grace")  # fmt: skip

    def folded(seen: list[Sse]) -> list[Sse]:
        """What the fold keeps: no live-only kinds, no lease deadline of a past attempt."""
        return [replace(e, data={k: v for k, v in e.data.items() if k != "lease_deadline_ms"})
                for e in seen if e.event not in UNFOLDED]  # fmt: skip

    assert await sse(bal, job_id) == folded(whole)  # same ids, same data, outputs included
    assert await sse(bal, job_id, last_id=executing) == folded(rest)
    assert whole[-1].data["outputs"][0]["key"] == "o/x.png"
    waited = await get_json(bal, f"/api/v1/jobs/{job_id}?wait=30")
    assert waited["status"] == "succeeded"
    assert await get_json(bal, f"/history/{job_id}") == history
    after = await ws_replay(bal)
    # The prompt's end as before, its files' `executed` frame included (rebuilt from the
    # job's outputs); only the frames of which node ran when, and how far, are gone.
    dropped = {"executing", "progress", "progress_state"}
    assert [f for f in after if f["type"] not in dropped] == [
        f for f in frames if f["type"] not in dropped
    ]
    (executed,) = [f for f in after if f["type"] == "executed"]
    assert executed["data"]["output"] == {
        "images": [{"filename": "x_00001_.png", "subfolder": job_id, "type": "output"}]
    }
    assert after[-1] == frames[-1]
