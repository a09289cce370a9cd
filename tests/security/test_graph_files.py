"""Finding 3: a raw graph read files on the GPU box (`LoadImage` of an absolute path, then
`SaveImage`, returned the file's pixels). Every input that names a file is checked, once,
at submit; and finding 8's CR/LF in a `SaveImage` prefix is refused there too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfyfleet.config import RedisConfig
from comfyfleet.models.file_inputs import file_inputs_of, names_a_file
from comfyfleet.sim import images
from comfyfleet.sim.catalogue import Catalogue, inventory
from comfyfleet.sim.nodespecs import builtin_classes
from tests.security.fleet import fleet
from tests.security.graphs import load_and_save, solid


def _graph_with(klass: str, inputs: dict[str, Any]) -> dict[str, Any]:
    graph = solid()
    graph["9"] = {"class_type": klass, "inputs": inputs}
    return graph


async def test_loadimage_of_an_absolute_path_is_refused(
    redis_config: RedisConfig, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(images.encode_png(images.noise(4, 4, 1)))
    async with fleet(redis_config, node=True) as f:
        status, problem = await f.json("POST", "/api/v1/jobs?wait=20",
                                       json={"graph": load_and_save(str(secret))})  # fmt: skip
        assert status == 422, problem
        assert problem["code"] == "graph-invalid"
        assert problem["node"] == "1"
        assert problem["input"] == "image"
        assert "absolute path" in problem["detail"]


REFUSED = [
    ("LoadImage", "image", "/etc/passwd"),
    ("LoadImage", "image", "../../../../etc/passwd"),
    ("LoadImage", "image", "sub/../../x.png"),
    ("LoadImage", "image", "C:\\Windows\\win.ini"),
    ("LoadImage", "image", "c:/x.png"),
    ("LoadImage", "image", "\\\\host\\share\\x.png"),
    ("LoadImage", "image", "~/x.png"),
    ("LoadImage", "image", "x.png\x00.jpg"),
    ("LoadImage", "image", "x\r\n.png"),
    ("LoadImageMask", "image", "/abs/mask.png"),
    ("CheckpointLoaderSimple", "ckpt_name", "../../secrets/model.safetensors"),
    ("VAELoader", "vae_name", "/models/vae.pt"),
    ("LoraLoader", "lora_name", "..\\..\\x.safetensors"),
    ("SaveImage", "filename_prefix", "a\r\nb"),
    ("SaveImage", "filename_prefix", "ok\tname"),
    ("SaveImage", "filename_prefix", "../outside"),
    ("SomeCustomLoader", "source", "/var/lib/secret.bin"),
    ("SomeCustomNode", "text", "prompt with a NUL\x00"),
]


@pytest.mark.parametrize(("klass", "name", "value"), REFUSED)
async def test_every_input_naming_a_file_is_checked(
    redis_config: RedisConfig, klass: str, name: str, value: str
) -> None:
    async with fleet(redis_config) as f:
        body = {"graph": _graph_with(klass, {name: value})}
        status, problem = await f.json("POST", "/api/v1/jobs", json=body)
        assert status == 422, problem
        assert problem["code"] == "graph-invalid"
        assert (problem["node"], problem["input"]) == ("9", name)


ACCEPTED = [
    ("LoadImage", "image", "sub/photo.png"),
    ("LoadImage", "image", "photo.png [output]"),
    ("SaveImage", "filename_prefix", "%date:yyyy-MM-dd%/run"),
    ("CheckpointLoaderSimple", "ckpt_name", "sd15\\v1-5.safetensors"),
    ("CLIPTextEncode", "text", "a fox...\n/imagine a C:/ prompt ../ with\ttabs"),
    ("CLIPTextEncode", "text", "a cat.. sitting on AC/DC"),
]


@pytest.mark.parametrize(("klass", "name", "value"), ACCEPTED)
async def test_relative_names_and_free_text_pass(
    redis_config: RedisConfig, klass: str, name: str, value: str
) -> None:
    async with fleet(redis_config) as f:
        body = {"graph": _graph_with(klass, {name: value})}
        status, job = await f.json("POST", "/api/v1/jobs", json=body)
        assert status == 202, job


def test_the_name_rule_covers_every_file_input_comfyui_reports() -> None:
    """The balancer's conservative rule, held against ComfyUI 0.3.64's object_info (as the
    stand-in serves it, with model folders filled and empty): every input object_info marks
    as a file list or an upload is named like a file."""
    for models in ({}, {"checkpoints": ("a.safetensors",), "loras": ("l.safetensors",),
                        "vae": ("v.pt",), "upscale_models": ("u.pth",)}):  # fmt: skip
        info = Catalogue(builtin_classes(), inventory(models), ("in.png",)).object_info()
        found = file_inputs_of(info)
        assert {"LoadImage", "CheckpointLoaderSimple", "LoraLoader"} <= set(found)
        missed = {(k, n) for k, names in found.items() for n in names if not names_a_file(n)}
        assert not missed


@pytest.mark.parametrize(
    "checkpoint", ["../../../../etc/passwd", "/models/x.safetensors", "C:\\x", "a\r\nb"]
)
async def test_a_workflow_param_bound_to_a_file_input_is_checked(
    redis_config: RedisConfig, checkpoint: str
) -> None:
    """txt2img's `checkpoint` is a string param bound to `ckpt_name`: the rendered value is
    a file name like any other."""
    async with fleet(redis_config) as f:
        body = {"workflow": "txt2img", "params": {"prompt": "a fox", "checkpoint": checkpoint}}
        status, problem = await f.json("POST", "/api/v1/jobs", json=body)
        assert status == 422, problem
        assert problem["input"] == "ckpt_name"


async def test_workflow_defaults_and_free_text_params_pass(redis_config: RedisConfig) -> None:
    bodies = [
        {"workflow": "solid"},
        {"workflow": "txt2img", "params": {"prompt": "/imagine\n../a fox"}},
        {"workflow": "txt2img", "params": {"prompt": "fox", "checkpoint": "sd/v1.safetensors"}},
    ]
    async with fleet(redis_config) as f:
        for body in bodies:
            status, job = await f.json("POST", "/api/v1/jobs", json=body)
            assert status == 202, (body, job)
