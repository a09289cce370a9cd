"""The job model: status enum, terminal set, allowed transitions, and the serialized form.

A job lives in Redis as one HASH (see `store.keys`). Scalar fields are stored as strings,
structured fields (params, graph, outputs, error, history) as JSON strings, so Lua scripts
can change single fields atomically without reading the whole job into Python. Every field
is always written, defaults included, beside `schema_version`.

Times are integer milliseconds since the epoch; `None` means "not yet".
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
DEFAULT_POOL = "default"
DEFAULT_MAX_ATTEMPTS = 3
# Priorities are small integers; higher runs first. The queue score packs priority above a
# sequence number, so the range is bounded.
MIN_PRIORITY = -100
MAX_PRIORITY = 100


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)

# The lifecycle of DESIGN "Job lifecycle"; the Lua scripts enforce the same table.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.QUEUED, JobStatus.CANCELLED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(old: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[old]


class JobError(BaseModel):
    """Why an attempt or a job failed. `code` is stable and machine-readable."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    retryable: bool = False
    node_id: str | None = None
    # ComfyUI's node id/type when the failure came from executing the graph.
    comfy_node_id: str | None = None
    comfy_node_type: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class OutputRef(BaseModel):
    """One output file of a succeeded job. The bytes live in the result store."""

    model_config = ConfigDict(frozen=True)

    index: int
    filename: str
    content_type: str = "image/png"
    size: int = Field(description="bytes")
    node_id: str | None = None
    # ComfyUI's folder type: "output" (SaveImage) or "temp" (PreviewImage).
    kind: str = "output"
    sha256: str | None = None


class AttemptRecord(BaseModel):
    """One attempt at running the job, appended when the attempt ends."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    node_id: str
    started_ms: int
    ended_ms: int
    outcome: str
    error: JobError | None = None


class JobSpec(BaseModel):
    """What a client asks for; the balancer turns it into a Job."""

    graph: dict[str, Any]
    workflow: str | None = None
    workflow_version: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    pool: str = DEFAULT_POOL
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=20)
    # Per-attempt run time limit in milliseconds; None: no limit beyond the lease.
    timeout_ms: int | None = Field(default=None, ge=1)
    webhook_url: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


# Fields that are stored as JSON strings inside the job hash.
_JSON_FIELDS = ("graph", "params", "outputs", "error", "history", "metadata")
_INT_FIELDS = (
    "schema_version",
    "priority",
    "attempts",
    "max_attempts",
    "seq",
    "created_ms",
    "updated_ms",
    "started_ms",
    "finished_ms",
    "lease_deadline_ms",
    "timeout_ms",
    "not_before_ms",
)
_BOOL_FIELDS = ("cancel_requested",)


class Job(BaseModel):
    """A job as stored. `attempts` counts claims so far (0 while first queued)."""

    id: str
    schema_version: int = SCHEMA_VERSION
    status: JobStatus = JobStatus.QUEUED
    workflow: str | None = None
    workflow_version: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    graph: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0
    pool: str = DEFAULT_POOL
    # Enqueue order within the queue; kept across requeues so a retried job keeps its place.
    seq: int = 0
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_ms: int | None = None
    created_ms: int = 0
    updated_ms: int = 0
    started_ms: int | None = None
    finished_ms: int | None = None
    # Not claimable before this time (retry backoff); None: at once.
    not_before_ms: int | None = None
    node_id: str | None = None
    lease_deadline_ms: int | None = None
    # The node whose fault ended the last attempt: claim passes the job over there while
    # another ready node serves its pool (None: no preference).
    avoid_node: str | None = None
    cancel_requested: bool = False
    idempotency_key: str | None = None
    webhook_url: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    outputs: list[OutputRef] = Field(default_factory=list)
    error: JobError | None = None
    history: list[AttemptRecord] = Field(default_factory=list)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def retryable(self) -> bool:
        """Would a retryable failure of the current attempt requeue the job?"""
        return not self.is_terminal and self.attempts < self.max_attempts

    def to_fields(self) -> dict[str, str]:
        """The Redis hash form: every field, defaults included; '' stands for None."""
        data = self.model_dump(mode="json")
        out: dict[str, str] = {}
        for name, value in data.items():
            if name in _JSON_FIELDS:
                out[name] = "" if value is None else orjson.dumps(value).decode()
            elif isinstance(value, bool):
                out[name] = "1" if value else "0"
            else:
                out[name] = "" if value is None else str(value)
        return out

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes] | dict[str, str]) -> Job:
        """Parse the Redis hash form (bytes or str keys); unknown fields are ignored so an
        older reader survives a newer writer."""
        raw = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        data: dict[str, Any] = {}
        for name in cls.model_fields:
            if name not in raw:
                continue
            value = raw[name]
            if name in _JSON_FIELDS:
                data[name] = orjson.loads(value) if value else None
            elif name in _INT_FIELDS:
                data[name] = int(value) if value != "" else None
            elif name in _BOOL_FIELDS:
                data[name] = value == "1"
            else:
                data[name] = value if value != "" else None
        for name in ("params", "graph", "metadata"):
            if data.get(name) is None:
                data.pop(name, None)
        for name in ("outputs", "history"):
            if data.get(name) is None:
                data.pop(name, None)
        for name in ("schema_version", "priority", "attempts", "max_attempts", "seq"):
            if data.get(name) is None:
                data.pop(name, None)
        return cls.model_validate(data)
