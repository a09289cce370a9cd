"""The tools `comfyfleet mcp` offers: one per published workflow, plus the generic ones.

A workflow's tool takes exactly the workflow's params object: its input schema is the
`params_schema` the workflows API answers (types, defaults, bounds, enums, descriptions),
unchanged. The catalog follows the balancer's listing by its ETag (a bodiless 304 while
nothing changed) and reads a workflow's schema again only when its version changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mcp_types as types

from comfyfleet.mcp.client import BalancerClient

JOB_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "a job's id"}
WAIT_S = {"type": "integer", "minimum": 0, "maximum": 60, "default": 0,
          "description": "seconds to wait for the job to end before answering"}  # fmt: skip
GENERIC: dict[str, tuple[str, dict[str, Any]]] = {
    "run_graph": (
        "Run a raw ComfyUI API-format graph (node id -> {class_type, inputs}) on the fleet. "
        "Returns its images as previews plus links to the full outputs, or the job id to poll "
        "with get_job when it takes long.",
        {"type": "object", "additionalProperties": False, "required": ["graph"],
         "properties": {"graph": {"type": "object", "minProperties": 1,
                                  "description": "ComfyUI API format"}}},
    ),
    "get_job": (
        "A job's status, progress, error and outputs (images as previews plus links); waits "
        "up to wait_s seconds for it to end.",
        {"type": "object", "additionalProperties": False, "required": ["job_id"],
         "properties": {"job_id": JOB_ID, "wait_s": WAIT_S}},
    ),
    "cancel_job": (
        "Cancel a job: a queued one at once, a running one is interrupted on its GPU.",
        {"type": "object", "additionalProperties": False, "required": ["job_id"],
         "properties": {"job_id": JOB_ID}},
    ),
    "list_workflows": (
        "The published workflows: name, version, description and params.",
        {"type": "object", "additionalProperties": False, "properties": {}},
    ),
    "upload_image": (
        "Upload an input image (base64 `data`, or a `url` the fleet fetches) and get the "
        "name to pass as a workflow's image param.",
        {"type": "object", "additionalProperties": False,
         "properties": {
             "data": {"type": "string", "description": "the image bytes, base64"},
             "url": {"type": "string", "format": "uri", "maxLength": 2048,
                     "description": "an http(s) URL the balancer may fetch"},
             "filename": {"type": "string", "maxLength": 255,
                          "description": "a name for the upload (only a hint)"}}},
    ),
}  # fmt: skip


@dataclass(frozen=True)
class WorkflowTool:
    name: str
    version: str
    description: str
    input_schema: dict[str, Any]

    def tool(self) -> types.Tool:
        words = self.description.rstrip(".") or f"Run the {self.name} workflow"
        return types.Tool(
            name=self.name,
            title=self.name,
            description=f"{words}. Runs on the comfyfleet GPU fleet (workflow {self.name}, "
            f"version {self.version}); returns the images as previews plus links to the full "
            "outputs, or the job id to poll with get_job when it takes long.",
            input_schema=self.input_schema,
        )


def generic_tools() -> list[types.Tool]:
    return [
        types.Tool(name=name, description=words, input_schema=schema)
        for name, (words, schema) in GENERIC.items()
    ]


class Catalog:
    """The workflows as tools, refreshed from the balancer."""

    def __init__(self, client: BalancerClient) -> None:
        self.client = client
        self.etag: str | None = None
        self.workflows: dict[str, WorkflowTool] = {}
        # Published workflows whose name a generic tool already has (not offered as tools).
        self.shadowed: list[str] = []

    async def refresh(self) -> bool:
        """Read the listing (cheap when unchanged); True when the tools changed."""
        listing = await self.client.workflows(self.etag)
        if listing.workflows is None:
            return False
        fresh: dict[str, WorkflowTool] = {}
        for summary in listing.workflows:
            name, version = str(summary["name"]), str(summary["version"])
            known = self.workflows.get(name)
            if known is not None and known.version == version:
                fresh[name] = known
                continue
            detail = await self.client.json("GET", f"/api/v1/workflows/{name}?version={version}")
            fresh[name] = WorkflowTool(
                name, version, str(detail.get("description") or ""), detail["params_schema"]
            )
        self.shadowed = sorted(fresh.keys() & GENERIC.keys())
        for name in self.shadowed:
            del fresh[name]
        changed = fresh != self.workflows
        self.workflows, self.etag = fresh, listing.etag
        return changed

    def tools(self) -> list[types.Tool]:
        return [*generic_tools(), *(w.tool() for w in self.workflows.values())]
