"""An image uploaded the ComfyUI way (`POST /upload/image`) becomes a fleet input: a
`LoadImage` naming it runs on whichever node takes the prompt, and `/view?type=input`
serves it back; a mask uploaded the ComfyUI way is merged into the image it masks."""

from __future__ import annotations

import io
import json
from typing import Any

import aiohttp
from PIL import Image

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


async def _post_form(http: aiohttp.ClientSession, url: str, mask: bytes,
                     original_ref: str | None) -> tuple[int, Any]:  # fmt: skip
    form = aiohttp.FormData()
    form.add_field("image", mask, filename="clipspace-mask.png", content_type="image/png")
    if original_ref is not None:
        form.add_field("original_ref", original_ref)
    async with http.post(url, data=form) as r:
        return r.status, await r.json()


async def test_a_mask_is_merged_into_the_image_it_masks(fleet: Fleet) -> None:
    """ComfyUI's /upload/mask: the stored image is the original's pixels with the mask's
    alpha; a LoadImage of it then gets both."""
    base = fleet.balancer_url
    original = Image.new("RGB", (8, 6), (10, 200, 30))
    painted = Image.new("RGBA", (8, 6), (0, 0, 0, 255))
    painted.putpixel((2, 3), (0, 0, 0, 0))  # the part painted over
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("image", _png(original), filename="photo.png", content_type="image/png")
        async with http.post(f"{base}/upload/image", data=form) as r:
            assert r.status == 200, await r.text()
            uploaded = await r.json()
        ref = json.dumps({"filename": uploaded["name"], "subfolder": "", "type": "input"})
        status, merged = await _post_form(http, f"{base}/upload/mask", _png(painted), ref)
        assert status == 200, merged
        assert merged["type"] == "input"
        assert merged["name"] != uploaded["name"]
        async with http.get(f"{base}/view", params={"filename": merged["name"],
                                                    "type": "input"}) as r:  # fmt: skip
            assert r.status == 200
            result = Image.open(io.BytesIO(await r.read()))
        assert result.mode == "RGBA"
        assert result.size == (8, 6)
        assert result.getpixel((0, 0)) == (10, 200, 30, 255)
        assert result.getpixel((2, 3)) == (10, 200, 30, 0)

        graph = workflow("c_load_invert_save")
        graph["1"]["inputs"]["image"] = merged["name"]
        _id, _frames, history, _images = await run_like_the_example(base, graph)
        assert history["status"]["status_str"] == "success"

        # What ComfyUI would fail on, or silently get wrong, is a clear 4xx.
        status, problem = await _post_form(http, f"{base}/upload/mask", _png(painted), None)
        assert (status, problem["field"]) == (400, "original_ref")
        small = _png(Image.new("RGBA", (4, 4)))
        status, problem = await _post_form(http, f"{base}/api/upload/mask", small, ref)
        assert (status, problem["field"]) == (400, "image")
        gone = json.dumps({"filename": "cfin_" + "0" * 24 + ".png", "type": "input"})
        status, problem = await _post_form(http, f"{base}/upload/mask", _png(painted), gone)
        assert (status, problem["field"]) == (404, "original_ref")


