"""`POST /api/v1/inputs`: upload an input image for workflows that take one.

The body is `multipart/form-data` with the file in a part named `image` (ComfyUI's own
name) or `file`, or JSON `{"url": ...}` naming an image the balancer fetches, if the
operator allowlisted where from (`input_urls.py`). Either way the bytes are bounded
separately from JSON bodies (`UPLOAD_BODY_LIMIT`, 413 beyond), their type is sniffed (PNG,
JPEG, WebP; else 415; a broken header or a pixel bomb 422), and no client-given file name is
used: the stored name is derived from the content (`cfin_<sha256 prefix>.<ext>`), so no
path can be smuggled in. Pass the answer's `name` as the workflow's image param; the job
keeps the upload alive until it has run (see store/inputs.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, Field

from comfyfleet.balancer.appkeys import CONFIG, REDIS, RESULTS
from comfyfleet.balancer.input_urls import InputFetcher
from comfyfleet.errors import BadRequest, ComfyfleetError, ValidationFailed
from comfyfleet.store.input_names import InputNames
from comfyfleet.store.inputs import INPUT_ID_PATTERN, INPUT_NAME_PATTERN, InputStore, input_names
from comfyfleet.store.keys import Keys
from comfyfleet.web.auth import caller_of, principal_of
from comfyfleet.web.openapi import Body, Op, Reply
from comfyfleet.web.responses import UPLOAD_BODY_LIMIT, PayloadTooLarge, json_response, read_json

FILE_PARTS = ("image", "file")
CHUNK_BYTES = 64 * 1024
INPUTS = web.AppKey("inputs", InputStore)
INPUT_NAMES = web.AppKey("input_names", InputNames)
FETCHER = web.AppKey("input_fetcher", InputFetcher)
routes = web.RouteTableDef()


class InputView(BaseModel):
    """A stored upload. Put `name` in a workflow's image param."""

    id: str = Field(pattern=INPUT_ID_PATTERN, description="first 32 hex digits of its sha256")
    name: str = Field(pattern=INPUT_NAME_PATTERN, description="the name jobs use for it")
    content_type: str = Field(description="sniffed from the bytes: image/png, image/jpeg, "
                              "image/webp")  # fmt: skip
    size: int = Field(description="bytes")
    width: int = Field(description="pixels")
    height: int = Field(description="pixels")
    sha256: str
    expires_ms: int = Field(description="ms since the epoch; each job naming it extends this")


class InputFromUrl(BaseModel):
    """An image for the balancer to fetch (only from allowlisted places)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(min_length=1, max_length=2048, description="http(s) URL of the image")


async def inputs_ctx(app: web.Application) -> AsyncIterator[None]:
    keys, bounds = Keys(app[CONFIG].redis.namespace), app[CONFIG].inputs
    app[INPUTS] = InputStore(app[REDIS], keys, blobs=app[RESULTS].blobs,
                             caller_quota_bytes=bounds.caller_quota_bytes,
                             total_bytes=bounds.total_bytes)  # fmt: skip
    app[INPUT_NAMES] = InputNames(app[REDIS], keys)
    app[FETCHER] = fetcher = InputFetcher(app[CONFIG].input_urls)
    yield
    await fetcher.close()


async def hold_inputs(request: web.Request, graph: dict[str, Any]) -> None:
    """Keep the uploads a job's graph names until it has run; 422 naming the first one
    that has expired or was never uploaded -- by this caller: another owner's upload is
    answered as never uploaded (the job is not accepted). The admin may name any."""
    places = input_names(graph)
    principal = principal_of(request)
    owner = principal.only_owner
    missing = await request.app[INPUTS].hold(places, owner)
    if missing:
        node_id, key = places[missing[0]][0]
        raise ValidationFailed(
            f"input {missing[0]} (node {node_id} input {key!r}) has expired or was never "
            "uploaded; POST it to /api/v1/inputs again",
            field="params",
            input_id=missing[0],
        )


class UnsupportedMediaType(ComfyfleetError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"


# The `name` and `filename` parameters of a part's Content-Disposition, quoted or not.
_PART_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
_PART_FILENAME = re.compile(r'(?:^|;)\s*filename\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)


def _part_name(part: aiohttp.BodyPartReader) -> str | None:
    """The part's form field name. Read here, not with `part.name`: aiohttp's parser reports
    a malformed header with a warning, which a fuzzer (or -W error) turns into a 500."""
    found = _PART_NAME.search(part.headers.get("Content-Disposition", ""))
    return (found.group(1) if found.group(1) is not None else found.group(2)) if found else None


@dataclass(frozen=True)
class Upload:
    """A multipart upload: its file, the name the client gave the file, and its other
    parts as text (form fields such as /upload/mask's `original_ref`)."""

    data: bytes
    filename: str | None
    fields: dict[str, str]


def _part_filename(part: aiohttp.BodyPartReader) -> str | None:
    """The file name the client gave a part (read like `_part_name`, for the same reason)."""
    found = _PART_FILENAME.search(part.headers.get("Content-Disposition", ""))
    return (found.group(1) if found.group(1) is not None else found.group(2)) if found else None


async def _read_form(request: web.Request, limit: int) -> Upload:
    """The first file part and the other parts; every part counts against `limit` bytes."""
    reader = await request.multipart()
    data: bytes | None = None
    filename: str | None = None
    fields: dict[str, str] = {}
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader):
            raise BadRequest("nested multipart bodies are not accepted")
        chunks = []
        while chunk := await part.read_chunk(CHUNK_BYTES):
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        name = _part_name(part)
        if name in FILE_PARTS and data is None:
            data, filename = b"".join(chunks), _part_filename(part)
        elif name and part.filename is None:
            fields.setdefault(name, b"".join(chunks).decode("utf-8", "replace"))
    if not data:
        raise BadRequest(f"no file: send it as a multipart part named {' or '.join(FILE_PARTS)}")
    return Upload(data, filename, fields)


