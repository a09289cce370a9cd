"""The balancer's operations for its OpenAPI document (see `web/openapi.py`).

To document a route: add an `Op` to `OPERATIONS` (or build a list of `Op`s in your own
module and add it to `OPERATIONS` below), naming its request/response models from
`balancer/schemas.py` and an example of each JSON body. The route-walk test fails until
every route in the app is here.

Per request, `document` adds each published workflow's params as its own schema
(`Params_<name>`, from `Template.params_schema()`, read from the Redis registry) and makes
the job request a `oneOf` of one request shape per workflow plus the raw-graph shape, so
Swagger UI's form and example menu show every workflow's typed params.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from aiohttp import web

from comfyfleet.balancer import (
    alerts_api,
    events_api,
    inputs_api,
    logs_api,
    outputs_api,
    tenants_api,
    workflows_api,
)
from comfyfleet.balancer.appkeys import WORKFLOWS
from comfyfleet.balancer.schemas import (
    JOB_ID_PATTERN,
    MAX_GRAPH_NODES,
    NODE_ID_PATTERN,
    DrainView,
    HealthView,
    JobPage,
    JobRequest,
    JobView,
    NodeDetail,
    NodeList,
    ReadinessView,
    WorkflowDetail,
    WorkflowList,
)
from comfyfleet.balancer.tenancy import OWNER_PARAMS
from comfyfleet.models.job import JobStatus
from comfyfleet.models.node import NODE_INFO_EXAMPLE
from comfyfleet.store.apikeys import KEY_ID_PATTERN, ApiKeyList, NewApiKey, NewApiKeyRequest
from comfyfleet.store.jobs import DEFAULT_PAGE, MAX_PAGE
from comfyfleet.templates.model import WORKFLOW_NAME_PATTERN, ParamSpec, Template
from comfyfleet.web.metrics import METRICS_OP, served_only
from comfyfleet.web.openapi import REF, Body, Op, Param, Reply, build_document

# Every operation that reads Redis may answer 503 while it is unreachable.
STORE = 503
STORE_FULL = 507  # Redis at maxmemory (noeviction): a submit is refused, not lost
JOB_ID = Param("job_id", "path", {"type": "string", "pattern": JOB_ID_PATTERN}, "a job's id",
               example="9f1c2e3d4b5a69788796a5b4c3d2e1f0")  # fmt: skip
NODE_ID = Param("node_id", "path", {"type": "string", "pattern": NODE_ID_PATTERN},
                "a node's id", example="gpu-box-1-8101")  # fmt: skip
NOW_MS = 1_760_000_000_000
WAIT = Param("wait", "query",
             {"type": "integer", "minimum": 0, "maximum": events_api.MAX_WAIT_S},
             "seconds to wait for the job to end", example=30)  # fmt: skip

JOB_EXAMPLE: dict[str, Any] = {
    "id": "9f1c2e3d4b5a69788796a5b4c3d2e1f0",
    "status": "succeeded",
    "workflow": "txt2img",
    "workflow_version": "4c2a9e0b7d13",
    "params": {"prompt": "a red fox in snow", "seed": 42, "steps": 20},
    "priority": 0,
    "pool": "default",
    "owner": "apikey:7f3a9c21d0e4",
    "attempts": 1,
    "max_attempts": 3,
    "node_id": "gpu-box-1-8101",
    "queue_position": None,
    "progress": None,
    "cancel_requested": False,
    "created_ms": NOW_MS,
    "started_ms": NOW_MS + 120,
    "finished_ms": NOW_MS + 4_800,
    "outputs": [
        {
            "index": 0,
            "filename": "ComfyUI_00001_.png",
            "content_type": "image/png",
            "size": 482113,
            "node_id": "9",
            "sha256": "5d41402abc4b2a76b9719d911017c592ae2f7e7d4e1f0b58d6c9f0ef3d9a1b2c",
            "url": "http://127.0.0.1:7999/api/v1/jobs/9f1c2e3d4b5a69788796a5b4c3d2e1f0/outputs/0",
        }
    ],
    "error": None,
    "history": [],
    "metadata": {"user": "alice"},
}
WORKFLOW_EXAMPLE: dict[str, Any] = {
    "name": "txt2img",
    "version": "4c2a9e0b7d13",
    "description": "Text to image with a checkpoint",
    "params": {
        "prompt": {"type": "string", "maxLength": 2000},
        "steps": {"type": "integer", "minimum": 1, "maximum": 150, "default": 20},
    },
}
KEY_INFO_EXAMPLE: dict[str, Any] = {
    "id": "3f9a0c1b2d4e",
    "name": "ci-pipeline",
    "created_ms": NOW_MS,
    "last_used_ms": NOW_MS + 3_600_000,
}


def _jobs() -> list[Op]:
    return [
        Op("POST", "/api/v1/jobs", "submitJob", "Submit a job",
           "Queue a published workflow with typed `params`, or a raw ComfyUI API-format "
           f"`graph` (1 to {MAX_GRAPH_NODES} nodes). Answers 202 with the job; poll it or "
           "follow its events. An `Idempotency-Key` makes retries safe: the same key "
           "answers the job it created first (header `Idempotent-Replayed: true`). "
           "`?wait=S` (<= 60 s) answers 200 with the finished job if it ends in time. "
           "`webhook_url` is POSTed, signed, when the job ends (see the README).",
           "jobs",
           {200: Reply("Finished within ?wait=", JobView, example=JOB_EXAMPLE),
            202: Reply("Accepted: the job is queued", JobView, example={
               **JOB_EXAMPLE, "status": "queued", "queue_position": 0, "attempts": 0,
               "node_id": None, "started_ms": None, "finished_ms": None, "outputs": []},
               headers={"Location": "the job's URL",
                        "Idempotent-Replayed": "`true` when an earlier submit is answered"})},
           body=Body(JobRequest, {
               "txt2img": {"workflow": "txt2img", "params": {"prompt": "a red fox in snow"}},
               "graph": {"graph": {"1": {"class_type": "EmptyImage",
                                         "inputs": {"width": 64, "height": 64}}}},
           }),
           params=[Param("Idempotency-Key", "header",
                         {"type": "string", "minLength": 1, "maxLength": 128},
                         "retry-safe submit: the same key answers the first job",
                         example="order-1234"), WAIT],
           errors=[403, 404, 429, STORE, STORE_FULL]),
        Op("GET", "/api/v1/jobs", "listJobs", "List jobs",
           "Newest first, one page at a time; pass `next_cursor` back as `cursor`. An API "
           "key lists its own jobs only; the admin lists every owner's, or one owner's with "
           "`owner` or `key`.", "jobs",
           {200: Reply("A page of jobs", JobPage,
                       example={"jobs": [JOB_EXAMPLE], "next_cursor": None})},
           params=[
               Param("status", "query", {"type": "string", "enum": [s.value for s in JobStatus]},
                     "only jobs in this status", example="running"),
               Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                        "default": DEFAULT_PAGE}, "page size", example=20),
               Param("cursor", "query", {"type": "string", "pattern": "^[0-9]{1,20}$"},
                     "from a previous page's `next_cursor`", example="1041"),
               *OWNER_PARAMS,
           ],
           errors=[400, 403, STORE]),
        Op("GET", "/api/v1/jobs/{job_id}", "getJob", "Get a job",
           "Status, queue position or progress, outputs (with download URLs) and error.",
           "jobs", {200: Reply("The job; with ?wait=, once it ends or the wait is over",
                               JobView, example=JOB_EXAMPLE)},
           params=[JOB_ID, WAIT], errors=[STORE]),
        Op("DELETE", "/api/v1/jobs/{job_id}", "cancelJob", "Cancel a job",
           "A queued job ends `cancelled` at once (200); a running one is interrupted on its "
           "node (202, `cancel_requested: true`). A finished job is answered as it is.",
           "jobs",
           {200: Reply("Cancelled, or already finished", JobView,
                       example={**JOB_EXAMPLE, "status": "cancelled", "outputs": []}),
            202: Reply("Cancel requested; the node interrupts it", JobView,
                       example={**JOB_EXAMPLE, "status": "running", "cancel_requested": True,
                                "outputs": [], "finished_ms": None})},
           params=[JOB_ID], errors=[409, STORE]),
        Op("GET", "/api/v1/jobs/{job_id}/outputs/{index}", "getJobOutput",
           "Download an output", "The bytes of one output of a succeeded job, streamed from "
           "the blob store (Redis or S3; kept per pool, 24 h by default in Redis, 7 days in "
           "S3). Takes one `Range` (206 with `Content-Range`); the `ETag` is the sha256.",
           "jobs",
           {200: Reply("The file", schema={"type": "string", "format": "binary"},
                       media_type="image/png",
                       headers={"Content-Disposition": "file name", "ETag": "the sha256",
                                "Accept-Ranges": "bytes"}),
            206: Reply("The range asked for", schema={"type": "string", "format": "binary"},
                       media_type="image/png",
                       headers={"Content-Range": "bytes FIRST-LAST/SIZE"})},
           params=[JOB_ID, Param("index", "path", {"type": "integer", "minimum": 0,
                                                   "maximum": outputs_api.MAX_OUTPUT_INDEX},
                                 "the output's `index`", example=0),
                   Param("Range", "header", {"type": "string"},
                         "one byte range, e.g. `bytes=0-1023` or `bytes=-1024`",
                         example="bytes=0-1023"),
                   Param("If-Range", "header", {"type": "string"},
                         "the ETag the client holds: the range only while it still matches")],
           errors=[416, STORE]),
    ]  # fmt: skip


def _fleet() -> list[Op]:
    name = Param("name", "path", {"type": "string", "pattern": WORKFLOW_NAME_PATTERN},
                 "a workflow's name", example="txt2img")  # fmt: skip
    drain_words = "The node finishes what it holds and claims nothing more, until resumed."
    return [
        Op("GET", "/api/v1/workflows", "listWorkflows", "List workflows",
           "Every published workflow at its active version, with its params. The `ETag` "
           "changes with every publish, rollback or retire: send it back as `If-None-Match` "
           "to get a bodiless 304 while nothing changed.", "workflows",
           {200: Reply("The workflows", WorkflowList,
                       example={"workflows": [WORKFLOW_EXAMPLE]},
                       headers={"ETag": "names the set of active versions"}),
            304: Reply("Nothing changed since the ETag sent", headers={"ETag": "the same"})},
           params=[Param("If-None-Match", "header", {"type": "string"},
                         "an earlier answer's ETag", example='"5d41402abc4b2a76"')],
           errors=[STORE]),
        Op("GET", "/api/v1/workflows/{name}", "getWorkflow", "Get a workflow",
           "A workflow's params, their JSON Schema, and its graphs (API and UI format).",
           "workflows",
           {200: Reply("The workflow", WorkflowDetail, example={
               **WORKFLOW_EXAMPLE, "params_schema": {"type": "object"},
               "graph": {"1": {"class_type": "EmptyImage", "inputs": {}}}, "ui": None})},
           params=[name, Param("version", "query", {"type": "string", "maxLength": 64},
                               "a stored version; default: the current one",
                               example="4c2a9e0b7d13")],
           errors=[STORE]),
        Op("GET", "/api/v1/nodes", "listNodes", "List nodes",
           "Every registered node with its state, load and inventory summary.", "nodes",
           {200: Reply("The nodes", NodeList, example={"nodes": [NODE_INFO_EXAMPLE]})},
           errors=[STORE]),
        Op("GET", "/api/v1/nodes/{node_id}", "getNode", "Get a node",
           "A node's heartbeat record and the jobs it holds.", "nodes",
           {200: Reply("The node", NodeDetail, example={**NODE_INFO_EXAMPLE, "jobs": []})},
           params=[NODE_ID], errors=[STORE]),
        Op("POST", "/api/v1/nodes/{node_id}/drain", "drainNode", "Drain a node",
           drain_words, "nodes",
           {202: Reply("Drain requested", DrainView,
                       example={"node_id": "gpu-box-1-8101", "drain": True})},
           params=[NODE_ID], errors=[STORE]),
        Op("POST", "/api/v1/nodes/{node_id}/resume", "resumeNode", "Resume a node",
           "The node claims jobs again.", "nodes",
           {202: Reply("Resume requested", DrainView,
                       example={"node_id": "gpu-box-1-8101", "drain": False})},
           params=[NODE_ID], errors=[STORE]),
        Op("GET", "/healthz", "healthz", "Liveness", "The process answers. Open.", "health",
           {200: Reply("Alive", HealthView, example={"status": "ok"})}, auth="open"),
        Op("GET", "/readyz", "readyz", "Readiness",
           "Redis answers and at least one node can take jobs. Open.", "health",
           {200: Reply("Ready", ReadinessView,
                       example={"status": "ok", "ready_nodes": 2, "problems": []}),
            503: Reply("Not ready", ReadinessView, example={
                "status": "unavailable", "ready_nodes": 0,
                "problems": ["no node is ready to take jobs"]})},
           auth="open"),
    ]  # fmt: skip


def _apikeys() -> list[Op]:
    key_id = Param("key_id", "path", {"type": "string", "pattern": KEY_ID_PATTERN},
                   "an API key's id", example="3f9a0c1b2d4e")  # fmt: skip
    return [
        Op("POST", "/api/v1/apikeys", "createApiKey", "Create an API key",
           "A new bearer key. The key is in this answer only: it is stored hashed and cannot "
           "be shown again. Admin (basic auth) only.", "apikeys",
           {201: Reply("Created", NewApiKey, example={
               **KEY_INFO_EXAMPLE, "last_used_ms": None,
               "key": "cfk_3f9a0c1b2d4e_" + "x" * 43})},
           body=Body(NewApiKeyRequest, {"ci": {"name": "ci-pipeline"}}),
           errors=[STORE], auth="admin"),
        Op("GET", "/api/v1/apikeys", "listApiKeys", "List API keys",
           "Ids, names, creation and last use; never the keys. Admin only.", "apikeys",
           {200: Reply("The keys", ApiKeyList, example={"keys": [KEY_INFO_EXAMPLE]})},
           errors=[STORE], auth="admin"),
        Op("DELETE", "/api/v1/apikeys/{key_id}", "revokeApiKey", "Revoke an API key",
           "From this answer on, requests with the key get 401. Admin only.", "apikeys",
           {204: Reply("Revoked")}, params=[key_id], errors=[STORE], auth="admin"),
    ]  # fmt: skip


OPERATIONS: list[Op] = [
    METRICS_OP,
    *_jobs(),
    *_fleet(),
    *_apikeys(),
    *events_api.OPS,
    *inputs_api.OPS,
    *workflows_api.OPS,
    *alerts_api.OPS,
    *logs_api.OPS,
    *tenants_api.OPS,
]
TAGS = {
    "jobs": "Submit, follow, cancel jobs; download outputs",
    "workflows": "Published workflows and their typed params",
    "nodes": "The fleet's nodes: state, drain, resume",
    "apikeys": "Bearer API keys (admin only)",
    "alerts": "Alerts firing in the fleet (admin only)",
    "health": "Probes for load balancers and orchestrators (open)",
}
DESCRIPTION = (
    "One front door for many ComfyUI servers. Errors are `application/problem+json` "
    "(RFC 9457) with a stable `type`. Authenticate with basic auth (the admin) or a bearer "
    "API key; only the health probes are open. Each published workflow's params appear as "
    "a schema `Params_<workflow>`."
)


def _common_job_fields(schemas: dict[str, Any]) -> dict[str, Any]:
    """The job request's fields that are not about what runs (priority, pool, ...)."""
    props = schemas["JobRequest"]["properties"]
    return {k: v for k, v in props.items() if k not in ("workflow", "version", "params", "graph")}


