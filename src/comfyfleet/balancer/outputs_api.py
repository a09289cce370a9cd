"""Serving job outputs: `GET /api/v1/jobs/{id}/outputs/{index}` streams the bytes from the
blob store through the balancer (with HTTP range requests), and `output_urls` says where
clients fetch them instead when the balancer is configured to hand out presigned URLs or a
public (CDN) base URL. Handlers never hold a whole output in memory."""

from __future__ import annotations

import contextlib
import re

import structlog
from aiohttp import web

from comfyfleet.balancer.appkeys import CONFIG, RESULTS
from comfyfleet.balancer.tenancy import job_or_404
from comfyfleet.blobs import ByteRange
from comfyfleet.errors import ComfyfleetError, NotFound
from comfyfleet.models.job import Job, JobStatus, OutputRef
from comfyfleet.web.numbers import ascii_int
from comfyfleet.web.problems import REQUEST_ID_HEADER, problem_response
from comfyfleet.web.responses import content_disposition

routes = web.RouteTableDef()

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# The largest output index a path may name (the OpenAPI document reads it too).
MAX_OUTPUT_INDEX = 999_999


class RangeNotSatisfiable(ComfyfleetError):
    status = 416
    code = "range-not-satisfiable"
    title = "Range not satisfiable"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a `Range` header asks of a `size`-byte blob; None for the whole
    blob (no header, a syntax we ignore as RFC 9110 allows, or several ranges).
    RangeNotSatisfiable when it starts past the end."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        if int(last) == 0:
            raise RangeNotSatisfiable(f"range {header} asks for no bytes of {size}")
        return ByteRange(max(0, size - int(last)), size - 1) if size else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # not a valid range: ignored
    if start >= size:
        raise RangeNotSatisfiable(f"range {header} is outside the output's {size} bytes")
    return ByteRange(start, end)


async def output_urls(request: web.Request, job: Job) -> dict[int, str]:
    """Where clients fetch each output when not through the balancer: presigned URLs
    (`presign_s`) or the public base URL; empty when neither is configured."""
    cfg = request.app[CONFIG].blobs
    results = request.app[RESULTS]
    if job.status is not JobStatus.SUCCEEDED:
        return {}
    urls: dict[int, str] = {}
    for output in job.outputs:
        if output.key is None:
            continue
        if cfg.presign_s:
            url = await results.blobs.presign(
                output.key, filename=output.filename, expires_s=cfg.presign_s
            )
            if url is not None:
                urls[output.index] = url
        elif cfg.public_base_url:
            urls[output.index] = f"{cfg.public_base_url.rstrip('/')}/{cfg.prefix}{output.key}"
    return urls


@routes.get("/api/v1/jobs/{job_id}/outputs/{index}")
async def get_output(request: web.Request) -> web.StreamResponse:
    job, output = await _output_of(request)
    return await send_output(request, job, output)


async def send_output(request: web.Request, job: Job, output: OutputRef) -> web.StreamResponse:
    """Stream one stored output (one Range honoured); NotFound once it has expired."""
    blobs = request.app[RESULTS].blobs
    gone = NotFound(f"output {output.index} of job {job.id} has expired from the store")
    # A stored output never changes and the job records its size, so a GET asks the store
    # for bytes only (a round trip fewer): an expired blob shows as no bytes where bytes
    # are due. HEAD, and an empty output, ask whether the blob is still there.
    recorded = output.size if request.method != "HEAD" and output.size > 0 else None
    size = recorded if recorded is not None else await blobs.size(output.key or "")
    if size is None or output.key is None:
        raise gone
    headers = {
        "Content-Type": output.content_type,
        "Content-Disposition": content_disposition(output.filename),
        "Accept-Ranges": "bytes",
    }
    if output.sha256:
        headers["ETag"] = f'"{output.sha256}"'
    try:
        wanted = _wanted_range(request, headers.get("ETag"), size)
    except RangeNotSatisfiable as exc:
        return _unsatisfiable(exc, size)
    status = 200 if wanted is None else 206
    if wanted is not None:
        headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
    headers["Content-Length"] = str(size if wanted is None else wanted.length)
    response = web.StreamResponse(status=status, headers=headers)
    if request.method == "HEAD":
        await response.prepare(request)
        await response.write_eof()
        return response
    # aclosing: a client that goes away mid-download releases the store's stream now.
    async with contextlib.aclosing(blobs.read(output.key, wanted)) as chunks:
        first = await anext(chunks, None)
        if first is None and recorded is not None:
            raise gone
        await response.prepare(request)
        if first is not None:
            await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


def _wanted_range(request: web.Request, etag: str | None, size: int) -> ByteRange | None:
    # If-Range with another validator: the client's copy is stale, send it all.
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range != etag:
        return None
    return parse_range(request.headers.get("Range"), size)


def _unsatisfiable(exc: RangeNotSatisfiable, size: int) -> web.Response:
    request_id = structlog.contextvars.get_contextvars().get("request_id", "")
    response = problem_response(exc.problem(), str(request_id))
    response.headers["Content-Range"] = f"bytes */{size}"
    response.headers.setdefault(REQUEST_ID_HEADER, str(request_id))
    return response


async def _output_of(request: web.Request) -> tuple[Job, OutputRef]:
    job = await job_or_404(request)
    raw_index = request.match_info["index"]
    index = ascii_int(raw_index, "output index", 0, MAX_OUTPUT_INDEX)
    output = next((o for o in job.outputs if o.index == index), None)
    if job.status is not JobStatus.SUCCEEDED or output is None:
        raise NotFound(f"job {job.id} has no output {index}", job_id=job.id)
    return job, output
