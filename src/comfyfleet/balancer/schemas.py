"""Request and response bodies of the balancer's API. The OpenAPI document is generated from
these same models, so they are the one source of truth for the wire format."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from comfyfleet.models.job import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_POOL,
    MAX_PRIORITY,
    MIN_PRIORITY,
    AttemptRecord,
    Job,
    JobError,
    JobStatus,
)
from comfyfleet.models.node import NodeInfo
from comfyfleet.web.redact import scrub, strip_host_paths

MAX_GRAPH_NODES = 500
# Ids as they appear in paths. Anything else names nothing, and never reaches a Redis key
# (a node id with ':' could alias another key of the node's).
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
NODE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
JOB_ID_RE = re.compile(JOB_ID_PATTERN)
NODE_ID_RE = re.compile(NODE_ID_PATTERN)


class JobRequest(BaseModel):
    """Submit a job: a published workflow with typed params, or a raw API-format graph."""

    # Strict: `"priority": false` or `"max_attempts": "3"` is a mistake to name, not a value
    # to coerce (the document says integer; the fuzzer sends exactly these).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"workflow": "txt2img", "params": {"prompt": "a red fox in snow", "steps": 20}},
                {"graph": {"1": {"class_type": "EmptyImage", "inputs": {"width": 64}}}},
            ]
        },
    )

    workflow: str | None = Field(default=None, min_length=1, max_length=128)
    version: str | None = Field(default=None, description="a workflow version; default current")
    params: dict[str, Any] = Field(default_factory=dict)
    graph: dict[str, Any] | None = None
    priority: int = Field(default=0, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    pool: str = Field(default=DEFAULT_POOL, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=20)
    timeout_ms: int | None = Field(default=None, ge=1000, le=24 * 3600 * 1000)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=32)
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="POSTed (signed, Standard Webhooks) when the job ends; public hosts only "
        "unless the balancer allowlists a network",
    )
    webhook_events: list[Literal["state", "progress"]] = Field(
        default_factory=list,
        max_length=2,
        description="also send non-terminal state changes and/or step progress (coalesced "
        "to about one a second)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> JobRequest:
        if (self.workflow is None) == (self.graph is None):
            raise ValueError("give exactly one of 'workflow' or 'graph'")
        if self.graph is not None and self.params:
            raise ValueError("'params' only applies to a 'workflow'")
        if self.graph is not None and not 0 < len(self.graph) <= MAX_GRAPH_NODES:
            raise ValueError(f"'graph' must have 1 to {MAX_GRAPH_NODES} nodes")
        return self


class OutputView(BaseModel):
    index: int
    filename: str
    content_type: str
    size: int = Field(description="bytes")
    node_id: str | None = None
    sha256: str | None = Field(default=None, description="hex digest of the bytes")
    url: str = Field(description="where to GET the bytes: this balancer, or a presigned or "
                     "CDN URL when the balancer hands those out")  # fmt: skip


class ProgressView(BaseModel):
    value: int
    max: int
    node: str | None = None


class JobView(BaseModel):
    """A job as clients see it. Times in ms since the epoch."""

    id: str
    status: JobStatus
    workflow: str | None
    workflow_version: str | None
    params: dict[str, Any]
    priority: int
    pool: str
    owner: str = Field(description="who submitted it: admin, anonymous or apikey:<key id>")
    attempts: int
    max_attempts: int
    node_id: str | None
    queue_position: int | None = None
    progress: ProgressView | None = None
    cancel_requested: bool
    created_ms: int
    started_ms: int | None
    finished_ms: int | None
    outputs: list[OutputView]
    error: JobError | None
    history: list[AttemptRecord]
    metadata: dict[str, str]

    @classmethod
    def of(
        cls,
        job: Job,
        *,
        base_url: str,
        queue_position: int | None = None,
        progress: ProgressView | None = None,
        output_urls: Mapping[int, str] | None = None,
    ) -> JobView:
        """`output_urls`: where to fetch outputs instead of the balancer (presigned, CDN)."""
        urls = output_urls or {}
        outputs = [
            OutputView(
                index=o.index,
                filename=o.filename,
                content_type=o.content_type,
                size=o.size,
                node_id=o.node_id,
                sha256=o.sha256,
                url=urls.get(o.index) or f"{base_url}/api/v1/jobs/{job.id}/outputs/{o.index}",
            )
            for o in job.outputs
        ]
        return cls(
            id=job.id,
            status=job.status,
            workflow=job.workflow,
            workflow_version=job.workflow_version,
            params=job.params,
            priority=job.priority,
            pool=job.pool,
            owner=job.owner,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            node_id=job.node_id,
            queue_position=queue_position,
            progress=progress,
            cancel_requested=job.cancel_requested,
            created_ms=job.created_ms,
            started_ms=job.started_ms,
            finished_ms=job.finished_ms,
            outputs=outputs,
            error=public_error(job.error),
            history=[a.model_copy(update={"error": public_error(a.error)}) for a in job.history],
            metadata=job.metadata,
        )


def public_error(error: JobError | None) -> JobError | None:
    """The error as clients see it: no absolute paths of the ComfyUI host (web/redact.py)."""
    if error is None:
        return None
    return error.model_copy(
        update={"message": strip_host_paths(error.message), "details": scrub(error.details)}
    )


class JobPage(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: end")


class WorkflowSummary(BaseModel):
    """A published workflow: its current version and each param as a JSON Schema."""

    name: str
    version: str
    description: str
    params: dict[str, dict[str, Any]]


class WorkflowList(BaseModel):
    workflows: list[WorkflowSummary]


class WorkflowDetail(WorkflowSummary):
    """The summary plus the params object's schema and the graphs (API and UI format)."""

    params_schema: dict[str, Any]
    graph: dict[str, Any]
    ui: dict[str, Any] | None


class NodeList(BaseModel):
    nodes: list[NodeInfo]


class NodeDetail(NodeInfo):
    jobs: list[str] = Field(description="ids of the jobs the node holds a lease on")


class DrainView(BaseModel):
    node_id: str
    drain: bool = Field(description="true: the node stops claiming; false: it claims again")


class HealthView(BaseModel):
    status: Literal["ok"]


class ReadinessView(BaseModel):
    status: Literal["ok", "unavailable"]
    ready_nodes: int
    problems: list[str] = Field(default_factory=list, description="why not ready (503)")
