"""The whole path through real processes: a request at the balancer becomes image bytes,
through Redis, a node and a ComfyUI stand-in."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from comfyfleet.cli.fleet import Fleet
from tests.e2e.conftest import Api
from tests.support.png import png_size
from tests.support.waiting import until


async def test_workflow_with_several_outputs_succeeds(api: Api) -> None:
    status, job = await api.post_job({"workflow": "two-outputs", "params": {}})
    assert status == 202, job
    done = await api.finished(job["id"])
    assert done["status"] == "succeeded", done
    assert len(done["outputs"]) >= 2
    for output in done["outputs"]:
        code, ctype, data = await api.raw(output["url"])
        assert code == 200
        assert ctype == "image/png"
        assert len(data) == output["size"]
        png_size(data)


async def test_txt2img_png_has_the_requested_size(api: Api) -> None:
    params = {"prompt": "a lighthouse at dusk", "width": 128, "height": 96, "steps": 3}
    status, job = await api.post_job({"workflow": "txt2img", "params": params})
    assert status == 202, job
    assert job["params"]["seed"] >= 0  # the random seed is resolved and recorded
    done = await api.finished(job["id"])
    assert done["status"] == "succeeded", done
    _, _, data = await api.raw(done["outputs"][0]["url"])
    assert png_size(data) == (128, 96)


async def test_bad_requests_are_4xx_problems_naming_the_field(api: Api) -> None:
    status, body = await api.post_job({"workflow": "no-such-workflow"})
    assert status == 404
    assert "no-such-workflow" in body["detail"]
    status, body = await api.post_job({"workflow": "txt2img", "params": {"steps": 100000}})
    assert status == 422
    assert "steps" in body["detail"]
    status, body = await api.post_job({"graph": {"1": {"inputs": {}}}})
    assert status == 422
    assert "class_type" in body["detail"]
    status, body = await api.post_job({"workflow": "txt2img", "graph": {}})
    assert status == 422


async def test_graph_comfyui_rejects_fails_at_once_without_retry(api: Api) -> None:
    # Classes every node has (so routing accepts it), a value ComfyUI's validation refuses.
    graph = {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }  # fmt: skip
    status, job = await api.post_job({"graph": graph, "max_attempts": 3})
    assert status == 202
    done = await api.finished(job["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "comfy_validation"
    assert done["attempts"] == 1


async def test_execution_error_fails_the_job_with_the_node(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    for sim in fleet.sims:
        base = sim.health_url.removesuffix("/system_stats")
        async with http.post(f"{base}/sim/faults", json={"fail_node_types": ["ImageInvert"]}) as r:
            assert r.status == 200
    try:
        graph = {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64,
                                                          "batch_size": 1, "color": 0}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                         "filename_prefix": "e2e"}},
        }  # fmt: skip
        status, job = await api.post_job({"graph": graph})
        assert status == 202
        done = await api.finished(job["id"])
        assert done["status"] == "failed"
        assert done["error"]["code"] == "execution_error"
        assert done["error"]["comfy_node_type"] == "ImageInvert"
        assert done["attempts"] == 1
    finally:
        for sim in fleet.sims:
            base = sim.health_url.removesuffix("/system_stats")
            async with http.post(f"{base}/sim/faults", json={"fail_node_types": []}) as r:
                assert r.status == 200


async def _drain_all(api: Api, fleet: Fleet, drain: bool) -> None:
    verb = "drain" if drain else "resume"
    for i in range(len(fleet.nodes)):
        status, _ = await api.post(f"/api/v1/nodes/node-{i + 1}/{verb}")
        assert status == 202
    want = "draining" if drain else "ready"
    for i in range(len(fleet.nodes)):
        await until(
            lambda i=i: api.node_state(f"node-{i + 1}"),  # type: ignore[misc]
            lambda s: s == want,
            what=f"node-{i + 1} {want}",
        )


async def test_cancel_a_queued_job(api: Api, fleet: Fleet) -> None:
    await _drain_all(api, fleet, True)
    try:
        status, job = await api.post_job({"workflow": "solid", "params": {}})
        assert status == 202
        assert job["status"] == "queued"
        assert job["queue_position"] == 0
        status, cancelled = await api.delete(f"/api/v1/jobs/{job['id']}")
        assert status == 200
        assert cancelled["status"] == "cancelled"
    finally:
        await _drain_all(api, fleet, False)
    assert (await api.job(job["id"]))["attempts"] == 0


async def test_cancel_a_running_job(api: Api) -> None:
    params = {"prompt": "slow", "steps": 150, "width": 64, "height": 64}
    status, job = await api.post_job({"workflow": "txt2img", "params": params})
    assert status == 202
    await until(
        lambda: api.job(job["id"]),
        lambda j: j["status"] == "running" and j["progress"] is not None,
        what="the job to report progress",
    )
    status, body = await api.delete(f"/api/v1/jobs/{job['id']}")
    assert status == 202
    assert body["cancel_requested"] is True
    done = await api.finished(job["id"])
    assert done["status"] == "cancelled"
    assert done["outputs"] == []


async def test_idempotency_key_gives_the_same_job(api: Api) -> None:
    body: dict[str, Any] = {"workflow": "solid", "params": {"width": 64, "height": 64}}
    results = await asyncio.gather(
        *(api.post_job(body, **{"Idempotency-Key": "same-key-1"}) for _ in range(5))
    )
    ids = {job["id"] for status, job in results if status == 202}
    assert len(ids) == 1
    assert len(results) == 5


async def test_list_filters_and_pages(api: Api) -> None:
    ids = []
    for _ in range(3):
        status, job = await api.post_job({"workflow": "solid", "params": {}})
        assert status == 202
        ids.append(job["id"])
    for job_id in ids:
        await api.finished(job_id)
    status, page = await api.get("/api/v1/jobs?status=succeeded&limit=2")
    assert status == 200
    assert len(page["jobs"]) == 2
    assert all(j["status"] == "succeeded" for j in page["jobs"])
    assert page["next_cursor"]
    status, page2 = await api.get(
        f"/api/v1/jobs?status=succeeded&limit=2&cursor={page['next_cursor']}"
    )
    assert status == 200
    assert not {j["id"] for j in page["jobs"]} & {j["id"] for j in page2["jobs"]}
    status, body = await api.get("/api/v1/jobs?status=bogus")
    assert status == 400
    assert "bogus" in body["detail"]


async def test_workflows_and_nodes_are_listed(api: Api, fleet: Fleet) -> None:
    status, body = await api.get("/api/v1/workflows")
    assert status == 200
    names = {w["name"] for w in body["workflows"]}
    assert {"txt2img", "solid", "two-outputs"} <= names
    status, wf = await api.get("/api/v1/workflows/txt2img")
    assert status == 200
    assert "steps" in wf["params_schema"]["properties"]
    status, body = await api.get("/api/v1/nodes")
    assert status == 200
    assert {n["node_id"] for n in body["nodes"]} == {"node-1", "node-2"}
    assert all(n["comfy_healthy"] for n in body["nodes"])


async def test_auth_is_required_but_health_is_open(fleet: Fleet) -> None:
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{fleet.balancer_url}/api/v1/jobs") as r:
            assert r.status == 401
        async with anon.get(f"{fleet.balancer_url}/healthz") as r:
            assert r.status == 200
        async with anon.get(f"{fleet.node_url(0)}/api/v1/node") as r:
            assert r.status == 401
