"""One node process running its ComfyUI: a command that dies at once is retried with a
growing backoff while the node reports `unhealthy` with its last lines; the ComfyUI dies
with the node, even when the node is SIGKILLed; a clean stop stops it too."""

from __future__ import annotations

import asyncio
import itertools
import shlex
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from comfyfleet.cli.fleet import Proc
from comfyfleet.node.supervisor import port_is_free
from tests.node_process.conftest import get_json, json_lines, process_state, sim_cmd
from tests.support.waiting import until

Start = Callable[..., tuple[Proc, str]]
CRASH = shlex.join([sys.executable, "-c", "import sys; print('starting', flush=True); "
                    "sys.exit('RuntimeError: no CUDA GPUs are available')"])  # fmt: skip


async def _running(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async def node() -> Any:
        try:
            return await get_json(http, f"{url}/api/v1/node")
        except aiohttp.ClientError:
            return {}

    info = await until(
        node, lambda n: (n.get("comfy_process") or {}).get("state") == "running",
        timeout_s=60, what="the node's ComfyUI to run",
    )  # fmt: skip
    return dict(info)


def _stamp(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


async def test_a_command_that_dies_at_once_is_retried_with_backoff_and_reported(
    nodes: Start, http: aiohttp.ClientSession
) -> None:
    proc, url = nodes(CRASH, "--comfy-restart-delay", "0.1")
    await asyncio.to_thread(proc.wait_healthy)

    async def node() -> Any:
        return await get_json(http, f"{url}/api/v1/node")

    info = await until(node, lambda n: n["comfy_process"]["starts"] >= 4, timeout_s=30,
                       what="four tries")  # fmt: skip
    assert info["state"] == "unhealthy"
    assert not info["comfy_healthy"]
    process = info["comfy_process"]
    assert process["last_exit"] == "exit code 1"
    assert "RuntimeError: no CUDA GPUs are available" in process["last_lines"]
    assert "starting" in process["last_lines"]
    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 503

    lines = json_lines(proc.log_path)
    ended = [ln for ln in lines if ln["event"] == "comfy_process_ended"]
    starts = [_stamp(ln) for ln in lines if ln["event"] == "comfy_process_started"]
    delays = [ln["restart_in_s"] for ln in ended[:3]]
    assert delays == [0.1, 0.2, 0.4]  # doubling, not a tight loop
    for (earlier, later), delay in zip(itertools.pairwise(starts), delays, strict=False):
        assert later - earlier >= delay  # each try waited its backoff at least
    errors = [ln for ln in lines if ln.get("source") == "comfyui" and ln["stream"] == "stderr"]
    assert errors
    assert errors[0]["event"] == "RuntimeError: no CUDA GPUs are available"
    assert errors[0]["level"] == "error"


async def test_comfyui_dies_with_a_sigkilled_node(
    nodes: Start, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    proc, url = nodes(sim_cmd(tmp_path / "sim"), "--comfy-restart-delay", "0.1")
    info = await _running(http, url)
    child, port = info["comfy_process"]["pid"], info["comfy_process"]["port"]
    assert process_state(child) not in (None, "Z")
    assert not port_is_free(port)
    proc.kill()  # SIGKILL: the node runs no cleanup at all

    async def child_and_port() -> tuple[str | None, bool]:
        return process_state(child), port_is_free(port)

    # Gone (or a zombie nobody reaps in this container: it holds nothing) and its port
    # free, within 2 s of the kill.
    await until(child_and_port, lambda s: s[0] in (None, "Z") and s[1], timeout_s=2.0,
                what="the child to die and free its port")  # fmt: skip


async def test_a_stopped_node_stops_its_comfyui_first(
    nodes: Start, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    proc, url = nodes(sim_cmd(tmp_path / "sim"))
    info = await _running(http, url)
    child = info["comfy_process"]["pid"]
    assert proc.process is not None
    proc.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.process.wait, 30)
    assert code == 0
    assert process_state(child) in (None, "Z")
    lines = json_lines(proc.log_path)
    assert not any(ln["event"] == "comfy_process_kill" for ln in lines)  # SIGTERM sufficed
    assert any(ln["event"] == "node_started" for ln in lines)