async def read_upload_form(request: web.Request, limit: int | None = None) -> Upload:
    """A multipart upload (its file a part named `image` or `file`) of at most `limit`
    bytes (None: UPLOAD_BODY_LIMIT); 400 for a malformed body, 413 beyond the limit."""
    limit = UPLOAD_BODY_LIMIT if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {limit}")
    try:
        return await _read_form(request, limit)
    except (
        ValueError, RuntimeError, AssertionError, HttpProcessingError,
        aiohttp.ClientPayloadError,
    ) as exc:  # fmt: skip
        # aiohttp's multipart reader says "malformed" with these (a bad part header
        # raises its HTTP parser's InvalidHeader, a bad `_charset_` part RuntimeError).
        raise BadRequest(f"malformed multipart body: {exc}") from None


async def read_upload(request: web.Request, limit: int | None = None) -> bytes:
    """The file of a multipart upload alone (see read_upload_form)."""
    return (await read_upload_form(request, limit)).data


@routes.post("/api/v1/inputs")
async def upload_input(request: web.Request) -> web.Response:
    limit = UPLOAD_BODY_LIMIT
    if request.content_type == "application/json":
        source = InputFromUrl.model_validate(await read_json(request))
        data = await request.app[FETCHER].fetch(source.url, limit)
    elif request.content_type == "multipart/form-data":
        data = await read_upload(request, limit)
    else:
        raise UnsupportedMediaType(
            'send the image as multipart/form-data, or JSON {"url": ...} to have it fetched'
        )
    stored = await request.app[INPUTS].put(data, caller_of(request), principal_of(request).label)
    view = InputView(
        id=stored.id, name=stored.name, content_type=stored.image.content_type,
        size=stored.size, width=stored.image.width, height=stored.image.height,
        sha256=stored.sha256, expires_ms=stored.expires_ms,
    )  # fmt: skip
    return json_response(view, status=201)


MULTIPART_UPLOAD: dict[str, Any] = {
    "schema": {
        "type": "object",
        "properties": {
            "image": {"type": "string", "format": "binary", "description": "the image file"},
            "file": {"type": "string", "format": "binary", "description": "same as `image`"},
        },
    },
    "encoding": {"image": {"contentType": "image/png, image/jpeg, image/webp"}},
}

OPS = [
    Op("POST", "/api/v1/inputs", "uploadInput", "Upload an input image",
       "A PNG, JPEG or WebP image as `multipart/form-data`, in a part named `image` (or "
       f"`file`), at most {UPLOAD_BODY_LIMIT // (1024 * 1024)} MiB; or JSON `{{\"url\": "
       "...}` naming one for the balancer to fetch, if the operator allowlisted where from "
       "(`--input-url-allow`; else 422). The type is sniffed from the bytes; no client file "
       "name is used. Answers the stored input: pass its `name` as a workflow's image param "
       "(e.g. `invert`'s `image`). Kept an hour unless a job names it; a job keeps it a day. "
       "Example: `curl -F image=@photo.png .../api/v1/inputs`.",
       "jobs",
       {201: Reply("Stored", InputView, example={
           "id": "3b0c9f1e2d4a5b6c7d8e9f0a1b2c3d4e",
           "name": "cfin_3b0c9f1e2d4a5b6c7d8e9f0a1b2c3d4e.png",
           "content_type": "image/png", "size": 48213, "width": 512, "height": 512,
           "sha256": "3b0c9f1e2d4a5b6c7d8e9f0a1b2c3d4e" + "0" * 32,
           "expires_ms": 1_760_003_600_000})},
       body=Body(InputFromUrl, {"url": {"url": "https://images.example.com/cat.png"}},
                 "The image as multipart/form-data, or a URL to fetch it from.",
                 other_media={"multipart/form-data": MULTIPART_UPLOAD}),
       errors=[400, 413, 415, 422, 429, 503]),
]  # fmt: skip
