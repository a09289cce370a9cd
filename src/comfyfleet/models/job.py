"""The job model: status enum, terminal set, allowed transitions, and the serialized form.

A job lives in Redis as one HASH (see `store.keys`). Scalar fields are stored as strings,
structured fields (params, graph, outputs, error, history) as JSON strings, so Lua scripts
can change single fields atomically without reading the whole job into Python. A field
the hash would only repeat is left out, since every byte of a job stays in Redis for the
whole retention (`to_fields`/`from_fields` are the one mapping, both ways):
- `id`: it is in the key; readers pass it (scripts answer it beside the hash);
- `schema_version` while it is IMPLIED_SCHEMA_VERSION (a later version is written);
- `params`, `metadata`, `outputs`, `history` while empty, `cancel_requested` while false;
- `updated_ms` while it equals `finished_ms` (a finished job) or `created_ms` (a job not
  changed since it was queued);
- `history` of a job that succeeded at its first attempt (complete.lua; derived from
  node_id, started_ms and finished_ms), and an output's `key` while it is the blob name
  of the attempt that stored it (`stored_outputs`; derived from pool, attempts and
  started_ms), with that output's members at OutputRef's defaults;
- a None field (scripts later write '' for one they clear; both read back as None);
- the `graph` of a finished job of a published workflow, while its version is in Redis
  (drop_rendered_graph in lua/_lib.lua): it reads back as {}, and
  `WorkflowRegistry.job_graph` renders it again from `workflow_version` and `params`.
The hash also holds FOLDED_LOG, the job's event log once it ended (store/events.py), and
FOLDED_JOBLOG<n>, its last attempt's ComfyUI log lines when few (store/joblogs.py), which
are not fields of the model.

Times are integer milliseconds since the epoch; `None` means "not yet".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
# The version a hash without `schema_version` has: fixed, so that a later SCHEMA_VERSION is
# written out while hashes of this one still read as this one.
IMPLIED_SCHEMA_VERSION = 1
# The job hash field holding the folded event log of a finished job (lua/_lib.lua fold_log).
FOLDED_LOG = "events"
# The job hash field (FOLDED_JOBLOG + attempt number) holding the ComfyUI log lines of the
# attempt that ended the job, moved out of their list when they take at most
# FOLDED_JOBLOG_MAX bytes (lua/_lib.lua fold_joblog; under hash-max-listpack-value, 1024,
# so the hash stays a listpack).
FOLDED_JOBLOG = "joblog:"
FOLDED_JOBLOG_MAX = 768
DEFAULT_POOL = "default"
# Jobs written before owners were recorded, and jobs submitted with auth switched off.
DEFAULT_OWNER = "admin"
# The capability class of a job that any node can run (models/capability.py): jobs
# queued without a requirement.
ANY_CAPABILITY = "any"
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

# The lifecycle of DESIGN "Job lifecycle": every change of status a job script makes is one
# of these (tests/store/test_transitions.py drives each script and checks).
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.QUEUED, JobStatus.CANCELLED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class JobErrorCode(StrEnum):
    """Why an attempt failed: the one list of `JobError.code` values clients switch on.

    Not retried (the job itself is wrong): comfy_validation, comfy_refused,
    execution_error, input_missing, output_too_large. Every other code is a fault of the
    node or its ComfyUI: the job is retried (avoiding that node) while attempts remain.
    """

    COMFY_VALIDATION = "comfy_validation"  # ComfyUI refused the graph (HTTP 400)
    COMFY_REFUSED = "comfy_refused"  # ComfyUI refused the request for another reason (4xx)
    EXECUTION_ERROR = "execution_error"  # a node of the graph raised an exception
    INPUT_MISSING = "input_missing"  # an uploaded input the graph names is gone
    OUTPUT_TOO_LARGE = "output_too_large"  # an output exceeds the result store's cap
    COMFY_OOM = "comfy_oom"  # ComfyUI ran out of GPU memory
    COMFY_UNAVAILABLE = "comfy_unavailable"  # ComfyUI unreachable or erroring
    COMFY_HUNG = "comfy_hung"  # ComfyUI stopped executing the prompt
    COMFY_LOST = "comfy_lost"  # ComfyUI lost the prompt (restarted)
    COMFY_INTERRUPTED = "comfy_interrupted"  # someone interrupted the prompt in ComfyUI
    COMFY_DELETED = "comfy_deleted"  # someone deleted the prompt from ComfyUI's queue
    NODE_RESTARTED = "node_restarted"  # the node restarted and ComfyUI forgot the prompt
    HANDED_BACK = "handed_back"  # the node stopped (drain) while the prompt ran
    TIMEOUT = "timeout"  # the job ran past its timeout_ms
    INPUT_STAGING = "input_staging"  # uploading an input to ComfyUI failed
    OUTPUT_UNAVAILABLE = "output_unavailable"  # fetching or storing an output failed
    FENCED = "fenced"  # the node could not confirm its lease for half of it and stopped
    LEASE_EXPIRED = "lease_expired"  # the node stopped renewing the lease (reaper)
    NODE_LOST = "node_lost"  # the node stopped sending heartbeats (reaper)


# Spellings written before the registry (README changelog), read as today's codes so jobs
# stored by an older version still load.
OLD_ERROR_CODES: dict[str, JobErrorCode] = {
    "comfy-unreachable": JobErrorCode.OUTPUT_UNAVAILABLE,
    "comfy-server-error": JobErrorCode.OUTPUT_UNAVAILABLE,
    "comfy-protocol": JobErrorCode.OUTPUT_UNAVAILABLE,
    "comfy-not-found": JobErrorCode.OUTPUT_UNAVAILABLE,
    "comfy-unavailable": JobErrorCode.OUTPUT_UNAVAILABLE,
    "store-unavailable": JobErrorCode.OUTPUT_UNAVAILABLE,
    "output-too-large": JobErrorCode.OUTPUT_TOO_LARGE,
}


class JobError(BaseModel):
    """Why an attempt or a job failed. `code` is stable and machine-readable."""

    model_config = ConfigDict(frozen=True)

    code: JobErrorCode
    message: str
    retryable: bool = False
    node_id: str | None = None
    # ComfyUI's node id/type when the failure came from executing the graph.
    comfy_node_id: str | None = None
    comfy_node_type: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("code", mode="before")
    @classmethod
    def _old_spelling(cls, value: object) -> object:
        return OLD_ERROR_CODES.get(value, value) if isinstance(value, str) else value


class OutputRef(BaseModel):
    """One output file of a succeeded job. The bytes live in the blob store under `key`."""

    model_config = ConfigDict(frozen=True)

    index: int
    filename: str
    content_type: str = "image/png"
    size: int = Field(description="bytes")
    node_id: str | None = None
    # ComfyUI's folder type: "output" (SaveImage) or "temp" (PreviewImage).
    kind: str = "output"
    sha256: str | None = None
    # The bytes' key in the blob store (comfyfleet.blobs.naming); None: never stored.
    key: str | None = None


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
    # Who submitted it (`web.auth.Principal.label`: admin, anonymous or apikey:<id>): the
    # tenant whose job it is.
    owner: str = DEFAULT_OWNER
    # ComfyUI's `extra_data` of a native POST /prompt (e.g. `extra_pnginfo`, which ComfyUI
    # writes into the PNGs it saves), passed on to ComfyUI as the client sent it.
    extra_data: dict[str, Any] | None = None
    # Which nodes can run it (models/capability.py): the id of its requirement's class.
    capability: str = ANY_CAPABILITY


# Fields that are stored as JSON strings inside the job hash.
_JSON_FIELDS = ("graph", "params", "outputs", "error", "history", "metadata", "extra_data")
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
    owner: str = DEFAULT_OWNER
    capability: str = ANY_CAPABILITY
    extra_data: dict[str, Any] | None = None
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

    def to_fields(self) -> dict[str, str]:
        """The Redis hash form: every field that has a value, less those the module's
        docstring lists (from_fields reads them back), since each field costs Redis memory
        for as long as the job is kept."""
        data = self.model_dump(mode="json")
        out: dict[str, str] = {}
        for name, value in data.items():
            if value is None or _implied(name, value, data):
                continue
            if name in _JSON_FIELDS:
                out[name] = orjson.dumps(value).decode()
            elif isinstance(value, bool):
                out[name] = "1" if value else "0"
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_fields(cls, raw: Mapping[str, str], job_id: str | None = None) -> Job:
        """Parse the Redis hash form (see `store.scripts.fields_of` for a raw reply) of the
        job `job_id` (None: the hash names it, as a script's answer does, or as hashes
        written before ids were left out did); unknown fields are ignored so an older reader
        survives a newer writer."""
        data: dict[str, Any] = {"id": job_id}
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
        if isinstance(data.get("outputs"), list):
            data["outputs"] = outputs_with_keys(data["outputs"], data)
        if "history" not in data and (lone := _lone_success(data)) is not None:
            data["history"] = [lone]
        data.setdefault("schema_version", IMPLIED_SCHEMA_VERSION)
        data.setdefault("cancel_requested", False)
        if data.get("updated_ms") is None:
            data["updated_ms"] = data.get("finished_ms") or data.get("created_ms") or 0
        return cls.model_validate(data)


def _key_of(output: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    """The blob name an output of the job's current attempt has (blobs/naming.py);
    `fields`: the job's id, pool, attempts and started_ms."""
    from comfyfleet.blobs import naming  # here: the blobs package imports the store's model

    tag = naming.attempt_tag(int(fields.get("attempts") or 0), fields.get("started_ms"))
    pool = str(fields.get("pool") or DEFAULT_POOL)
    index, filename = int(output["index"]), str(output["filename"])
    return naming.output_key(pool, str(fields["id"]), tag, index, filename)


