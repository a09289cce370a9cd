"""The two ways a user gets a job done, timed from the client's side.

- `DirectClient`: one client feeding one ComfyUI back to back, as a script without a fleet
  would: POST /prompt, wait on its websocket for `executing` with node null (the prompt
  ended), GET /history, GET /view for the bytes.
- `fleet_job`: the same job through the fleet: `POST /api/v1/jobs?wait=30` answers 200 once
  the job ended, then GET the output's bytes.

Both use one graph: a solid image (two nodes, EmptyImage -> SaveImage); each job gets a
colour of its own so ComfyUI's cache never answers for it.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import aiohttp
import orjson

_colours = itertools.count(1)


def solid_graph(size: int = 8) -> dict[str, Any]:
    """A two-node graph no earlier job had (a fresh colour each call)."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1,
                       "color": next(_colours) % (1 << 24)},
        },
        "2": {"class_type": "SaveImage",
              "inputs": {"filename_prefix": "bench", "images": ["1", 0]}},
    }  # fmt: skip


class DirectClient:
    """One client of one ComfyUI, with its own websocket (client id)."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base = base_url
        self.client_id = uuid.uuid4().hex
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self) -> None:
        self.ws = await self.http.ws_connect(f"{self.base}/ws?clientId={self.client_id}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def run(self, graph: dict[str, Any]) -> int:
        """Run one job to its output bytes; returns their size."""
        body = {"prompt": graph, "client_id": self.client_id}
        async with self.http.post(f"{self.base}/prompt", json=body) as resp:
            assert resp.status == 200, await resp.text()
            prompt_id = (await resp.json())["prompt_id"]
        await self._ended(prompt_id)
        async with self.http.get(f"{self.base}/history/{prompt_id}") as resp:
            history = await resp.json()
        outputs = history[prompt_id]["outputs"]
        image = next(img for node in outputs.values() for img in node.get("images", []))
        params = {k: image[k] for k in ("filename", "subfolder", "type")}
        async with self.http.get(f"{self.base}/view", params=params) as resp:
            assert resp.status == 200
            return len(await resp.read())

    async def _ended(self, prompt_id: str) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue  # previews
            frame = orjson.loads(msg.data)
            data = frame.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if frame["type"] == "executing" and data.get("node") is None:
                return
            if frame["type"] == "execution_error":
                raise AssertionError(f"the stand-in failed the job: {data}")
        raise AssertionError("the ComfyUI websocket closed")


async def fleet_job(http: aiohttp.ClientSession, base_url: str, graph: dict[str, Any]) -> int:
    """Submit, wait for the end in the same request, fetch the output; returns its size."""
    url = f"{base_url}/api/v1/jobs?wait=30"
    async with http.post(url, json={"graph": graph}) as resp:
        view = await resp.json()
        assert resp.status == 200, view
    assert view["status"] == "succeeded", view
    async with http.get(view["outputs"][0]["url"]) as resp:
        assert resp.status == 200
        return len(await resp.read())


async def submit(http: aiohttp.ClientSession, base_url: str, graph: dict[str, Any]) -> str:
    """Queue a job without waiting; its id."""
    async with http.post(f"{base_url}/api/v1/jobs", json={"graph": graph}) as resp:
        view = await resp.json()
        assert resp.status == 202, view
    return str(view["id"])


async def wait_ended(http: aiohttp.ClientSession, base_url: str, job_id: str) -> dict[str, Any]:
    """Long-poll a job until it ended; its view."""
    while True:
        async with http.get(f"{base_url}/api/v1/jobs/{job_id}?wait=30") as resp:
            view: dict[str, Any] = await resp.json()
        if view["status"] in ("succeeded", "failed", "cancelled"):
            assert view["status"] == "succeeded", view
            return view


def now_s() -> float:
    return time.perf_counter()
