"""`GET /api/v1/jobs/{id}/logs`: what ComfyUI wrote while each attempt of a job ran there.

The node that ran an attempt kept its ComfyUI's lines of that attempt (`store/joblogs.py`:
the last 200 lines / 64 KiB, a traceback being one line, secrets redacted), so a failed
job's traceback can be read without a shell on the GPU box. Lines can land a moment after
the job ends (a pipe and a socket do not keep each other's order).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from comfyfleet.balancer.appkeys import JOBS
from comfyfleet.balancer.schemas import JOB_ID_PATTERN
from comfyfleet.balancer.tenancy import job_or_404
from comfyfleet.models.job import Job
from comfyfleet.store.joblogs import MAX_BYTES, MAX_LINES, JobLogStore
from comfyfleet.web.numbers import ascii_int
from comfyfleet.web.openapi import Op, Param, Reply
from comfyfleet.web.responses import json_response

routes = web.RouteTableDef()
MAX_ATTEMPT = 20  # JobSpec.max_attempts' bound


class LogLine(BaseModel):
    n: int = Field(description="the line's number within its attempt, from 1")
    t: int = Field(description="when the node got it, ms since the epoch")
    level: str = Field(description="debug|info|warning|error|critical, as parsed")
    stream: str = Field(description="stdout|stderr (a ComfyUI the node runs) or log (its log "
                        "stream)")  # fmt: skip
    text: str = Field(description="the line; a traceback is one line with newlines")
    prompt_id: str | None = None
    comfy_t: str | None = Field(default=None, description="ComfyUI's own timestamp, if sent")


class AttemptLogs(BaseModel):
    attempt: int
    node_id: str | None = None
    outcome: str | None = Field(default=None, description="None while it runs")
    dropped: int = Field(default=0, description="earlier lines no longer kept (bounds)")
    lines: list[LogLine] = Field(default_factory=list)


class JobLogs(BaseModel):
    job_id: str
    status: str
    max_lines: int = MAX_LINES
    max_bytes: int = MAX_BYTES
    attempts: list[AttemptLogs] = Field(default_factory=list)


def _attempt_filter(request: web.Request) -> int | None:
    raw = request.query.get("attempt")
    if raw is None:
        return None
    return ascii_int(raw, "attempt", 1, MAX_ATTEMPT)


def _attempt_view(job: Job, number: int, lines: list[dict[str, Any]]) -> AttemptLogs:
    record = next((r for r in job.history if r.attempt == number), None)
    node_id = record.node_id if record else job.node_id
    outcome = record.outcome if record else None
    dropped = int(lines[0].get("n", 1)) - 1 if lines else 0
    parsed = [LogLine.model_validate(line) for line in lines]
    return AttemptLogs(attempt=number, node_id=node_id, outcome=outcome, dropped=dropped,
                       lines=parsed)  # fmt: skip


@routes.get("/api/v1/jobs/{job_id}/logs")
async def job_logs(request: web.Request) -> web.Response:
    only = _attempt_filter(request)
    store = request.app[JOBS]
    job = await job_or_404(request)
    logs = await JobLogStore(store.redis, store.keys).read(job.id, job.attempts)
    attempts = [
        _attempt_view(job, number, lines)
        for number, lines in logs.items()
        if only is None or number == only
    ]
    view = JobLogs(job_id=job.id, status=job.status.value, attempts=attempts)
    return json_response(view.model_dump(mode="json"))


EXAMPLE: dict[str, Any] = {
    "job_id": "9f1c2e3d4b5a69788796a5b4c3d2e1f0",
    "status": "failed",
    "max_lines": MAX_LINES,
    "max_bytes": MAX_BYTES,
    "attempts": [{
        "attempt": 1, "node_id": "gpu-box-1-8101", "outcome": "execution_error", "dropped": 0,
        "lines": [
            {"n": 1, "t": 1_760_000_000_125, "level": "error", "stream": "stderr",
             "text": "!!! Exception during processing !!! CUDA error: device-side assert",
             "prompt_id": "0f3e2d1c-0b9a-5876-8543-210fedcba987", "comfy_t": None},
            {"n": 2, "t": 1_760_000_000_126, "level": "error", "stream": "stderr",
             "text": "Traceback (most recent call last):\n  File \"/opt/ComfyUI/execution.py\""
                     ", line 496, in execute\n    ...\nRuntimeError: CUDA error: "
                     "device-side assert", "prompt_id": "0f3e2d1c-0b9a-5876-8543-210fedcba987",
             "comfy_t": None},
        ],
    }],
}  # fmt: skip

OPS = [
    Op("GET", "/api/v1/jobs/{job_id}/logs", "getJobLogs", "ComfyUI's log lines of a job",
       "What ComfyUI wrote while each attempt of the job ran on it (stdout/stderr of a "
       "ComfyUI the node runs, or its log stream), oldest first: the last "
       f"{MAX_LINES} lines / {MAX_BYTES // 1024} KiB per attempt, a Python traceback as one "
       "line, secrets (API keys, passwords in URLs, Authorization values) redacted. "
       "`dropped` counts earlier lines no longer kept. Kept as long as the job. Lines may "
       "land a moment after the job ends. `?attempt=N` answers that attempt only.",
       "jobs",
       {200: Reply("The job's ComfyUI lines per attempt", JobLogs, example=EXAMPLE)},
       params=[Param("job_id", "path", {"type": "string", "pattern": JOB_ID_PATTERN},
                     "a job's id", example="9f1c2e3d4b5a69788796a5b4c3d2e1f0"),
               Param("attempt", "query", {"type": "integer", "minimum": 1,
                                          "maximum": MAX_ATTEMPT},
                     "only this attempt", example=1)],
       errors=[503]),
]  # fmt: skip
