"""An image uploaded the ComfyUI way (`POST /upload/image`) becomes a fleet input: a
`LoadImage` naming it runs on whichever node takes the prompt, and `/view?type=input`
serves it back."""

from __future__ import annotations

import aiohttp

from comfyfleet.cli.fleet import Fleet
from tests.inputs.samples import png
from tests.native.conftest import workflow
from tests.native.test_ws_client import PNG_MAGIC, run_like_the_example


async def test_an_upload_feeds_load_image_on_any_node(fleet: Fleet) -> None:
    base = fleet.balancer_url
    image = png(32, 24)
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("image", image, filename="mine.png", content_type="image/png")
        async with http.post(f"{base}/upload/image", data=form) as r:
            assert r.status == 200, await r.text()
            uploaded = await r.json()
        assert uploaded["type"] == "input"
        assert uploaded["subfolder"] == ""
        async with http.get(f"{base}/view", params={"filename": uploaded["name"],
                                                    "type": "input"}) as r:  # fmt: skip
            assert r.status == 200
            assert await r.read() == image
    graph = workflow("c_load_invert_save")
    graph["1"]["inputs"]["image"] = uploaded["name"]
    # Several prompts, so the fleet's two nodes both get some.
    for n in range(4):
        graph["3"]["inputs"]["filename_prefix"] = f"upload{n}"
        _id, _frames, history, images = await run_like_the_example(base, graph)
        assert history["status"]["status_str"] == "success"
        assert images[0].startswith(PNG_MAGIC)
