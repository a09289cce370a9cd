"""Handlers of workflow versions: publish, history, one version, rollback, retire.

Reads are open to every caller; changes need the admin or an API key granted the
"workflows" scope, and record who made them (`Principal.label`). The listing and the
active version are read in `fleet_api.py`; both read the registry, so a change made here
is live on every replica with the next request (see `templates/registry.py`).
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from comfyfleet.balancer.appkeys import PUBLISHER, WORKFLOWS
from comfyfleet.balancer.schemas import MAX_GRAPH_NODES, WorkflowDetail
from comfyfleet.errors import BadRequest, UnknownWorkflow
from comfyfleet.templates.model import WORKFLOW_NAME_PATTERN
from comfyfleet.templates.publishing import Draft, LogEntry, Outcome, Published
from comfyfleet.web.auth import principal_of, require_scope
from comfyfleet.web.openapi import Body, Op, Param, Reply
from comfyfleet.web.responses import json_response, read_json

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()
SCOPE = "workflows"
MAX_NOTE = 1000
_NAME = re.compile(WORKFLOW_NAME_PATTERN)


class PublishRequest(BaseModel):
    """A new version: the API-format graph, optionally the UI-format graph and the params
    file (`{"description", "params"}`; omitted: the active version's params carry over)."""

    # Strict: `"force": 1` or `"note": 5` is a mistake to name, not a value to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)

    graph: dict[str, Any] = Field(
        min_length=1, max_length=MAX_GRAPH_NODES, description="ComfyUI API format"
    )
    ui: dict[str, Any] | None = Field(default=None, description="ComfyUI UI format")
    params: dict[str, Any] | None = Field(
        default=None, description="the params file; omitted: the active version's carry over"
    )
    note: str = Field(default="", max_length=MAX_NOTE, description="what changed")
    force: bool = Field(default=False, description="publish even if the params contract breaks")


class RollbackRequest(BaseModel):
    # Strict: `"force": 1` or `"note": 5` is a mistake to name, not a value to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)

    version: str = Field(pattern=r"^[0-9a-f]{12}$", description="a stored version")
    note: str = Field(default="", max_length=MAX_NOTE)


class PublishOutcome(BaseModel):
    """What a publish or rollback did. `outcome`: published (a new version), activated (a
    stored version made active again), rolled_back, unchanged (already active)."""

    name: str
    version: str = Field(description="the version now active")
    outcome: Outcome
    previous: str | None = Field(description="the version active before; null: none")
    warnings: list[str] = Field(default_factory=list, description="about the UI graph")
    dropped_params: list[str] = Field(
        default_factory=list, description="carried-over params a forced publish dropped"
    )

    @classmethod
    def of(cls, p: Published) -> PublishOutcome:
        return cls(
            name=p.name,
            version=p.version,
            outcome=p.outcome,
            previous=p.previous or None,
            warnings=list(p.warnings),
            dropped_params=list(p.dropped),
        )


class VersionInfo(BaseModel):
    """One stored version. `published_ms`: when it was first published (ms since the
    epoch; null for versions older than the log)."""

    version: str
    active: bool
    author: str | None
    note: str
    published_ms: int | None


class VersionHistory(BaseModel):
    """Every stored version (newest first) and the log of changes (newest first)."""

    name: str
    active: str | None = Field(description="the active version; null: retired")
    versions: list[VersionInfo]
    log: list[LogEntry]


class VersionDetail(WorkflowDetail):
    """One version: its params, graphs and params file, and who published it."""

    active: bool
    declaration: dict[str, Any] = Field(description="the params file as published")
    author: str | None
    note: str
    published_ms: int | None


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not _NAME.fullmatch(name):
        raise UnknownWorkflow(f"no workflow named {name!r}", workflow=name)
    return name


async def _active(request: web.Request, name: str) -> str | None:
    try:
        return await request.app[WORKFLOWS].current_version(name)
    except UnknownWorkflow:
        return None


def _first_publishes(entries: list[LogEntry]) -> dict[str, LogEntry]:
    """Version -> the entry that first published it (entries come newest first)."""
    out: dict[str, LogEntry] = {}
    for entry in entries:
        if entry.action == "publish":
            out[entry.version] = entry
    return out


@routes.post("/api/v1/workflows/{name}/versions")
async def publish_version(request: web.Request) -> web.Response:
    require_scope(request, SCOPE)
    name = request.match_info["name"]
    if not _NAME.fullmatch(name):
        raise BadRequest(f"workflow name {name!r} must match {WORKFLOW_NAME_PATTERN}")
    body = PublishRequest.model_validate(await read_json(request))
    draft = Draft(graph=body.graph, ui=body.ui, declaration=body.params)
    author = principal_of(request).label
    published = await request.app[PUBLISHER].publish(
        name, draft, author=author, note=body.note, force=body.force
    )
    log.info("workflow_published", workflow=name, version=published.version,
             outcome=published.outcome, author=author, force=body.force)  # fmt: skip
    status = 201 if published.outcome == "published" else 200
    return json_response(PublishOutcome.of(published), status=status)


@routes.get("/api/v1/workflows/{name}/versions")
async def list_versions(request: web.Request) -> web.Response:
    name = _name(request)
    entries = await request.app[PUBLISHER].log(name)
    versions = await request.app[WORKFLOWS].versions(name)
    active = await _active(request, name)
    first = _first_publishes(entries)
    infos = [
        VersionInfo(
            version=v,
            active=v == active,
            author=first[v].author if v in first else None,
            note=first[v].note if v in first else "",
            published_ms=first[v].at_ms if v in first else None,
        )
        for v in versions
    ]
    infos.sort(key=lambda i: i.published_ms or 0, reverse=True)
    return json_response(VersionHistory(name=name, active=active, versions=infos, log=entries))


@routes.get("/api/v1/workflows/{name}/versions/{version}")
async def get_version(request: web.Request) -> web.Response:
    name = _name(request)
    template = await request.app[WORKFLOWS].get(name, request.match_info["version"])
    first = _first_publishes(await request.app[PUBLISHER].log(name)).get(template.version)
    detail = VersionDetail(
        **template.describe(),
        active=template.version == await _active(request, name),
        declaration=template.declaration,
        author=first.author if first else None,
        note=first.note if first else "",
        published_ms=first.at_ms if first else None,
    )
    return json_response(detail)


@routes.post("/api/v1/workflows/{name}/rollback")
async def rollback(request: web.Request) -> web.Response:
    require_scope(request, SCOPE)
    name = _name(request)
    body = RollbackRequest.model_validate(await read_json(request))
    author = principal_of(request).label
    done = await request.app[PUBLISHER].rollback(name, body.version, author=author, note=body.note)
    log.info("workflow_rolled_back", workflow=name, version=done.version,
             previous=done.previous, author=author)  # fmt: skip
    return json_response(PublishOutcome.of(done))


@routes.delete("/api/v1/workflows/{name}")
async def retire(request: web.Request) -> web.Response:
    require_scope(request, SCOPE)
    name = _name(request)
    author = principal_of(request).label
    version = await request.app[PUBLISHER].retire(name, author=author)
    log.info("workflow_retired", workflow=name, version=version, author=author)
    return web.Response(status=204)


# -- the OpenAPI operations ---------------------------------------------------------------

NAME = Param("name", "path", {"type": "string", "pattern": WORKFLOW_NAME_PATTERN},
             "a workflow's name", example="solid")  # fmt: skip
VERSION = Param("version", "path", {"type": "string", "maxLength": 64},
                "a stored version", example="4c2a9e0b7d13")  # fmt: skip
NOW_MS = 1_760_000_000_000
SOLID_GRAPH: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "_meta": {"title": "Solid Color"},
          "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 16711680}},
    "2": {"class_type": "SaveImage", "_meta": {"title": "Save Image"},
          "inputs": {"filename_prefix": "solid", "images": ["1", 0]}},
}  # fmt: skip
SOLID_PARAMS: dict[str, Any] = {
    "description": "A solid-color image",
    "params": {"color": {"type": "integer", "minimum": 0, "maximum": 16777215,
                         "default": 16711680,
                         "bind": [{"node": "Solid Color", "input": "color"}]}},
}  # fmt: skip
OUTCOME_EXAMPLE = {"name": "solid", "version": "4c2a9e0b7d13", "outcome": "published",
                   "previous": "9b1e77c0d2aa", "warnings": [], "dropped_params": []}  # fmt: skip
