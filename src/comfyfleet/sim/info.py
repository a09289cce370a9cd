"""Read-mostly routes: node and model info, files (/view, /upload), logs, fault control."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from aiohttp import web

from comfyfleet.sim.api import BodyError, json_body, server_trouble
from comfyfleet.sim.files import FOLDER_TYPES, content_type
from comfyfleet.sim.hub import SERVER_FEATURES
from comfyfleet.sim.state import SIM_STATE, SimState

COMFYUI_VERSION = "0.3.64"
# The folder names ComfyUI 0.3.64 reports from /models, in its order.
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)


def _state(request: web.Request) -> SimState:
    return request.app[SIM_STATE]


def _memory() -> tuple[int, int]:
    """(total, available) RAM in bytes; the stand-in's numbers, shaped like ComfyUI's."""
    try:
        pages, free, size = (
            os.sysconf(n) for n in ("SC_PHYS_PAGES", "SC_AVPHYS_PAGES", "SC_PAGE_SIZE")
        )
        return pages * size, free * size
    except (ValueError, OSError, AttributeError):
        return 8 << 30, 4 << 30


async def system_stats(request: web.Request) -> web.Response:
    total, free = _memory()
    system = {
        "os": os.name,
        "ram_total": total,
        "ram_free": free,
        "comfyui_version": COMFYUI_VERSION,
        "required_frontend_version": "1.27.10",
        "installed_templates_version": "0.1.95",
        "required_templates_version": "0.1.95",
        "python_version": sys.version,
        "pytorch_version": "comfyfleet-sim",
        "embedded_python": False,
        "argv": sys.argv,
    }
    device = {
        "name": "cpu",
        "type": "cpu",
        "index": None,
        "vram_total": total,
        "vram_free": free,
        "torch_vram_total": total,
        "torch_vram_free": free,
    }
    return web.json_response({"system": system, "devices": [device]})


async def features(request: web.Request) -> web.Response:
    return web.json_response(SERVER_FEATURES)


async def object_info(request: web.Request) -> web.Response:
    catalogue = await asyncio.to_thread(_state(request).catalogue)
    return web.json_response(catalogue.object_info())


async def object_info_node(request: web.Request) -> web.Response:
    name = request.match_info["node_class"]
    state = _state(request)
    if name not in state.classes:
        return web.json_response({})
    catalogue = await asyncio.to_thread(state.catalogue)
    return web.json_response({name: catalogue.info(name)})


def _folders(state: SimState) -> list[str]:
    return [*MODEL_FOLDERS, *(f for f in state.models if f not in MODEL_FOLDERS)]


async def models(request: web.Request) -> web.Response:
    return web.json_response(_folders(_state(request)))


async def models_in_folder(request: web.Request) -> web.Response:
    state = _state(request)
    folder = request.match_info["folder"]
    if folder not in _folders(state):
        return web.Response(status=404)
    return web.json_response(sorted(state.models.get(folder, ())))


async def embeddings(request: web.Request) -> web.Response:
    names = _state(request).models.get("embeddings", ())
    return web.json_response([os.path.splitext(n)[0] for n in names])


async def extensions(request: web.Request) -> web.Response:
    return web.json_response([])  # the stand-in serves no frontend extensions


async def view(request: web.Request) -> web.StreamResponse:
    query = request.rel_url.query
    if "filename" not in query:
        return web.Response(status=404)
    found = _state(request).storage.view_path(
        query["filename"], query.get("type", "output"), query.get("subfolder")
    )
    if isinstance(found, int):
        return web.Response(status=found)
    # preview=/channel= re-encode in ComfyUI; the stand-in sends the stored PNG as it is.
    headers = {
        "Content-Disposition": f'filename="{found.name}"',
        "Content-Type": content_type(found.name),
    }
    return web.FileResponse(found, headers=headers)


async def upload_image(request: web.Request) -> web.StreamResponse:
    post = await request.post()
    image = post.get("image")
    if not isinstance(image, web.FileField) or not image.filename:
        return web.Response(status=400)
    kind = str(post.get("type") or "input")
    if kind not in FOLDER_TYPES:
        return server_trouble()  # ComfyUI fails on an unknown type with an unbound variable
    subfolder = str(post.get("subfolder", ""))
    overwrite = str(post.get("overwrite", "")) in ("true", "1")
    data = image.file.read()
    storage = _state(request).storage
    name = await asyncio.to_thread(
        storage.store_upload, kind, subfolder, image.filename, data, overwrite
    )
    if name is None:
        return web.Response(status=400)
    return web.json_response({"name": name, "subfolder": subfolder, "type": kind})


async def internal_logs(request: web.Request) -> web.Response:
    logs = _state(request).hub.logs
    return web.json_response("".join(entry["t"] + " - " + entry["m"] for entry in logs))


async def internal_logs_raw(request: web.Request) -> web.Response:
    entries = list(_state(request).hub.logs)
    return web.json_response({"entries": entries, "size": {"cols": 80, "rows": 24}})


async def internal_logs_subscribe(request: web.Request) -> web.StreamResponse:
    hub = _state(request).hub
    try:
        body = await json_body(request)
        client_id, enabled = body["clientId"], body["enabled"]
    except (BodyError, KeyError, TypeError):
        return server_trouble()
    if enabled:
        hub.log_subscribers.add(client_id)
    else:
        hub.log_subscribers.discard(client_id)
    return web.Response()


async def internal_folder_paths(request: web.Request) -> web.Response:
    root = _state(request).storage.root
    return web.json_response({f: [str(root / "models" / f)] for f in MODEL_FOLDERS})


async def internal_files(request: web.Request) -> web.Response:
    kind = request.match_info["directory_type"]
    if kind not in FOLDER_TYPES:
        return web.json_response({"error": "Invalid directory type"}, status=400)
    return web.json_response(await asyncio.to_thread(_state(request).storage.listing, kind))


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(_state(request).faults.settings())


async def post_faults(request: web.Request) -> web.Response:
    faults = _state(request).faults
    try:
        body: Any = await json_body(request)
        if not isinstance(body, dict):
            raise TypeError("expected a JSON object")
        await faults.apply(body)
    except (BodyError, TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(faults.settings())


def add_routes(routes: web.RouteTableDef) -> None:
    for path, handler in (
        ("/system_stats", system_stats),
        ("/features", features),
        ("/object_info", object_info),
        ("/object_info/{node_class}", object_info_node),
        ("/models", models),
        ("/models/{folder}", models_in_folder),
        ("/embeddings", embeddings),
        ("/extensions", extensions),
        ("/view", view),
    ):
        routes.get(path)(handler)
    routes.post("/upload/image")(upload_image)


def add_unaliased_routes(app: web.Application) -> None:
    """/internal/* (no /api alias, as in ComfyUI) and the sim's own fault control."""
    app.router.add_get("/internal/logs", internal_logs)
    app.router.add_get("/internal/logs/raw", internal_logs_raw)
    app.router.add_patch("/internal/logs/subscribe", internal_logs_subscribe)
    app.router.add_get("/internal/folder_paths", internal_folder_paths)
    app.router.add_get("/internal/files/{directory_type}", internal_files)
    app.router.add_get("/sim/faults", get_faults)
    app.router.add_post("/sim/faults", post_faults)
