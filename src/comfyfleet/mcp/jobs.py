"""Running a job for a tool call and turning the job into the tool's result.

A call submits the job, follows its live events (queue position, steps) as progress
notifications, and answers when the job ends or after `wait_s`: then with the job id and
its status, for the agent to poll with `get_job`. If the client cancels the call, the job
is cancelled too. Images come back as downscaled previews (image content) plus a resource
link per output (`comfyfleet://jobs/<id>/outputs/<index>`, readable in full); a failed job
is a tool error carrying the job's error code and message.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
import structlog

from comfyfleet.mcp.client import ApiError, BalancerClient
from comfyfleet.mcp.preview import IMAGE_TYPES, make_preview
from comfyfleet.mcp.progress import Progress, ProgressMeter

log = structlog.get_logger(__name__)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# How long a cancel triggered by a cancelled call may take (s): it runs shielded.
CANCEL_TIMEOUT_S = 10.0
Report = Callable[[Progress], Awaitable[None]]


def output_uri(job_id: str, index: int) -> str:
    return f"comfyfleet://jobs/{job_id}/outputs/{index}"


def tool_error(text: str, **structured: Any) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=structured or None,
        is_error=True,
    )


def refused(exc: ApiError) -> types.CallToolResult:
    """The balancer's refusal as a tool error (naming the param when it names one)."""
    where = f" (param {exc.param!r})" if exc.param else ""
    return tool_error(f"refused{where}: [{exc.code}] {exc.detail}", code=exc.code,
                      param=exc.param, status=exc.status)  # fmt: skip


class JobRunner:
    def __init__(self, client: BalancerClient, *, preview_px: int, preview_bytes: int) -> None:
        self.client = client
        self.preview_px = preview_px
        self.preview_bytes = preview_bytes

    async def run(
        self, body: dict[str, Any], *, wait_s: float, report: Report
    ) -> types.CallToolResult:
        """Submit `body` (a POST /api/v1/jobs body), follow it, answer the tool result."""
        try:
            job = await self.client.json("POST", "/api/v1/jobs", body)
        except ApiError as exc:
            return refused(exc)
        return await self.follow(job["id"], wait_s=wait_s, report=report)

    async def follow(self, job_id: str, *, wait_s: float, report: Report) -> types.CallToolResult:
        """Wait up to `wait_s` for the job to end (reporting progress), then answer it."""
        try:
            with anyio.move_on_after(wait_s):  # still running after it: answered as such
                try:
                    await self._watch(job_id, report)
                except ApiError as exc:  # no live events: answer the job as it is now
                    log.warning("job_events_lost", job_id=job_id, error=str(exc))
            job = await self.client.json("GET", f"/api/v1/jobs/{job_id}")
        except anyio.get_cancelled_exc_class():
            # The client cancelled the call: cancel the job too, even though this task is
            # being cancelled (the shield lets the DELETE through).
            with anyio.CancelScope(shield=True):
                await self._cancel_after_call(job_id)
            raise
        except ApiError as exc:
            return refused(exc)
        return await self.result(job)

    async def _watch(self, job_id: str, report: Report) -> None:
        meter = ProgressMeter()
        async for kind, data in self.client.events(job_id):
            news = meter.feed(kind, data)
            if news is not None:
                await report(news)
            if kind == "state" and data.get("status") in TERMINAL:
                return

    async def _cancel_after_call(self, job_id: str) -> None:
        try:
            with anyio.fail_after(CANCEL_TIMEOUT_S):
                await self.client.json("DELETE", f"/api/v1/jobs/{job_id}")
            log.info("job_cancelled_with_call", job_id=job_id)
        except (ApiError, TimeoutError) as exc:
            log.warning("job_cancel_failed", job_id=job_id, error=str(exc))

    async def result(self, job: dict[str, Any]) -> types.CallToolResult:
        """A job as a tool result: images and links when it succeeded, an error when it
        failed or was cancelled, its id and status while it is not finished."""
        status = job["status"]
        summary = _summary(job)
        if status not in TERMINAL:
            position = job.get("queue_position")
            where = f", queue position {position + 1}" if position is not None else ""
            text = (f"job {job['id']} is {status}{where}; call get_job with "
                    f'{{"job_id": "{job["id"]}"}} to follow it')  # fmt: skip
            return _ok([types.TextContent(type="text", text=text)], summary)
        if status != "succeeded":
            error = job.get("error") or {}
            code, message = error.get("code", status), error.get("message", "")
            return tool_error(f"job {job['id']} {status}: [{code}] {message}".rstrip(": "),
                              **summary)  # fmt: skip
        content: list[Any] = [types.TextContent(type="text", text=_describe(job))]
        for output in job["outputs"]:
            content += await self._output(job["id"], output)
        return _ok(content, summary)

    async def _output(self, job_id: str, output: dict[str, Any]) -> list[Any]:
        kind = str(output["content_type"])
        link = types.ResourceLink(
            type="resource_link",
            name=str(output["filename"]),
            uri=output_uri(job_id, int(output["index"])),
            mime_type=kind,
            size=int(output["size"]),
            description=f"output {output['index']} of job {job_id}, full size",
        )
        if kind not in IMAGE_TYPES:
            return [link]
        _, data = await self.client.output(job_id, int(output["index"]))
        preview = await anyio.to_thread.run_sync(
            make_preview, data, self.preview_px, self.preview_bytes
        )
        if preview is None:
            return [link]
        image = types.ImageContent(
            type="image", data=base64.b64encode(preview.data).decode(), mime_type=preview.mime_type
        )
        return [image, link]


def _ok(content: list[Any], structured: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=content, structured_content=structured, is_error=False)


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job["id"],
        "status": job["status"],
        "workflow": job.get("workflow"),
        "workflow_version": job.get("workflow_version"),
        "params": job.get("params") or {},
        "queue_position": job.get("queue_position"),
        "progress": job.get("progress"),
        "error": job.get("error"),
        "outputs": [
            {"index": o["index"], "filename": o["filename"], "content_type": o["content_type"],
             "size": o["size"], "uri": output_uri(job["id"], int(o["index"]))}
            for o in job.get("outputs") or []
        ],
    }  # fmt: skip


def _describe(job: dict[str, Any]) -> str:
    took = ""
    if job.get("finished_ms") and job.get("created_ms"):
        took = f" in {(job['finished_ms'] - job['created_ms']) / 1000:.1f} s"
    outputs = ", ".join(f"{o['filename']} ({o['content_type']}, {o['size']} bytes)"
                        for o in job["outputs"]) or "no outputs"  # fmt: skip
    what = job.get("workflow") or "graph"
    return f"job {job['id']} ({what}) succeeded{took}: {outputs}"
