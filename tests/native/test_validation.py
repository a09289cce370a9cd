"""POST /prompt on the fleet refuses what ComfyUI refuses, with its exact 400 bodies (the
recordings of 07_validation_errors, posted as recorded): the fleet validates against the
union of its nodes' /object_info, and a LoadImage of a file no node could open is refused
at submit, as ComfyUI's VALIDATE_INPUTS does, instead of failing on a node."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from comfyfleet.cli.fleet import Fleet
from tests.support.traces import EXACT_REJECTIONS, load

FOLDER = "07_validation_errors"


async def post_prompt(fleet: Fleet, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fleet.balancer_url}/prompt", json=body) as r,
    ):
        return r.status, await r.json()


@pytest.mark.parametrize("name", EXACT_REJECTIONS)
async def test_the_fleet_refuses_like_comfyui(fleet: Fleet, name: str) -> None:
    trace = load(f"{FOLDER}/{name}.json")
    status, body = await post_prompt(fleet, trace["request"]["json"])
    assert (status, body) == (trace["status"], trace["body"])


async def test_a_load_image_of_an_output_is_refused_at_submit(fleet: Fleet) -> None:
    """An `[output]` file is on one ComfyUI only, under another name than the fleet shows."""
    prompt = load(f"{FOLDER}/e6_invalid_loadimage_missing_file.json")["request"]["json"]
    prompt["prompt"]["1"]["inputs"]["image"] = "ComfyUI_00001_.png [output]"
    status, body = await post_prompt(fleet, prompt)
    assert status == 400
    (error,) = body["node_errors"]["1"]["errors"]
    assert error["details"] == "image - Invalid image file: ComfyUI_00001_.png [output]"
