"""ComfyUI's information routes answered for the whole fleet: `/object_info` is the union
of the ready nodes' classes (catalog.py), `/models` the union of their model files,
`/system_stats` one device per ready node (named by node id), and `POST /free` (admin
only) is passed to every ready node."""

from __future__ import annotations

import asyncio
import platform
import sys

import aiohttp
import structlog
from aiohttp import web

from comfyfleet import __version__
from comfyfleet.balancer.appkeys import NODES
from comfyfleet.balancer.native.context import INVENTORY, NODE_HTTP
from comfyfleet.editor.extensions import extension_urls
from comfyfleet.models.node import NodeInfo, NodeState
from comfyfleet.web.auth import require_admin
from comfyfleet.web.responses import UPLOAD_BODY_LIMIT, read_json

log = structlog.get_logger(__name__)


async def _ready(request: web.Request) -> list[NodeInfo]:
    return [n for n in await request.app[NODES].all() if n.state is NodeState.READY]


async def object_info(request: web.Request) -> web.Response:
    nodes = await request.app[NODES].all()
    info = await request.app[INVENTORY].object_info(nodes)
    name = request.match_info.get("node_class")
    if name is not None:
        return web.json_response({name: info[name]} if name in info else {})
    return web.json_response(info)


def _model_folders(nodes: list[NodeInfo]) -> dict[str, list[str]]:
    folders: dict[str, list[str]] = {}
    for node in nodes:
        for folder, files in node.models.items():
            known = folders.setdefault(folder, [])
            known += [f for f in files if f not in known]
    return folders


async def models(request: web.Request) -> web.Response:
    return web.json_response(sorted(_model_folders(await _ready(request))))


async def models_in(request: web.Request) -> web.StreamResponse:
    folders = _model_folders(await _ready(request))
    folder = request.match_info["folder"]
    if folder not in folders:
        return web.Response(status=404)
    return web.json_response(sorted(folders[folder]))


async def embeddings(request: web.Request) -> web.Response:
    files = _model_folders(await _ready(request)).get("embeddings", [])
    return web.json_response(sorted(f.rsplit(".", 1)[0] for f in files))


async def extensions(request: web.Request) -> web.Response:
    # The fleet's own frontend extension (editor/), not its nodes' custom-node scripts:
    # the browser talks to the balancer, which does not serve those.
    return web.json_response(extension_urls())


async def features(request: web.Request) -> web.Response:
    return web.json_response(
        {"supports_preview_metadata": True, "max_upload_size": UPLOAD_BODY_LIMIT}
    )


async def system_stats(request: web.Request) -> web.Response:
    devices = [
        {
            "name": node.node_id,
            "type": (node.device or "cpu").split(":")[0].split(" ")[0],
            "index": index,
            "vram_total": node.vram_total or 0,
            "vram_free": node.vram_free or 0,
            "torch_vram_total": node.vram_total or 0,
            "torch_vram_free": node.vram_free or 0,
        }
        for index, node in enumerate(await _ready(request))
    ]
    versions = {n.comfy_version for n in await _ready(request) if n.comfy_version}
    system = {
        "os": sys.platform,
        "ram_total": 0,
        "ram_free": 0,
        "comfyui_version": min(versions) if versions else "",
        "python_version": sys.version,
        "pytorch_version": "",
        "embedded_python": False,
        "argv": ["comfyfleet", "balancer"],
        "comfyfleet_version": __version__,
        "platform": platform.platform(),
    }
    return web.json_response({"system": system, "devices": devices})


async def free(request: web.Request) -> web.Response:
    """Passed to every ready node's `/api/v1/comfy/free`; nodes that do not answer are
    logged and skipped (ComfyUI answers 200 with no body either way)."""
    require_admin(request)
    body = await read_json(request) if request.can_read_body else {}
    nodes = await _ready(request)
    http = request.app[NODE_HTTP]

    async def one(node: NodeInfo) -> None:
        url = f"{node.url.rstrip('/')}/api/v1/comfy/free"
        try:
            async with http.post(url, json=body) as response:
                response.raise_for_status()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("free_failed", node_id=node.node_id, error=repr(exc))

    await asyncio.gather(*(one(node) for node in nodes))
    return web.Response()
