"""Fault injection: each fault does what it says, from config, the API or /sim/faults."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from comfyfleet.config import SimConfig
from tests.sim.conftest import DEADLINE_S, Sim
from tests.support.traces import workflow


@pytest.fixture
def sim_config(tmp_path: Path) -> SimConfig:
    return SimConfig(
        port=0,
        node_ms=1,
        step_ms=1,
        data_dir=str(tmp_path),
        fail_node_types=("ImageInvert",),
        reject_prompts=1,
    )


async def test_fail_node_type_gives_an_execution_error_there(sim: Sim) -> None:
    await sim.request("POST", "/sim/faults", json={"reject_prompts": 0})
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    _, body = await sim.post_prompt(workflow("d_two_outputs"), client_id=client_id)
    await sock.until_done(body["prompt_id"])
    error = next(m for m in sock.messages if m["type"] == "execution_error")["data"]
    assert (error["node_id"], error["node_type"]) == ("3", "ImageInvert")
    assert error["exception_type"] == "comfyfleet.sim.faults.InjectedFailure"
    assert error["executed"] == ["1", "2"]
    entry = await sim.wait_history(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    assert list(entry["outputs"]) == ["2"]
    status, settings, _ = await sim.request("POST", "/sim/faults", json={"fail_node_types": []})
    assert status == 200
    assert settings["fail_node_types"] == []
    _, again = await sim.post_prompt(workflow("d_two_outputs"))
    assert (await sim.wait_history(again["prompt_id"]))["status"]["status_str"] == "success"


async def test_reject_prompts_answers_500(sim: Sim) -> None:
    async with sim.session.post(
        sim.base + "/prompt", json={"prompt": workflow("a_empty_save")}
    ) as resp:
        assert resp.status == 500
        assert await resp.text() == "500 Internal Server Error\n\nServer got itself in trouble"
    assert (await sim.post_prompt(workflow("a_empty_save")))[0] == 200
    await sim.request("POST", "/sim/faults", json={"reject_prompts": -1})
    for _ in range(3):
        assert (await sim.post_prompt(workflow("a_empty_save")))[0] == 500
    assert (await sim.request("GET", "/sim/faults"))[1]["reject_prompts"] == -1


async def test_stall_stops_frames_and_execution_until_resumed(sim: Sim) -> None:
    await sim.request("POST", "/sim/faults", json={"reject_prompts": 0, "fail_node_types": []})
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    _status, settings, _ = await sim.request("POST", "/sim/faults", json={"stall": True})
    assert settings["stalled"] is True
    _, body = await sim.post_prompt(workflow("a_empty_save"), client_id=client_id)
    assert await sock.silent()
    assert await sim.history(body["prompt_id"]) == {}
    await sim.request("POST", "/sim/faults", json={"stall": False})
    await sock.until_done(body["prompt_id"])


async def test_timed_stall_resumes_by_itself(sim: Sim) -> None:
    await sim.request("POST", "/sim/faults", json={"reject_prompts": 0})
    await sim.request("POST", "/sim/faults", json={"stall": True, "stall_ms": 50})
    assert sim.state.faults.stalled
    await sim.wait_for(lambda: not sim.state.faults.stalled)


async def test_stall_after_nodes_holds_the_job_mid_way(sim: Sim) -> None:
    await sim.request(
        "POST",
        "/sim/faults",
        json={"reject_prompts": 0, "fail_node_types": [], "stall_after_nodes": 1},
    )
    _, body = await sim.post_prompt(workflow("a_empty_save"))
    await sim.wait_for(lambda: sim.state.faults.stalled)
    assert len(sim.state.queue.running) == 1
    sim.state.faults.resume()
    assert (await sim.wait_history(body["prompt_id"]))["status"]["status_str"] == "success"


async def test_drop_websockets_mid_job_and_on_demand(sim: Sim) -> None:
    await sim.request(
        "POST",
        "/sim/faults",
        json={"reject_prompts": 0, "fail_node_types": [], "drop_ws_after_nodes": 1},
    )
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    _, body = await sim.post_prompt(workflow("d_two_outputs"), client_id=client_id)
    async with asyncio.timeout(DEADLINE_S):
        while (await sock.ws.receive()).type not in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
        ):
            pass
    # The job goes on without its client and lands in history.
    assert (await sim.wait_history(body["prompt_id"]))["status"]["status_str"] == "success"
    other = await sim.ws(uuid.uuid4().hex)
    await sim.request("POST", "/sim/faults", json={"drop_ws": True})
    async with asyncio.timeout(DEADLINE_S):
        while (await other.ws.receive()).type not in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
        ):
            pass


async def test_die_after_nodes_calls_exit(sim: Sim) -> None:
    exits: list[int] = []
    sim.state.faults.die = exits.append
    await sim.request(
        "POST",
        "/sim/faults",
        json={"reject_prompts": 0, "fail_node_types": [], "die_after_nodes": 3},
    )
    _, body = await sim.post_prompt(workflow("d_two_outputs"))
    await sim.wait_history(body["prompt_id"])
    assert exits == [137]


async def test_bad_fault_body_is_a_400(sim: Sim) -> None:
    status, body, _ = await sim.request("POST", "/sim/faults", json={"fail_node_types": "x"})
    assert status == 400
    assert "error" in body


def _start_cli(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "comfyfleet", "sim", "--data-dir", str(tmp_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on http://" in line, proc.stderr.read() if proc.stderr else line
    return proc, line.strip().rsplit(" ", 1)[1]


async def test_cli_die_after_nodes_kills_the_process(tmp_path: Path) -> None:
    proc, url = _start_cli(tmp_path, "--port", "0", "--die-after-nodes", "1", "--node-ms", "1")
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/prompt", json={"prompt": workflow("a_empty_save")}) as r,
        ):
            assert r.status == 200
        code = await asyncio.wait_for(asyncio.to_thread(proc.wait), DEADLINE_S)
        assert code == 137
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


async def test_cli_env_twins_and_clean_sigterm(tmp_path: Path) -> None:
    proc, url = _start_cli(
        tmp_path,
        SIM_PORT="0",
        SIM_NODE_MS="1",
        SIM_MODELS="checkpoints=z.safetensors",
        SIM_FAIL_NODE_TYPE="SaveImage",
    )
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/models/checkpoints") as r:
                assert await r.json() == ["z.safetensors"]
            async with session.get(url + "/sim/faults") as r:
                assert (await r.json())["fail_node_types"] == ["SaveImage"]
        proc.terminate()
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), DEADLINE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_help_lists_the_options() -> None:
    from typer.testing import CliRunner

    from comfyfleet.cli import app

    result = CliRunner().invoke(app, ["sim", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--node-ms",
        "--step-ms",
        "--models",
        "--data-dir",
        "--fail-node-type",
        "--reject-prompts",
        "--stall-after-nodes",
        "--stall-ms",
        "--drop-ws-after-nodes",
        "--die-after-nodes",
        "SIM_NODE_MS",
    ):
        assert option in result.output
