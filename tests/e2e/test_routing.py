"""Capability routing on a real fleet: three stand-ins with different node classes and
model files (`comfyfleet sim --models / --extra-class / --without-class`), each behind a
real node, one balancer. Every job lands on a node that can run it, a mixed queue drains
without a job only one node can run holding back the rest, and a prompt no node can run
is refused at submit, naming what is missing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from comfyfleet.cli.fleet import Fleet
from comfyfleet.redis_server import RedisServer
from tests.e2e.conftest import Api, fleet_spec
from tests.support.waiting import until

SIM_ARGS = [
    ["--models", "checkpoints=a.safetensors", "--extra-class", "Sharpen2x"],
    ["--models", "checkpoints=b.safetensors"],
    ["--models", "checkpoints=a.safetensors", "--without-class", "ImageInvert"],
]
# Which nodes can run what: node-1 alone has Sharpen2x; node-2 alone has b.safetensors;
# node-3 lacks ImageInvert.
CAN_RUN = {
    "custom": {"node-1"},
    "model_b": {"node-2"},
    "invert": {"node-1", "node-2"},
    "basic": {"node-1", "node-2", "node-3"},
}


@pytest.fixture(scope="module")
def routed_fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    # Seven processes start at once: allow for a loaded machine.
    spec = fleet_spec(
        redis_server, tmp_path_factory, nodes=3, sim_args=SIM_ARGS, node_ms=20, ready_timeout_s=240
    )
    with Fleet(spec) as fleet:
        yield fleet


@pytest.fixture
async def rapi(routed_fleet: Fleet, http: aiohttp.ClientSession) -> Api:
    api = Api(http, routed_fleet.balancer_url)

    async def digests() -> list[Any]:
        _, body = await api.get("/api/v1/nodes")
        return [n.get("inventory_digest") for n in body["nodes"]]

    # Every node has published its inventory and the balancer's look at the fleet is fresh.
    await until(digests, lambda d: len(d) == 3 and all(d), what="three inventories")
    return api


def graph(kind: str) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2"], "filename_prefix": kind}},
    }  # fmt: skip
    middle = {"custom": "Sharpen2x", "invert": "ImageInvert"}.get(kind, "ImageBlur")
    nodes["2"] = {"class_type": middle, "inputs": {"image": ["1", 0]}}
    if middle == "ImageBlur":
        nodes["2"]["inputs"].update(blur_radius=1, sigma=1.0)
    nodes["9"]["inputs"]["images"] = ["2", 0]
    if kind == "model_b":
        # A loader no output depends on still makes the prompt need its file.
        nodes["5"] = {"class_type": "CheckpointLoaderSimple",
                      "inputs": {"ckpt_name": "b.safetensors"}}  # fmt: skip
    return nodes


async def submit(api: Api, kind: str) -> str:
    status, job = await api.post_job({"graph": graph(kind)})
    assert status == 202, job
    return str(job["id"])


async def test_every_job_lands_on_a_node_that_can_run_it(rapi: Api) -> None:
    jobs = [(kind, await submit(rapi, kind)) for _ in range(4) for kind in CAN_RUN]
    for kind, job_id in jobs:
        done = await rapi.finished(job_id)
        assert done["status"] == "succeeded", done
        assert done["node_id"] in CAN_RUN[kind], (kind, done["node_id"])


async def test_a_mixed_queue_drains_without_head_of_line_blocking(rapi: Api) -> None:
    # 30 jobs only node-1 can run, queued first, then 10 any node can run.
    only_one = [await submit(rapi, "custom") for _ in range(30)]
    anywhere = [await submit(rapi, "basic") for _ in range(10)]
    ended = {job_id: await rapi.finished(job_id, timeout_s=120) for job_id in only_one + anywhere}
    assert {ended[j]["node_id"] for j in only_one} == {"node-1"}
    # The jobs behind were not held back: every one of them started before node-1 was
    # through the jobs only it could run (times are the fleet's own stamps).
    last_custom_start = max(ended[j]["started_ms"] for j in only_one)
    assert all(ended[j]["started_ms"] < last_custom_start for j in anywhere)
    assert {ended[j]["node_id"] for j in anywhere} - {"node-1"}


async def test_a_prompt_no_node_can_run_is_refused_naming_what_is_missing(rapi: Api) -> None:
    nodes = graph("basic")
    nodes["2"]["class_type"] = "NoSuchNode"
    status, problem = await rapi.post_job({"graph": nodes})
    assert status == 400, problem
    assert problem["code"] == "no-capable-node"
    assert problem["missing_classes"] == ["NoSuchNode"]
    assert "NoSuchNode" in problem["detail"]
    nodes = graph("model_b")
    nodes["5"]["inputs"]["ckpt_name"] = "c.safetensors"
    status, problem = await rapi.post_job({"graph": nodes})
    assert status == 400, problem
    assert [f["name"] for f in problem["missing_files"]] == ["c.safetensors"]
    assert "c.safetensors" in problem["detail"]
    # Parts on different nodes, none with all of them: refused too.
    nodes = graph("custom")
    nodes["5"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "b.safetensors"}}
    status, problem = await rapi.post_job({"graph": nodes})
    assert status == 400, problem
    assert "no single node" in problem["detail"]
