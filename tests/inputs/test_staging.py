"""The node's side: a job's uploads go into ComfyUI (a stand-in in this process) under the
name ComfyUI answers, which differs when another file already has the name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from comfyfleet.blobs import BlobStore
from comfyfleet.comfy import ComfyClient
from comfyfleet.config import RedisConfig, SimConfig
from comfyfleet.node.inputs import InputMissing, input_error, stage_inputs
from comfyfleet.sim import create_app
from comfyfleet.store.connect import connect
from comfyfleet.store.inputs import InputStore
from comfyfleet.store.keys import Keys
from tests.inputs.samples import png


@pytest.fixture
async def comfy(tmp_path: Path) -> AsyncIterator[ComfyClient]:
    runner = web.AppRunner(create_app(SimConfig(port=0, data_dir=str(tmp_path / "sim"))))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    client = ComfyClient(f"http://127.0.0.1:{runner.addresses[0][1]}")
    yield client
    await client.close()
    await runner.cleanup()


@pytest.fixture
async def inputs(redis_config: RedisConfig, blobs: BlobStore) -> AsyncIterator[InputStore]:
    """Inputs in each blob store in turn: inline in Redis, and objects in S3."""
    redis = connect(redis_config)
    yield InputStore(redis, Keys(redis_config.namespace), blobs=blobs)
    await redis.aclose()


def load(name: str) -> dict[str, Any]:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": name}}}


async def test_uploads_are_staged_and_renamed_as_comfyui_answers(
    comfy: ComfyClient, inputs: InputStore
) -> None:
    stored = await inputs.put(png(8, 8, seed=1))
    graph = load(stored.name)
    assert await stage_inputs(graph, inputs, comfy) == graph  # same name: kept
    # Another file took the name in ComfyUI's input folder: ComfyUI renames ours.
    form = aiohttp.FormData()
    form.add_field("image", png(8, 8, seed=2), filename=stored.name, content_type="image/png")
    form.add_field("overwrite", "true")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{comfy.base_url}/upload/image", data=form) as r,
    ):
        assert r.status == 200
    staged = await stage_inputs(graph, inputs, comfy)
    assert staged["1"]["inputs"]["image"] == stored.name.replace(".png", " (1).png")
    assert graph["1"]["inputs"]["image"] == stored.name, "the job's own graph is not changed"
    assert await stage_inputs(load("example.png"), inputs, comfy) == load("example.png")


async def test_a_missing_upload_fails_the_job_for_good(
    comfy: ComfyClient, inputs: InputStore
) -> None:
    with pytest.raises(InputMissing) as missing:
        await stage_inputs(load(f"cfin_{'2' * 32}.png"), inputs, comfy)
    error = input_error("n1", missing.value)
    assert (error.code, error.retryable) == ("input_missing", False)


async def test_an_input_whose_bytes_are_gone_is_missing(
    comfy: ComfyClient, inputs: InputStore, blobs: BlobStore
) -> None:
    stored = await inputs.put(png(8, 8, seed=4))
    if blobs.kind == "s3":
        assert await blobs.size(f"inputs/{stored.id}") == stored.size  # the bytes are there
        await blobs.delete([f"inputs/{stored.id}"])  # e.g. a lifecycle rule removed them
    else:
        await inputs.redis.delete(inputs.keys.input(stored.id))
    with pytest.raises(InputMissing):
        await stage_inputs(load(stored.name), inputs, comfy)
