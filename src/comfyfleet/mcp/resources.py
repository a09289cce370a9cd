"""Resources: each workflow (its params and version, API graph, UI graph, params file) and
each job and job output, under `comfyfleet://`. Workflows are listed; jobs are reached by
the resource templates (or the links a tool result carries)."""

from __future__ import annotations

import base64
import re

import mcp_types as types
import orjson
from mcp.shared.exceptions import MCPError

from comfyfleet.mcp.catalog import Catalog
from comfyfleet.mcp.client import ApiError, BalancerClient

SCHEME = "comfyfleet://"
# JSON-RPC code the MCP spec gives to "resource not found".
RESOURCE_NOT_FOUND = -32002
_OUTPUT = re.compile(r"^comfyfleet://jobs/([A-Za-z0-9_-]{1,64})/outputs/([0-9]{1,6})$")
_JOB = re.compile(r"^comfyfleet://jobs/([A-Za-z0-9_-]{1,64})$")
_WORKFLOW = re.compile(
    r"^comfyfleet://workflows/([A-Za-z0-9][A-Za-z0-9_-]{0,127})(?:/(api|ui|params)\.json)?$"
)
PARTS = {
    None: "params (JSON Schema), version and description",
    "api": "the graph in ComfyUI's API format",
    "ui": "the graph in ComfyUI's UI format (opens in the ComfyUI editor)",
    "params": "the params file as published (NAME.params.json)",
}


def workflow_resources(catalog: Catalog) -> list[types.Resource]:
    out = []
    for name, tool in catalog.workflows.items():
        for part, words in PARTS.items():
            suffix = f"/{part}.json" if part else ""
            out.append(types.Resource(
                name=f"{name}{suffix}", uri=f"{SCHEME}workflows/{name}{suffix}",
                description=f"workflow {name} (version {tool.version}): {words}",
                mime_type="application/json",
            ))  # fmt: skip
    return out


def templates() -> list[types.ResourceTemplate]:
    return [
        types.ResourceTemplate(
            name="job", uri_template=f"{SCHEME}jobs/{{job_id}}", mime_type="application/json",
            description="a job: status, params, error, outputs",
        ),
        types.ResourceTemplate(
            name="job-output", uri_template=f"{SCHEME}jobs/{{job_id}}/outputs/{{index}}",
            description="one output of a succeeded job, full size (kept 24 h)",
        ),
        types.ResourceTemplate(
            name="workflow-part", uri_template=f"{SCHEME}workflows/{{name}}/{{part}}.json",
            mime_type="application/json",
            description="a workflow's api, ui or params JSON (active version)",
        ),
    ]  # fmt: skip


async def read(client: BalancerClient, uri: str) -> types.ReadResourceResult:
    """The resource at `uri`; MCPError (resource not found) for anything else."""
    try:
        if match := _OUTPUT.match(uri):
            kind, data = await client.output(match.group(1), int(match.group(2)))
            blob = base64.b64encode(data).decode()
            return types.ReadResourceResult(
                contents=[types.BlobResourceContents(uri=uri, mime_type=kind, blob=blob)]
            )
        if match := _JOB.match(uri):
            return _json(uri, await client.json("GET", f"/api/v1/jobs/{match.group(1)}"))
        if match := _WORKFLOW.match(uri):
            return _json(uri, await _workflow_part(client, match.group(1), match.group(2)))
    except ApiError as exc:
        if exc.status == 404:
            raise MCPError(RESOURCE_NOT_FOUND, f"{uri}: {exc.detail}") from None
        raise MCPError(types.INTERNAL_ERROR, f"{uri}: {exc}") from None
    raise MCPError(RESOURCE_NOT_FOUND, f"no resource {uri!r}")


async def _workflow_part(client: BalancerClient, name: str, part: str | None) -> object:
    active = await client.json("GET", f"/api/v1/workflows/{name}")
    if part is None:
        return {k: active[k] for k in ("name", "version", "description", "params_schema")}
    if part == "api":
        return active["graph"]
    if part == "ui":
        return active["ui"]
    version = await client.json("GET", f"/api/v1/workflows/{name}/versions/{active['version']}")
    return version["declaration"]


def _json(uri: str, value: object) -> types.ReadResourceResult:
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
    )
