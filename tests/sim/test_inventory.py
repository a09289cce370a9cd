"""A stand-in's inventory is configurable, so a fleet can have unlike nodes: model files
(`--models`), a class the built-ins lack (`--extra-class`), a built-in left out
(`--without-class`)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from comfyfleet.config import SimConfig
from tests.sim.conftest import Sim, start_sim

PROMPT = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "MyCustomNode", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
}  # fmt: skip


async def test_extra_and_left_out_classes_and_models(tmp_path: Path) -> None:
    config = SimConfig(
        port=0, node_ms=1, step_ms=1, data_dir=str(tmp_path),
        models={"checkpoints": ("a.safetensors",)},
        extra_classes=("MyCustomNode",), without_classes=("ImageInvert",),
    )  # fmt: skip
    runner, base = await start_sim(config)
    try:
        async with aiohttp.ClientSession() as session:
            sim = Sim(base, session, runner.app)
            _, info, _ = await sim.request("GET", "/object_info")
            assert "MyCustomNode" in info
            assert "ImageInvert" not in info
            assert "EmptyImage" in info
            ckpt = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
            assert ckpt == ["a.safetensors"]
            status, body = await sim.post_prompt(PROMPT)
            assert status == 200, body
            history = await sim.wait_history(body["prompt_id"])
            assert history["status"]["status_str"] == "success"
            invert = {**PROMPT, "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}}
            status, body = await sim.post_prompt(invert)
            assert status == 400, body
    finally:
        await runner.cleanup()