async def _upload(http: aiohttp.ClientSession, url: str, image: bytes, filename: str,
                  original_ref: dict[str, str] | None = None) -> Any:  # fmt: skip
    """An upload as the editor's mask editor sends it: into `clipspace`, by its own name."""
    form = aiohttp.FormData()
    form.add_field("image", image, filename=filename, content_type="image/png")
    if original_ref is not None:
        form.add_field("original_ref", json.dumps(original_ref))
    form.add_field("type", "input")
    form.add_field("subfolder", "clipspace")
    async with http.post(url, data=form) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_the_mask_editor_names_its_uploads_as_it_sent_them(fleet: Fleet) -> None:
    """The editor's mask editor saves four uploads under names it chose in `clipspace/`,
    merges the last into the third by that name, shows them with /view by name, and sets
    the LoadImage to `clipspace/<name> [input]`: each resolves to the fleet's upload."""
    base = fleet.balancer_url
    original = Image.new("RGB", (8, 6), (10, 200, 30))
    mask = Image.new("RGBA", (8, 6), (0, 0, 0, 255))
    mask.putpixel((2, 3), (0, 0, 0, 0))
    painted = Image.new("RGB", (8, 6), (250, 5, 5))  # the original with paint on it
    ts = 4242
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("image", _png(original), filename="photo.png", content_type="image/png")
        async with http.post(f"{base}/upload/image", data=form) as r:
            uploaded = await r.json()
        first = {"filename": uploaded["name"], "subfolder": "", "type": "input"}
        await _upload(http, f"{base}/upload/mask", _png(mask), f"clipspace-mask-{ts}.png",
                      first)  # fmt: skip
        await _upload(http, f"{base}/upload/image", _png(mask), f"clipspace-paint-{ts}.png")
        await _upload(http, f"{base}/upload/image", _png(painted),
                      f"clipspace-painted-{ts}.png")  # fmt: skip
        by_its_name = {"filename": f"clipspace-painted-{ts}.png", "subfolder": "clipspace",
                       "type": "input"}  # fmt: skip
        last = await _upload(http, f"{base}/upload/mask", _png(mask),
                             f"clipspace-painted-masked-{ts}.png", by_its_name)  # fmt: skip
        params = {"filename": f"clipspace-painted-masked-{ts}.png", "subfolder": "clipspace",
                  "type": "input"}  # fmt: skip
        async with http.get(f"{base}/view", params=params) as r:
            assert r.status == 200
            shown = await r.read()
        async with http.get(f"{base}/view", params={"filename": last["name"],
                                                    "type": "input"}) as r:  # fmt: skip
            assert await r.read() == shown
        result = Image.open(io.BytesIO(shown))
        assert result.getpixel((0, 0)) == (250, 5, 5, 255)  # the painted image...
        assert result.getpixel((2, 3)) == (250, 5, 5, 0)  # ...with the mask as its alpha

        graph = workflow("c_load_invert_save")
        graph["1"]["inputs"]["image"] = f"clipspace/clipspace-painted-masked-{ts}.png [input]"
        prompt_id, _frames, history, images = await run_like_the_example(base, graph)
        assert history["status"]["status_str"] == "success", history
        assert history["prompt"][2]["1"]["inputs"]["image"] == last["name"]
        inverted = Image.open(io.BytesIO(images[0])).convert("RGB")
        assert inverted.getpixel((0, 0)) == (5, 250, 250)

        # A mask on one of the caller's outputs: original_ref names it as /history does.
        (output,) = [o["images"][0] for o in history["outputs"].values()]
        assert output["subfolder"] == prompt_id
        on_output = await _upload(http, f"{base}/upload/mask", _png(mask), "m.png", output)
        async with http.get(f"{base}/view", params={"filename": on_output["name"],
                                                    "type": "input"}) as r:  # fmt: skip
            masked = Image.open(io.BytesIO(await r.read()))
        assert masked.getpixel((0, 0)) == (5, 250, 250, 255)

        # Names that would leave ComfyUI's input folder are refused; unknown ones are 404.
        form = aiohttp.FormData()
        form.add_field("image", _png(mask), filename="x.png", content_type="image/png")
        form.add_field("subfolder", "../../etc")
        async with http.post(f"{base}/upload/image", data=form) as r:
            assert (r.status, (await r.json())["field"]) == (400, "subfolder")
        unknown = {"filename": "never-sent.png", "subfolder": "clipspace", "type": "input"}
        status, problem = await _post_form(http, f"{base}/upload/mask", _png(mask),
                                           json.dumps(unknown))  # fmt: skip
        assert (status, problem["field"]) == (404, "original_ref")


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
