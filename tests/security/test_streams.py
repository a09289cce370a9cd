"""Finding 4: streams that never end. `GET /jobs/{finished}/events?after=<future id>` held
its connection forever, and one caller could take every live slot (then every other
client's SSE got 503 and `?wait=` answered at once)."""

from __future__ import annotations

import asyncio

from comfyfleet.balancer.events_api import LIVE, MAX_LIVE_PER_CALLER
from comfyfleet.config import RedisConfig
from tests.security.fleet import Fleet, fleet
from tests.security.graphs import solid

FUTURE = "99999999999999-0"


async def _finished_job(f: Fleet, auth: dict[str, str]) -> str:
    status, job = await f.json("POST", "/api/v1/jobs?wait=20", json={"graph": solid()},
                               headers=auth)  # fmt: skip
    assert status == 200, job
    return str(job["id"])


async def _read_stream(f: Fleet, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    async with f.http.get(f.url + path, headers=headers) as r:
        # Must end by itself: a stream held open fails here at the deadline.
        return r.status, await asyncio.wait_for(r.read(), 10)


async def test_300_streams_after_a_future_id_of_a_finished_job_all_end(
    redis_config: RedisConfig,
) -> None:
    async with fleet(redis_config, node=True) as f:
        auth = {"Authorization": (await _key(f, "prober"))}
        job_id = await _finished_job(f, auth)  # a key streams its own jobs only
        path = f"/api/v1/jobs/{job_id}/events?after={FUTURE}"
        # 16 at a time (within one caller's share): each must end by itself.
        gate = asyncio.Semaphore(16)

        async def probe() -> tuple[int, bytes]:
            async with gate:
                return await _read_stream(f, path, auth)

        results = await asyncio.gather(*(probe() for _ in range(300)))
        assert [status for status, _ in results] == [200] * 300
        assert all(b"event:" not in body for _, body in results)  # nothing after the id
        assert f.app[LIVE].held.total() == 0  # every slot given back
        # From the start, the whole log, ending with the terminal state.
        status, body = await _read_stream(f, f"/api/v1/jobs/{job_id}/events", auth)
        assert status == 200
        assert b'"status":"succeeded"' in body.rsplit(b"event: state", 1)[-1]


async def _key(f: Fleet, name: str) -> str:
    status, made = await f.json("POST", "/api/v1/apikeys", json={"name": name})
    assert status == 201, made
    return f"Bearer {made['key']}"


async def test_one_caller_cannot_take_every_live_slot(redis_config: RedisConfig) -> None:
    async with fleet(redis_config) as f:
        greedy, other = (
            {"Authorization": await _key(f, "greedy")},
            {"Authorization": await _key(f, "other")},
        )
        # No node: the jobs stay queued, so their streams stay open. A key streams its own.
        paths = {}
        for who, auth in (("greedy", greedy), ("other", other)):
            _, job = await f.json("POST", "/api/v1/jobs", json={"graph": solid()}, headers=auth)
            paths[who] = f"{f.url}/api/v1/jobs/{job['id']}/events"
        path = paths["greedy"]
        held = [await f.http.get(path, headers=greedy) for _ in range(MAX_LIVE_PER_CALLER)]
        try:
            assert {r.status for r in held} == {200}
            async with f.http.get(path, headers=greedy) as refused:
                assert refused.status == 503
                assert (await refused.json(content_type=None))["code"] == "too-many-streams"
            async with f.http.get(paths["other"], headers=other) as served:
                assert served.status == 200
                assert (await served.content.readline()).startswith(b"retry:")
        finally:
            for r in held:
                r.close()