ENTRY_EXAMPLE = {"action": "publish", "version": "4c2a9e0b7d13", "previous": "9b1e77c0d2aa",
                 "author": "admin", "note": "brighter default", "at_ms": NOW_MS}  # fmt: skip
CHANGE_WORDS = " The admin or an API key granted the `workflows` scope; others get 403."
OPS: list[Op] = [
    Op("POST", "/api/v1/workflows/{name}/versions", "publishWorkflowVersion",
       "Publish a workflow version",
       "Store a new version (its id is a content hash of the graph and params file) and make "
       "it active at once on every replica; jobs without a pinned `version` run it from the "
       "next submit. A version that breaks the active version's params contract (a param "
       "gone, its type changed, newly required, an enum choice gone, or a carried-over "
       "param's node title gone from the graph) is refused with 422 `workflow-contract` "
       "naming the param, unless `force`. 201 for a new version; 200 when the same content "
       "was stored before (made active again) or is active already." + CHANGE_WORDS,
       "workflows",
       {201: Reply("Published: a new version, now active", PublishOutcome,
                   example=OUTCOME_EXAMPLE),
        200: Reply("That content was stored already; now active", PublishOutcome,
                   example={**OUTCOME_EXAMPLE, "outcome": "activated"})},
       body=Body(PublishRequest, {
           "solid": {"graph": SOLID_GRAPH, "params": SOLID_PARAMS, "note": "first version"},
           "carry-params": {"graph": SOLID_GRAPH, "note": "same params, new graph"},
       }),
       params=[NAME], errors=[403, 409, 503]),
    Op("GET", "/api/v1/workflows/{name}/versions", "listWorkflowVersions",
       "List a workflow's versions",
       "Every stored version, newest first, with who published it and when, and the log of "
       "publishes, rollbacks and retires. A retired workflow keeps its history.",
       "workflows",
       {200: Reply("The history", VersionHistory, example={
           "name": "solid", "active": "4c2a9e0b7d13",
           "versions": [{"version": "4c2a9e0b7d13", "active": True, "author": "admin",
                         "note": "brighter default", "published_ms": NOW_MS}],
           "log": [ENTRY_EXAMPLE]})},
       params=[NAME], errors=[503]),
    Op("GET", "/api/v1/workflows/{name}/versions/{version}", "getWorkflowVersion",
       "Get one workflow version",
       "A stored version's params (as JSON Schema and as published), API and UI graphs, and "
       "who published it.", "workflows",
       {200: Reply("The version", VersionDetail, example={
           "name": "solid", "version": "4c2a9e0b7d13", "description": "A solid-color image",
           "params": {"color": {"type": "integer", "minimum": 0, "maximum": 16777215,
                                "default": 16711680}},
           "params_schema": {"type": "object"}, "graph": SOLID_GRAPH, "ui": None,
           "active": True, "declaration": SOLID_PARAMS, "author": "admin",
           "note": "first version", "published_ms": NOW_MS})},
       params=[NAME, VERSION], errors=[503]),
    Op("POST", "/api/v1/workflows/{name}/rollback", "rollbackWorkflow",
       "Roll back a workflow",
       "Make a stored version active again, at once on every replica (also brings back a "
       "retired workflow). No contract check: every stored version was valid when it was "
       "published." + CHANGE_WORDS, "workflows",
       {200: Reply("Rolled back", PublishOutcome,
                   example={**OUTCOME_EXAMPLE, "outcome": "rolled_back"})},
       body=Body(RollbackRequest, {"v1": {"version": "9b1e77c0d2aa", "note": "v2 broke"}}),
       params=[NAME], errors=[403, 503]),
    Op("DELETE", "/api/v1/workflows/{name}", "retireWorkflow", "Retire a workflow",
       "Take a workflow out of the listing; jobs naming it get 404 unless they pin a "
       "`version`. Its versions and history stay (a publish or rollback brings it back), and "
       "a balancer restart does not bring back a retired built-in." + CHANGE_WORDS,
       "workflows", {204: Reply("Retired")}, params=[NAME], errors=[403, 503]),
]  # fmt: skip
