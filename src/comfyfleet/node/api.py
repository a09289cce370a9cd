"""The node's small HTTP API: health, status, drain/resume, and ComfyUI pass-through.

Tenancy (balancer/tenancy.py): an API key sees the node's jobs of its own owner only, may
interrupt only a prompt of its own jobs (another's answers 404, as an unknown one), and may
not read ComfyUI's queue or history, which hold every tenant's prompts (403: the admin's)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from comfyfleet.errors import BadRequest, NotFound
from comfyfleet.node.appkeys import COMFY, STATE, WORKER
from comfyfleet.node.openapi_ops import (
    DEFAULT_HISTORY_ITEMS,
    MAX_HISTORY_ITEMS,
    NODE_CLASS_PATTERN,
    InterruptRequest,
)
from comfyfleet.web.auth import Forbidden, principal_of, require_admin
from comfyfleet.web.numbers import ascii_int
from comfyfleet.web.responses import check_name, json_response, read_json

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when ComfyUI answers and the node is not draining; 503 otherwise."""
    state = request.app[STATE]
    worker = request.app[WORKER]
    ok = state.comfy_healthy and not worker.draining
    body = {
        "status": "ok" if ok else "unavailable",
        "comfy_healthy": state.comfy_healthy,
        "draining": worker.draining,
    }
    return json_response(body, status=200 if ok else 503)


@routes.get("/api/v1/node")
async def node_status(request: web.Request) -> web.Response:
    worker = request.app[WORKER]
    info = request.app[STATE].info(worker)
    principal = principal_of(request)
    jobs = [job_id for job_id, control in list(worker.controls.items())
            if job_id in worker.tasks and principal.may_see(control.owner)]  # fmt: skip
    return json_response({**info.model_dump(mode="json"), "jobs": jobs})


@routes.post("/api/v1/node/drain")
async def drain(request: web.Request) -> web.Response:
    """Stop claiming; jobs already held finish. Resume with /api/v1/node/resume."""
    request.app[WORKER].draining = True
    request.app[WORKER].poke()
    return json_response({"draining": True}, status=202)


@routes.post("/api/v1/node/resume")
async def resume(request: web.Request) -> web.Response:
    request.app[WORKER].resume()
    return json_response({"draining": False}, status=202)


@routes.get("/api/v1/comfy/system_stats")
async def system_stats(request: web.Request) -> web.Response:
    return json_response(await request.app[COMFY].system_stats())


@routes.get("/api/v1/comfy/object_info")
async def object_info(request: web.Request) -> web.Response:
    # The name becomes a path segment of ComfyUI's URL: no separators, no "..".
    node_class = request.query.get("node_class")
    if node_class is not None and not re.fullmatch(NODE_CLASS_PATTERN, node_class):
        raise BadRequest("node_class must be one ComfyUI class name (no '/', '?', '#', '%')")
    return json_response(await request.app[COMFY].object_info(node_class))


@routes.get("/api/v1/comfy/queue")
async def queue(request: web.Request) -> web.Response:
    require_admin(request)  # every tenant's prompts, graphs included
    return json_response(await request.app[COMFY].queue())


@routes.get("/api/v1/comfy/history")
async def history(request: web.Request) -> web.Response:
    require_admin(request)  # every tenant's prompts and outputs
    raw = request.query.get("max_items", str(DEFAULT_HISTORY_ITEMS))
    max_items = ascii_int(raw, "max_items", 1, MAX_HISTORY_ITEMS)
    return json_response(await request.app[COMFY].history_all(max_items=max_items))


@routes.get("/api/v1/comfy/models")
async def models(request: web.Request) -> web.Response:
    folder = request.query.get("folder")
    if folder is not None:
        check_name(folder, "folder")
    return json_response(await request.app[COMFY].models(folder))


@routes.post("/api/v1/comfy/interrupt")
async def interrupt(request: web.Request) -> web.Response:
    """Interrupt what ComfyUI runs now, or only `prompt_id` if given."""
    body: Any = await read_json(request) if request.can_read_body else {}
    prompt_id = InterruptRequest.model_validate(body).prompt_id
    principal = principal_of(request)
    if principal.kind != "admin":
        # A key interrupts only a prompt of its own jobs, named: "the current one" may be
        # another tenant's. Another's prompt answers as an unknown one.
        if prompt_id is None:
            raise Forbidden("an API key must name the prompt_id of one of its own jobs")
        owners = [c.owner for c in list(request.app[WORKER].controls.values())
                  if c.prompt_id == prompt_id]  # fmt: skip
        if not owners or not principal.may_see(owners[0]):
            raise NotFound(f"no prompt {prompt_id!r} of yours runs on this node")
    await request.app[COMFY].interrupt(prompt_id)
    return json_response({"interrupted": prompt_id or "current"})


@routes.post("/api/v1/comfy/free")
async def free(request: web.Request) -> web.Response:
    """Ask ComfyUI to unload models and free memory (applied when it is idle)."""
    await request.app[COMFY].free(unload_models=True, free_memory=True)
    return json_response({"freed": True})
