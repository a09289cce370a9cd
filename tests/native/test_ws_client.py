"""A client written the way ComfyUI's `script_examples/websockets_api_example.py` is: open
`/ws?clientId=X`, POST the prompt with that client_id, read frames until `executing` with
`node: null` for its prompt_id, then `/history/{id}` and `/view` -- against the fleet, with no
credentials (the balancer serves loopback as `anonymous`)."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from typing import Any

import aiohttp

from comfyfleet.cli.fleet import Fleet
from tests.native.conftest import workflow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def run_like_the_example(
    base: str, prompt: dict[str, Any]
) -> tuple[str, list[Any], dict[str, Any], list[bytes]]:
    """(prompt_id, frames, history entry, images) as the example script gets them."""
    client_id = str(uuid.uuid4())
    frames: list[Any] = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(
            f"{base.replace('http', 'ws', 1)}/ws?clientId={client_id}"
        ) as ws:
            body = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
            async with http.post(f"{base}/prompt", data=body) as r:
                assert r.status == 200, await r.text()
                prompt_id = (await r.json())["prompt_id"]
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    frames.append(msg.data)
                    continue
                message = json.loads(msg.data)
                frames.append(message)
                data = message["data"]
                if (
                    message["type"] == "executing"
                    and data["node"] is None
                    and data["prompt_id"] == prompt_id
                ):
                    break
        async with http.get(f"{base}/history/{prompt_id}") as r:
            history = (await r.json())[prompt_id]
        images = []
        for output in history["outputs"].values():
            for image in output.get("images", []):
                query = urllib.parse.urlencode(
                    {
                        "filename": image["filename"],
                        "subfolder": image["subfolder"],
                        "type": image["type"],
                    }
                )
                async with http.get(f"{base}/view?{query}") as r:
                    assert r.status == 200
                    images.append(await r.read())
    return prompt_id, frames, history, images


async def test_websocket_example_client_gets_its_png(fleet: Fleet) -> None:
    prompt_id, frames, history, images = await run_like_the_example(
        fleet.balancer_url, workflow("a_empty_save")
    )
    kinds = [f["type"] for f in frames if isinstance(f, dict)]
    assert kinds[0] == "status"
    assert "execution_start" in kinds
    assert "execution_success" in kinds
    assert ("executing", "2") in [
        (f["type"], f["data"].get("node")) for f in frames if isinstance(f, dict)
    ]
    assert history["status"]["status_str"] == "success"
    image = history["outputs"]["2"]["images"][0]
    assert image["subfolder"] == prompt_id  # unique to the job
    assert len(images) == 1
    assert images[0].startswith(PNG_MAGIC)
