"""Handlers of /api/v1/workflows, /api/v1/nodes and the health probes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from comfyfleet.balancer.appkeys import JOBS, NODES, REDIS, WORKFLOWS
from comfyfleet.balancer.schemas import (
    NODE_ID_RE,
    NodeDetail,
    NodeList,
    WorkflowDetail,
    WorkflowList,
    WorkflowSummary,
)
from comfyfleet.errors import NotFound
from comfyfleet.models.node import NodeState
from comfyfleet.templates.registry import index_etag
from comfyfleet.web.auth import principal_of
from comfyfleet.web.responses import json_response

routes = web.RouteTableDef()


@routes.get("/api/v1/workflows")
async def list_workflows(request: web.Request) -> web.Response:
    # The ETag names the set of active versions: watchers (e.g. `comfyfleet mcp`) poll with
    # If-None-Match and get a bodiless 304 until something is published or rolled back.
    index = await request.app[WORKFLOWS].index()
    etag = index_etag(index)
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    templates = await request.app[WORKFLOWS].list(index)
    summaries = [WorkflowSummary.model_validate(t.summary()) for t in templates]
    return json_response(WorkflowList(workflows=summaries), headers={"ETag": etag})


@routes.get("/api/v1/workflows/{name}")
async def get_workflow(request: web.Request) -> web.Response:
    template = await request.app[WORKFLOWS].get(
        request.match_info["name"], request.query.get("version")
    )
    return json_response(WorkflowDetail.model_validate(template.describe()))


@routes.get("/api/v1/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    return json_response(NodeList(nodes=await request.app[NODES].all()))


async def _node_or_404(request: web.Request) -> str:
    node_id = request.match_info["node_id"]
    # A malformed id names no node (and must not reach a Redis key built from it).
    if not NODE_ID_RE.fullmatch(node_id) or await request.app[NODES].get(node_id) is None:
        raise NotFound(f"no node {node_id!r}", node_id=node_id)
    return node_id


@routes.get("/api/v1/nodes/{node_id}")
async def get_node(request: web.Request) -> web.Response:
    node_id = await _node_or_404(request)
    info = await request.app[NODES].get(node_id)
    if info is None:  # deregistered since the check above
        raise NotFound(f"no node {node_id!r}", node_id=node_id)
    jobs = await request.app[JOBS].jobs_of(node_id)
    principal = principal_of(request)
    if principal.kind != "admin":  # another owner's job ids are not this caller's to see
        owners = [await request.app[JOBS].owner_of(job_id) for job_id in jobs]
        jobs = [j for j, owner in zip(jobs, owners, strict=True) if owner == principal.label]
    return json_response(NodeDetail(**info.model_dump(), jobs=jobs))


@routes.post("/api/v1/nodes/{node_id}/drain")
async def drain_node(request: web.Request) -> web.Response:
    node_id = await _node_or_404(request)
    await request.app[NODES].request_drain(node_id, True)
    return json_response({"node_id": node_id, "drain": True}, status=202)


@routes.post("/api/v1/nodes/{node_id}/resume")
async def resume_node(request: web.Request) -> web.Response:
    node_id = await _node_or_404(request)
    await request.app[NODES].request_drain(node_id, False)
    return json_response({"node_id": node_id, "drain": False}, status=202)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Says nothing of Redis or nodes."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: Redis answers and at least one node can take jobs; 503 otherwise."""
    problems: list[str] = []
    try:
        await request.app[REDIS].ping()
    except Exception as exc:  # any failure to reach Redis means "not ready"
        problems.append(f"redis unreachable: {type(exc).__name__}")
        ready_nodes = 0
    else:
        full = await request.app[JOBS].memory_full()
        if full:
            problems.append(full)
        nodes = await request.app[NODES].all()
        ready_nodes = sum(1 for n in nodes if n.state is NodeState.READY and n.comfy_healthy)
        if not ready_nodes:
            problems.append("no node is ready to take jobs")
    body: dict[str, Any] = {
        "status": "ok" if not problems else "unavailable",
        "ready_nodes": ready_nodes,
    }
    if problems:
        body["problems"] = problems
    return json_response(body, status=200 if not problems else 503)