def outputs_with_keys(outputs: list[Any], fields: Mapping[str, Any]) -> list[Any]:
    """The job hash's `outputs` as they were recorded: an output without `key` (stored by
    `stored_outputs`) gets the name of its attempt's blob and the members left at their
    defaults back, in OutputRef's order."""
    return [o if "key" in o else _whole_output({**o, "key": _key_of(o, fields)})
            for o in outputs]  # fmt: skip


def _whole_output(output: dict[str, Any]) -> dict[str, Any]:
    whole: dict[str, Any] = OutputRef.model_validate(output).model_dump(mode="json")
    return whole


def stored_outputs(job_id: str, outputs: Sequence[OutputRef]) -> tuple[str, str, str] | None:
    """The job hash's form of outputs whose keys are all their attempt's blob names:
    (JSON without the keys, pool, attempt tag), which complete.lua stores when the job's
    pool and current attempt are those; None when any key is named otherwise."""
    from comfyfleet.blobs import naming  # here: the blobs package imports the store's model

    named = {naming.parse_output_key(o.key) if o.key is not None else None for o in outputs}
    if len(named) != 1 or (name := named.pop()) is None:
        return None
    pool, tag = name.pool, name.tag
    if any(o.key != naming.output_key(pool, job_id, tag, o.index, o.filename) for o in outputs):
        return None
    # Members at OutputRef's defaults go too: outputs_with_keys reads them back.
    trimmed = [o.model_dump(mode="json", exclude={"key"}, exclude_defaults=True) for o in outputs]
    return orjson.dumps(trimmed).decode(), pool, tag


def _lone_success(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The history of a job that succeeded at its first attempt, which its other fields
    tell (complete.lua does not store it); None for any other job."""
    if (data.get("status") != JobStatus.SUCCEEDED or data.get("attempts") != 1
            or data.get("started_ms") is None or data.get("finished_ms") is None
            or not data.get("node_id")):  # fmt: skip
        return None
    return {"attempt": 1, "node_id": data["node_id"], "started_ms": data["started_ms"],
            "ended_ms": data["finished_ms"], "outcome": JobStatus.SUCCEEDED.value,
            "error": None}  # fmt: skip


def _implied(name: str, value: Any, data: Mapping[str, Any]) -> bool:
    """Whether `to_fields` leaves the field out, as from_fields infers its value."""
    if name == "id":
        return True
    if name == "schema_version":
        return bool(value == IMPLIED_SCHEMA_VERSION)
    if name in ("params", "metadata", "outputs"):
        return not value
    if name == "history":
        return not value or bool(value == [_lone_success(data)])
    if name == "cancel_requested":
        return value is False
    if name == "updated_ms":
        return bool(value == (data.get("finished_ms") or data.get("created_ms") or 0))
    return False
