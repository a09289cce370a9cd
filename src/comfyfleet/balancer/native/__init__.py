"""ComfyUI's native HTTP API and websocket, served by the balancer for the whole fleet, so
existing ComfyUI clients (comfy-cli, ComfyScript, ComfyUI's example scripts, bots) work by
pointing them at the balancer.

Every route exists at the root and under `/api/`, as in ComfyUI. These routes speak
ComfyUI's shapes, not the fleet's: they are ComfyUI's API, described by ComfyUI, so they are
left out of the fleet's OpenAPI document (their resources are named `comfyui.*`, see
`web/openapi.routes_of`), and the query guard (which reads that document) leaves them alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from comfyfleet.balancer.native import files, info, prompts, socket
from comfyfleet.balancer.native.context import native_ctx
from comfyfleet.web.openapi import NATIVE_ROUTE_PREFIX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (method, path, handler): issue 10's list, exactly (the editor serves the frontend's own
# routes: user data, settings, the page).
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/ws", socket.websocket),
    ("POST", "/prompt", prompts.post_prompt),
    ("GET", "/prompt", prompts.get_prompt),
    ("GET", "/queue", prompts.get_queue),
    ("POST", "/queue", prompts.post_queue),
    ("POST", "/interrupt", prompts.post_interrupt),
    ("GET", "/history", prompts.get_history),
    ("POST", "/history", prompts.post_history),
    ("GET", "/history/{prompt_id}", prompts.get_history_item),
    ("GET", "/view", files.view),
    ("POST", "/upload/image", files.upload_image),
    ("POST", "/upload/mask", files.upload_mask),
    ("GET", "/object_info", info.object_info),
    ("GET", "/object_info/{node_class}", info.object_info),
    ("GET", "/embeddings", info.embeddings),
    ("GET", "/models", info.models),
    ("GET", "/models/{folder}", info.models_in),
    ("GET", "/extensions", info.extensions),
    ("GET", "/features", info.features),
    ("GET", "/system_stats", info.system_stats),
    ("POST", "/free", info.free),
]


def _name(path: str) -> str:
    """One name per path (GET and POST share the resource)."""
    words = "".join(c if c.isalnum() else "_" for c in path).strip("_")
    return f"{NATIVE_ROUTE_PREFIX}{words}"


def add_native_routes(app: web.Application) -> None:
    """ComfyUI's routes at the root and under /api/, and their resources."""
    app.cleanup_ctx.append(native_ctx)
    for prefix in ("", "/api"):
        for method, path, handler in ROUTES:
            app.router.add_route(method, prefix + path, handler, name=_name(prefix + path))
