"""The standard SD nodes: model inventory in combos, sampler progress and previews."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.config import SimConfig, parse_models
from tests.sim.conftest import Sim
from tests.sim.pngcheck import check_png


def txt2img(ckpt: str = "v1-5-pruned-emaonly.safetensors", steps: int = 3) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 96, "height": 64, "batch_size": 2},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 42,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "sd", "images": ["8", 0]}},
    }


@pytest.fixture
def sim_config(tmp_path: Path) -> SimConfig:
    models = parse_models(
        ["checkpoints=v1-5-pruned-emaonly.safetensors,b.safetensors", "loras=x.safetensors"]
    )
    return SimConfig(port=0, node_ms=1, step_ms=1, data_dir=str(tmp_path), models=models)


@pytest.mark.parametrize("metadata", [False, True])
async def test_txt2img_progress_previews_and_output(sim: Sim, metadata: bool) -> None:
    client_id = uuid.uuid4().hex
    flags = {"supports_preview_metadata": True} if metadata else None
    sock = await sim.ws(client_id, flags=flags)
    status, body = await sim.post_prompt(txt2img(), client_id=client_id)
    assert status == 200, body
    await sock.until_done(body["prompt_id"])
    progress = [m["data"] for m in sock.messages if m["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [
        (1, 3, "3"),
        (2, 3, "3"),
        (3, 3, "3"),
    ]
    previews = [f for f in sock.frames if isinstance(f, bytes)]
    assert len(previews) == 3
    assert {struct.unpack(">I", f[:4])[0] for f in previews} == ({4} if metadata else {1})
    entry = await sim.wait_history(body["prompt_id"])
    images = entry["outputs"]["9"]["images"]
    root = sim.state.storage.root
    assert [check_png((root / "output" / i["filename"]).read_bytes()) for i in images] == [
        (96, 64),
        (96, 64),
    ]
    files = [(root / "output" / i["filename"]).read_bytes() for i in images]
    assert files[0] != files[1]  # per-image noise from the seed


async def test_unknown_checkpoint_fails_validation(sim: Sim) -> None:
    status, body = await sim.post_prompt(txt2img("missing.safetensors"))
    assert status == 400
    (error,) = body["node_errors"]["4"]["errors"]
    assert error["type"] == "value_not_in_list"
    assert error["details"] == (
        "ckpt_name: 'missing.safetensors' not in "
        "['b.safetensors', 'v1-5-pruned-emaonly.safetensors']"
    )
    assert body["node_errors"]["4"]["dependent_outputs"] == ["9"]


async def test_lora_loader_uses_the_lora_inventory(sim: Sim) -> None:
    prompt = txt2img()
    prompt["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "lora_name": "x.safetensors",
            "strength_model": 1.0,
            "strength_clip": 1.0,
        },
    }
    prompt["3"]["inputs"]["model"] = ["10", 0]
    status, body = await sim.post_prompt(prompt)
    assert status == 200
    assert body["node_errors"] == {}
    assert (await sim.wait_history(body["prompt_id"]))["status"]["status_str"] == "success"
    prompt["10"]["inputs"]["lora_name"] = "nope.safetensors"
    assert (await sim.post_prompt(prompt))[0] == 400
    _, info, _ = await sim.request("GET", "/object_info/LoraLoader")
    assert info["LoraLoader"]["input"]["required"]["lora_name"][0] == ["x.safetensors"]
