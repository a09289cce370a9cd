"""A native prompt's `extra_data` reaches ComfyUI as the client sent it: the editor's
`extra_pnginfo` (the workflow) ends up inside the saved PNG, as on one ComfyUI, and /queue
and /history show it back without the comfy.org credentials."""

from __future__ import annotations

import aiohttp

from comfyfleet.cli.fleet import Fleet
from tests.native.conftest import workflow
from tests.native.test_isolation import ADMIN, Client


async def test_extra_pnginfo_is_written_into_the_png_and_credentials_never_shown(
    fleet: Fleet,
) -> None:
    async with aiohttp.ClientSession() as http:
        admin = Client(http, fleet.balancer_url, ADMIN)
        marker = "comfyfleet-extra-data-marker"
        body = {
            "prompt": workflow("a_empty_save"),
            "extra_data": {
                "extra_pnginfo": {"workflow": {"nodes": [], "note": marker}},
                "api_key_comfy_org": "secret-of-the-client",
            },
        }
        status, answer = await admin.call("POST", "/prompt", body)
        assert status == 200, answer
        prompt_id = answer["prompt_id"]
        entry = await admin.ended(prompt_id)
        shown = entry["prompt"][3]
        assert shown["extra_pnginfo"]["workflow"]["note"] == marker
        assert "api_key_comfy_org" not in shown
        image = entry["outputs"]["2"]["images"][0]
        view = f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type=output"
        status, png = await admin.call("GET", view)
        assert status == 200
        assert isinstance(png, bytes)
        assert png.startswith(b"\x89PNG")
        assert marker.encode() in png  # ComfyUI's SaveImage wrote the workflow chunk
        assert b"secret-of-the-client" not in png

        status, answer = await admin.call("POST", "/prompt", {**body, "extra_data": [1]})
        assert status == 400
        assert answer["field"] == "extra_data"