def _with_workflows(doc: dict[str, Any], templates: list[Template]) -> dict[str, Any]:
    schemas = doc["components"]["schemas"]
    common = _common_job_fields(schemas)
    choices = []
    for t in templates:
        schemas[f"Params_{t.name}"] = t.params_schema()
        any_required = any(spec.required for spec in t.params.values())
        schemas[f"JobRequest_{t.name}"] = {
            "type": "object",
            "title": f"Run {t.name}",
            "description": t.description,
            "additionalProperties": False,
            "required": ["workflow", "params"] if any_required else ["workflow"],
            "properties": {
                "workflow": {"const": t.name},
                "version": schemas["JobRequest"]["properties"]["version"],
                "params": {"$ref": REF.format(model=f"Params_{t.name}")},
                **common,
            },
        }
        choices.append({"$ref": REF.format(model=f"JobRequest_{t.name}")})
    schemas["GraphJobRequest"] = {
        "type": "object",
        "title": "Run a raw graph",
        "additionalProperties": False,
        "required": ["graph"],
        "properties": {
            "graph": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_GRAPH_NODES,
                "description": "ComfyUI API format: node id -> {class_type, inputs}",
            },
            **common,
        },
    }
    body = doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    body["schema"] = {"oneOf": [*choices, {"$ref": REF.format(model="GraphJobRequest")}]}
    for t in templates:
        example = {name: _example(spec) for name, spec in t.params.items() if spec.required}
        body["examples"][t.name] = {"value": {"workflow": t.name, "params": example}}
    return doc


def _example(spec: ParamSpec) -> Any:
    """A value a required param accepts, for the example menu (defaults fill the rest)."""
    match spec.type:
        case "integer" | "number":
            low = spec.minimum if spec.minimum is not None else 0
            step = spec.multiple_of or 1
            value = -(-low // step) * step  # the smallest multiple of step not below low
            return int(value) if spec.type == "integer" else float(value)
        case "boolean":
            return True
        case "enum":
            return (spec.choices or (None,))[0]
        case "seed":
            return 42
        case "image":
            return "input.png"
    return "a red fox in snow"[: spec.max_length or None]


@functools.cache
def _base_document() -> dict[str, Any]:
    """Built once per process (the models do not change); copied before it is extended."""
    return build_document(
        title="comfyfleet balancer", description=DESCRIPTION, ops=OPERATIONS, tags=TAGS
    )


async def document(request: web.Request) -> dict[str, Any]:
    """The balancer's document, with this fleet's workflows and their params."""
    doc = served_only(copy.deepcopy(_base_document()), request.app)
    return _with_workflows(doc, await request.app[WORKFLOWS].list())
