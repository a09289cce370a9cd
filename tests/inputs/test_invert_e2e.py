"""An uploaded image through real processes: upload at the balancer, a node puts it into
its ComfyUI stand-in, the `invert` workflow runs on it."""

from __future__ import annotations

import aiohttp

from comfyfleet.sim import images
from tests.e2e.conftest import Api
from tests.inputs.samples import png


async def test_invert_of_an_uploaded_png_is_the_inverted_png_of_the_same_size(api: Api) -> None:
    source = png(40, 24, seed=5)
    form = aiohttp.FormData()
    form.add_field("image", source, filename="photo.png", content_type="image/png")
    async with api.session.post(f"{api.base}/api/v1/inputs", data=form) as r:
        assert r.status == 201, await r.text()
        upload = await r.json()
    status, job = await api.post_job({"workflow": "invert", "params": {"image": upload["name"]}})
    assert status == 202, job
    done = await api.finished(job["id"])
    assert done["status"] == "succeeded", done
    code, ctype, data = await api.raw(done["outputs"][0]["url"])
    assert (code, ctype) == (200, "image/png")
    out, original = images.decode(data), images.decode(source)
    assert (out.width, out.height) == (40, 24)
    assert out.rgb == images.invert(original).rgb


async def test_a_job_whose_upload_expired_is_refused_at_submit(api: Api) -> None:
    status, body = await api.post_job(
        {"workflow": "invert", "params": {"image": f"cfin_{'1' * 32}.png"}}
    )
    assert status == 422
    assert body["input_id"] == "1" * 32
