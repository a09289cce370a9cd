"""A fleet whose node runs its own ComfyUI (`up --comfy-cmd`: a balancer and a node process,
the node's child a `comfyfleet sim`): a job survives its ComfyUI being SIGKILLed mid-run,
and a failing node's traceback reaches the job's logs, the node's stdout and Logdy."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyfleet.cli.fleet import Fleet, FleetSpec
from comfyfleet.redis_server import RedisServer
from tests.e2e import conftest as e2e
from tests.e2e.conftest import PASSWORD, USER, Api
from tests.logs.conftest import LineServer
from tests.node_process.conftest import json_lines, sim_cmd
from tests.support.waiting import until

_colors = iter(range(1, 1 << 24))
INJECTED = "comfyfleet.sim.faults.InjectedFailure: sim: injected failure in SaveImage (node 2)"

# The e2e suite's authenticated session and API client, for this module's fleet.
http, api = e2e.http, e2e.api


def job_body() -> dict[str, Any]:
    """A small job whose graph no earlier job had, so ComfyUI's cache never serves it."""
    return {"workflow": "solid", "params": {"width": 32, "height": 32, "color": next(_colors)}}


@pytest.fixture(scope="module")
def fleet(
    redis_server: RedisServer, logdy: LineServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    data = Path(tmp_path_factory.mktemp("supervised"))
    spec = FleetSpec(
        nodes=1, balancer_port=0, first_node_port=0, redis_url=redis_server.url,
        namespace=f"sup{uuid.uuid4().hex[:8]}", username=USER, password=PASSWORD,
        data_dir=data, comfy_cmd=sim_cmd(data / "sim", "--node-ms", "50"),
        node_args=["--comfy-restart-delay", "0.2", "--retry-base-ms", "100", "--hang-timeout", "3",
                   "--no-retry-jitter", "--metrics", "--logdy", f"127.0.0.1:{logdy.port}"],
    )  # fmt: skip
    with Fleet(spec) as fleet:
        yield fleet


async def _node(api: Api, fleet: Fleet) -> dict[str, Any]:
    _status, body = await api.get(fleet.node_url(0).removeprefix(api.base) + "/api/v1/node")
    return dict(body)


async def _node_info(http: aiohttp.ClientSession, fleet: Fleet) -> dict[str, Any]:
    async with http.get(f"{fleet.node_url(0)}/api/v1/node") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def _faults(http: aiohttp.ClientSession, comfy_url: str, **body: Any) -> None:
    async with http.post(f"{comfy_url}/sim/faults", json=body) as resp:
        assert resp.status == 200


async def test_a_job_survives_its_comfyui_being_killed(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    before = await _node_info(http, fleet)
    process = before["comfy_process"]
    assert (process["state"], process["restarts"]) == ("running", 0)
    comfy_url = before["comfy_url"]
    await _faults(http, comfy_url, stall_after_nodes=1)  # hold the job after its first node
    status, job = await api.post_job(job_body())
    assert status == 202

    async def stalled() -> bool:
        async with http.get(f"{comfy_url}/sim/faults") as resp:
            return bool((await resp.json())["stalled"])

    await until(stalled, bool, what="the job to be mid-run in ComfyUI")
    assert (await api.job(job["id"]))["status"] == "running"
    os.kill(process["pid"], signal.SIGKILL)

    done = await api.finished(job["id"], timeout_s=60)
    assert (done["status"], done["attempts"]) == ("succeeded", 2)
    assert done["history"][0]["error"]["code"] == "comfy_lost"
    after = await _node_info(http, fleet)
    restarted = after["comfy_process"]
    assert restarted["restarts"] == 1
    assert restarted["last_exit"] == "killed by SIGKILL"
    assert restarted["pid"] != process["pid"]
    assert after["comfy_url"] == comfy_url  # the same port across restarts
    async with http.get(f"{fleet.node_url(0)}/metrics") as resp:
        assert "comfyfleet_node_comfy_restarts_total 1" in await resp.text()

    async def beat() -> Any:
        _status, body = await api.get("/api/v1/nodes/node-1")
        return body

    # In the heartbeat too, so the balancer's fleet view shows it.
    await until(beat, lambda b: b["comfy_process"]["restarts"] == 1, what="the heartbeat")


async def test_a_hung_comfyui_is_restarted_and_its_job_retried(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    before = (await _node_info(http, fleet))["comfy_process"]
    comfy_url = (await _node_info(http, fleet))["comfy_url"]
    await _faults(http, comfy_url, stall_after_nodes=1)  # stalls until restarted
    _status, job = await api.post_job(job_body())
    done = await api.finished(job["id"], timeout_s=60)
    assert (done["status"], done["attempts"]) == ("succeeded", 2)
    assert done["history"][0]["error"]["code"] == "comfy_hung"
    after = (await _node_info(http, fleet))["comfy_process"]
    assert after["restarts"] == before["restarts"] + 1
    assert after["last_exit"].startswith("hung on prompt ")


async def test_a_failing_nodes_traceback_reaches_job_logs_stdout_and_logdy(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession, logdy: LineServer
) -> None:
    comfy_url = (await _node_info(http, fleet))["comfy_url"]
    await _faults(http, comfy_url, fail_node_types=["SaveImage"])
    try:
        _status, job = await api.post_job(job_body())
        done = await api.finished(job["id"])
    finally:
        await _faults(http, comfy_url, fail_node_types=[])
    assert done["status"] == "failed"
    assert "InjectedFailure: sim: injected failure in SaveImage" in done["error"]["message"]

    def traceback_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [ln for ln in lines if str(ln.get("text", ln.get("event", ""))).startswith(
            "Traceback (most recent call last):")]  # fmt: skip

    async def logs() -> dict[str, Any]:
        status, body = await api.get(f"/api/v1/jobs/{job['id']}/logs")
        assert status == 200
        return dict(body)

    body = await until(logs, lambda b: bool(traceback_of(b["attempts"][0]["lines"])),
                       what="the traceback in the job's logs")  # fmt: skip
    [attempt] = body["attempts"]
    assert (attempt["attempt"], attempt["node_id"], attempt["dropped"]) == (1, "node-1", 0)
    [traceback] = traceback_of(attempt["lines"])  # the whole traceback is ONE line
    assert traceback["level"] == "error"
    assert traceback["stream"] == "stderr"
    assert traceback["text"].count("\n") >= 3
    assert traceback["text"].endswith(INJECTED)
    texts = [ln["text"] for ln in attempt["lines"]]
    assert any(t.startswith("!!! Exception during processing !!!") for t in texts)

    stdout = [ln for ln in json_lines(fleet.dir / "node-1.log") if ln.get("job_id") == job["id"]]
    [printed] = traceback_of([ln for ln in stdout if ln.get("source") == "comfyui"])
    assert printed["event"] == traceback["text"]
    assert (printed["level"], printed["node_id"], printed["role"]) == ("error", "node-1", "node")
    assert printed["prompt_id"] == traceback["prompt_id"]

    got: list[dict[str, Any]] = []

    async def logdy_lines() -> list[dict[str, Any]]:
        while not logdy.lines.empty():
            got.append(logdy.lines.get_nowait()[1])
        return traceback_of([ln for ln in got if ln.get("job_id") == job["id"]])

    [shipped] = await until(logdy_lines, bool, what="the traceback at Logdy")
    assert shipped["event"] == traceback["text"]
    assert (shipped["source"], shipped["node_id"]) == ("comfyui", "node-1")


async def test_job_logs_refuse_bad_requests_clearly(api: Api) -> None:
    status, body = await api.get("/api/v1/jobs/0123456789abcdef0123456789abcdef/logs")
    assert (status, body["status"]) == (404, 404)
    status, job = await api.post_job(job_body())
    await api.finished(job["id"])
    status, body = await api.get(f"/api/v1/jobs/{job['id']}/logs?attempt=zero")
    assert status == 400
    assert "attempt" in body["detail"]
    status, body = await api.get(f"/api/v1/jobs/{job['id']}/logs?attempt=1")
    assert status == 200
    assert [a["attempt"] for a in body["attempts"]] == [1]
