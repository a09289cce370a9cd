"""The node's operations for its OpenAPI document (see `web/openapi.py`), and the models of
the bodies its handlers answer (`node/api.py` renders these shapes).

To document a route: add an `Op` to `OPERATIONS` with its models and an example of each
JSON body; the route-walk test fails until every route in the app is here. ComfyUI's own
answers are passed through as they come, so they are documented as free-form JSON.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from comfyfleet.models.node import NODE_INFO_EXAMPLE, NodeInfo
from comfyfleet.web.metrics import METRICS_OP, served_only
from comfyfleet.web.openapi import Body, Op, Param, Reply, build_document
from comfyfleet.web.responses import SAFE_NAME_PATTERN

# ComfyUI node class names carry spaces, dots and brackets; never a path separator, query
# or escape character, and never a bare "." or "..", so the name stays one path segment.
NODE_CLASS_PATTERN = r"^(?!\.{1,2}$)[^/\\?#%\x00-\x1f\x7f]{1,128}$"
# How many finished prompts /api/v1/comfy/history passes on (the handler reads these too).
DEFAULT_HISTORY_ITEMS = 50
MAX_HISTORY_ITEMS = 1000
COMFY = 502


class NodeStatusView(NodeInfo):
    jobs: list[str] = Field(description="ids of the jobs this node runs or holds")


class DrainingView(BaseModel):
    draining: bool


class HealthView(BaseModel):
    status: Literal["ok"]


class NodeReadiness(BaseModel):
    status: Literal["ok", "unavailable"]
    comfy_healthy: bool
    draining: bool


class InterruptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt_id: str | None = Field(
        default=None, max_length=128, description="only this prompt; default: whatever runs"
    )


class InterruptView(BaseModel):
    interrupted: str = Field(description="the prompt id, or `current`")


class FreedView(BaseModel):
    freed: Literal[True]


ANY_JSON: dict[str, Any] = {"description": "ComfyUI's answer, passed through"}
STATUS_EXAMPLE: dict[str, Any] = {**NODE_INFO_EXAMPLE, "jobs": ["9f1c2e3d4b5a69788796a5b4c3d2e1f0"]}


def _comfy(path: str, op_id: str, summary: str, words: str, example: Any,
           params: tuple[Param, ...] = (), errors: tuple[int, ...] = ()) -> Op:  # fmt: skip
    return Op("GET", path, op_id, summary, words, "comfyui",
              {200: Reply("ComfyUI's answer", schema=ANY_JSON, example=example)},
              params=params, errors=(COMFY, *errors))  # fmt: skip


OPERATIONS: list[Op] = [
    METRICS_OP,
    Op("GET", "/healthz", "healthz", "Liveness", "The process answers. Open.", "health",
       {200: Reply("Alive", HealthView, example={"status": "ok"})}, auth="open"),
    Op("GET", "/readyz", "readyz", "Readiness",
       "ComfyUI answers and the node is not draining. Open.", "health",
       {200: Reply("Ready", NodeReadiness,
                   example={"status": "ok", "comfy_healthy": True, "draining": False}),
        503: Reply("Not ready", NodeReadiness,
                   example={"status": "unavailable", "comfy_healthy": True, "draining": True})},
       auth="open"),
    Op("GET", "/api/v1/node", "nodeStatus", "Node status",
       "State, load, device and inventory summary, and the jobs held.", "node",
       {200: Reply("The node", NodeStatusView, example=STATUS_EXAMPLE)}),
    Op("POST", "/api/v1/node/drain", "drain", "Drain",
       "Stop claiming; jobs already held finish. Undo with resume.", "node",
       {202: Reply("Draining", DrainingView, example={"draining": True})}),
    Op("POST", "/api/v1/node/resume", "resume", "Resume", "Claim jobs again.", "node",
       {202: Reply("Claiming", DrainingView, example={"draining": False})}),
    _comfy("/api/v1/comfy/system_stats", "comfySystemStats", "ComfyUI system stats",
           "ComfyUI's /system_stats (versions, devices, VRAM).",
           {"system": {"comfyui_version": "0.3.60"}, "devices": []}),
    _comfy("/api/v1/comfy/object_info", "comfyObjectInfo", "ComfyUI node classes",
           "ComfyUI's /object_info, or one class with `node_class` (`{}` or 404 if unknown).",
           {"KSampler": {"input": {}, "output": ["LATENT"]}},
           (Param("node_class", "query", {"type": "string", "pattern": NODE_CLASS_PATTERN},
                  "one node class", example="KSampler"),), (404,)),
    _comfy("/api/v1/comfy/queue", "comfyQueue", "ComfyUI queue",
           "ComfyUI's /queue: running and pending prompts.",
           {"queue_running": [], "queue_pending": []}),
    _comfy("/api/v1/comfy/history", "comfyHistory", "ComfyUI history",
           "ComfyUI's /history: the last `max_items` finished prompts.", {},
           (Param("max_items", "query", {"type": "integer", "minimum": 1,
                                         "maximum": MAX_HISTORY_ITEMS,
                                         "default": DEFAULT_HISTORY_ITEMS},
                  "how many", example=20),)),
    _comfy("/api/v1/comfy/models", "comfyModels", "ComfyUI models",
           "Model folders, or the files in `folder` (404 if ComfyUI has no such folder).",
           ["checkpoints", "loras", "vae"],
           (Param("folder", "query", {"type": "string", "pattern": SAFE_NAME_PATTERN},
                  "a model folder", example="checkpoints"),), (404,)),
    Op("POST", "/api/v1/comfy/interrupt", "comfyInterrupt", "Interrupt ComfyUI",
       "Interrupt what ComfyUI runs now, or only `prompt_id`. The body may be left out.",
       "comfyui", {200: Reply("Interrupted", InterruptView, example={"interrupted": "current"})},
       body=Body(InterruptRequest, {"current": {}, "one": {"prompt_id": "6c1d0b0e-..."}},
                 required=False),
       errors=(COMFY,)),
    Op("POST", "/api/v1/comfy/free", "comfyFree", "Free ComfyUI memory",
       "Ask ComfyUI to unload models and free memory (applied when it is idle).", "comfyui",
       {200: Reply("Asked", FreedView, example={"freed": True})}, errors=(COMFY,)),
]  # fmt: skip
TAGS = {
    "node": "This node: status, drain, resume",
    "comfyui": "Pass-through to this node's ComfyUI",
    "health": "Probes for load balancers and orchestrators (open)",
}
DESCRIPTION = (
    "One node of a comfyfleet: its status and its ComfyUI. Errors are "
    "`application/problem+json` (RFC 9457). Authenticate with basic auth or a bearer API key."
)


@functools.cache
def _document() -> dict[str, Any]:
    return build_document(
        title="comfyfleet node", description=DESCRIPTION, ops=OPERATIONS, tags=TAGS
    )


async def document(request: web.Request) -> dict[str, Any]:
    return served_only(copy.deepcopy(_document()), request.app)
