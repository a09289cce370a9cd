"""The same prompt posted to a bare ComfyUI stand-in and to the fleet gives the client the
same frame sequence: frame types, their order, their fields, and every value but the ones
that name this run (ids, timestamps, file names, the job's output subfolder)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from comfyfleet.cli.fleet import Fleet
from comfyfleet.config import SimConfig
from comfyfleet.sim import create_app as sim_app
from tests.native.conftest import workflow
from tests.native.test_ws_client import run_like_the_example

# Values that differ between any two runs, even on one ComfyUI.
RUN_NAMES = frozenset({"prompt_id", "timestamp", "sid", "filename", "subfolder"})


def shape(value: Any) -> Any:
    """`value` with the run's names blanked (kept as keys, so a missing field still shows)."""
    if isinstance(value, dict):
        return {k: "<run>" if k in RUN_NAMES else shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return value


def sequence(frames: list[Any]) -> list[Any]:
    return [shape(f) if isinstance(f, dict) else ("binary", bytes(f[:8])) for f in frames]


def unseen(graph: dict[str, Any]) -> dict[str, Any]:
    """`graph` made a prompt neither ComfyUI has run: ComfyUI serves a node whose inputs it
    ran last time from its cache (`execution_cached`), and which stand-in of the fleet ran
    what before depends on the tests before this one. Every source node and every save
    gets a value of this run."""
    for node in graph.values():
        inputs = node["inputs"]
        if "filename_prefix" in inputs:
            inputs["filename_prefix"] += uuid.uuid4().hex[:8]
        if "color" in inputs:
            inputs["color"] = random.randrange(1 << 24)
        if node["class_type"] == "SolidMask":
            inputs["value"] = random.random()
    return graph


@pytest.fixture
async def stand_in() -> AsyncIterator[str]:
    async with TestServer(
        sim_app(SimConfig(port=0, node_ms=5, step_ms=5)), host="127.0.0.1"
    ) as sim:
        yield str(sim.make_url("")).rstrip("/")


@pytest.mark.parametrize("name", ["a_empty_save", "d_two_outputs", "j_mask_composite"])
async def test_same_frames_as_a_bare_stand_in(fleet: Fleet, stand_in: str, name: str) -> None:
    graph = unseen(workflow(name))
    _id, bare, _h, bare_images = await run_like_the_example(stand_in, graph)
    _id, fleet_frames, _h, fleet_images = await run_like_the_example(fleet.balancer_url, graph)
    assert sequence(fleet_frames) == sequence(bare)
    assert len(fleet_images) == len(bare_images)


async def _fail_saves(http: aiohttp.ClientSession, sims: list[str], fail: bool) -> None:
    for sim in sims:
        body = {"fail_node_types": ["SaveImage"] if fail else []}
        async with http.post(f"{sim}/sim/faults", json=body) as r:
            assert r.status == 200


async def test_same_error_frames_as_a_bare_stand_in(fleet: Fleet, stand_in: str) -> None:
    graph = unseen(workflow("a_empty_save"))
    sims = [stand_in, fleet.sim_url(0), fleet.sim_url(1)]
    async with aiohttp.ClientSession() as http:
        await _fail_saves(http, sims, True)
        try:
            _id, bare, bare_history, _i = await run_like_the_example(stand_in, graph)
            _id, ours, history, _i = await run_like_the_example(fleet.balancer_url, graph)
        finally:
            await _fail_saves(http, sims, False)
    assert "execution_error" in [f["type"] for f in bare]
    assert sequence(ours) == sequence(bare)
    assert history["status"]["status_str"] == bare_history["status"]["status_str"] == "error"
