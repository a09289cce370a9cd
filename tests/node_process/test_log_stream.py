"""The log stream of a ComfyUI the node did not start (`--comfy-url`): backlog from
`/internal/logs/raw`, then the socket's `logs` frames, again after a reconnect without
taking a line twice; a failing node's traceback reaches the job's logs, stdout and Logdy."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp.test_utils import TestServer

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.comfy import ComfyClient, ComfyOptions
from comfyfleet.config import (
    BalancerConfig,
    LogConfig,
    NodeConfig,
    RedisConfig,
    ServerConfig,
    SimConfig,
)
from comfyfleet.logs.setup import configure_logging
from comfyfleet.models.job import JobSpec
from comfyfleet.node.app import create_app as node_app
from comfyfleet.node.comfy_lines import ComfyLine
from comfyfleet.node.comfy_stream import LogStreamFollower
from comfyfleet.sim import SIM_STATE
from comfyfleet.sim import create_app as sim_app
from comfyfleet.store.jobs import JobStore
from comfyfleet.tasks import stop
from tests.logs.conftest import LineServer
from tests.support.waiting import until

FAST = ComfyOptions(reconnect_initial_s=0.02, reconnect_max_s=0.1, ws_heartbeat_s=None)
GRAPH = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 7}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}  # fmt: skip


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def sim() -> AsyncIterator[TestServer]:
    async with TestServer(sim_app(SimConfig(port=0, node_ms=5)), host="127.0.0.1") as server:
        yield server


async def test_backlog_then_live_lines_and_a_reconnect_takes_nothing_twice(
    sim: TestServer,
) -> None:
    state = sim.app[SIM_STATE]
    state.hub.log("before the node came")
    got: list[ComfyLine] = []
    comfy = ComfyClient(str(sim.make_url("")), options=FAST)
    follower = LogStreamFollower(comfy, got.append)
    task = asyncio.create_task(follower.run())
    try:

        async def texts() -> list[str]:
            return [line.text for line in got]

        await until(texts, lambda t: "before the node came" in t, what="the backlog")
        assert all(line.replayed for line in got)  # no prompt can be told for old lines
        assert {line.stream for line in got} == {"log"}
        state.hub.log("live line")
        await until(texts, lambda t: "live line" in t, what="a live line")
        assert not got[-1].replayed
        await comfy.socket.drop()
        await until(lambda: _connected(comfy), bool, what="the socket back")
        state.hub.log("after the reconnect")
        await until(texts, lambda t: "after the reconnect" in t, what="a line after reconnect")
        seen = await texts()
        assert len(seen) == len(set(seen))  # the resync took nothing twice
    finally:
        await stop(task)
        await comfy.close()


async def _connected(comfy: ComfyClient) -> bool:
    return comfy.socket.connections >= 2 and comfy.socket.connected.is_set()


async def test_an_external_comfyuis_traceback_reaches_job_logs_stdout_and_logdy(
    sim: TestServer, redis_config: RedisConfig, restore_logging: None
) -> None:
    sim.app[SIM_STATE].faults.fail_node_types = {"SaveImage"}
    out = io.StringIO()
    logdy = await LineServer().start()
    sink = configure_logging(LogConfig(logdy=f"127.0.0.1:{logdy.port}"), role="node", stream=out)
    assert sink is not None
    await sink.start()
    node_cfg = NodeConfig(server=ServerConfig(port=0), redis=redis_config, node_id="ext",
                          comfy_url=str(sim.make_url("")).rstrip("/"))  # fmt: skip
    store = JobStore.from_config(redis_config)
    try:
        async with (
            TestServer(node_app(node_cfg), host="127.0.0.1"),
            TestServer(balancer_app(BalancerConfig(server=ServerConfig(port=0),
                                                   redis=redis_config)),
                       host="127.0.0.1") as balancer,
        ):  # fmt: skip
            job, _ = await store.enqueue(JobSpec(graph=GRAPH))
            done = await until(lambda: store.get(job.id), lambda j: j is not None and
                               j.is_terminal, what="the job to fail")  # fmt: skip
            assert done is not None
            assert done.status.value == "failed"
            body = await _job_logs(balancer, job.id)
    finally:
        await store.close()
        await sink.aclose()
        await logdy.aclose()
    [attempt] = body["attempts"]
    [traceback] = [ln for ln in attempt["lines"] if ln["text"].startswith("Traceback")]
    assert traceback["stream"] == "log"
    assert traceback["comfy_t"]  # ComfyUI's own timestamp of the entry
    assert traceback["text"].endswith(
        "InjectedFailure: sim: injected failure in SaveImage (node 2)"
    )
    printed = [orjson.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    mine = [p for p in printed if p.get("source") == "comfyui" and p.get("job_id") == job.id]
    assert traceback["text"] in [p["event"] for p in mine]
    shipped: list[dict[str, Any]] = []
    while not logdy.lines.empty():
        shipped.append(logdy.lines.get_nowait()[1])
    assert traceback["text"] in [s["event"] for s in shipped if s.get("job_id") == job.id]


async def _job_logs(balancer: TestServer, job_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:

        async def read() -> dict[str, Any]:
            async with http.get(str(balancer.make_url(f"/api/v1/jobs/{job_id}/logs"))) as r:
                assert r.status == 200
                return dict(await r.json())

        def has_traceback(body: dict[str, Any]) -> bool:
            lines = body["attempts"][0]["lines"] if body["attempts"] else []
            return any(ln["text"].startswith("Traceback") for ln in lines)

        return await until(read, has_traceback, what="the traceback in the job's logs")
