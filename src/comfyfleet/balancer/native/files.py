"""ComfyUI's file routes on the fleet: GET /view serves a prompt's output from the result
store (any replica), POST /upload/image stores an upload as a fleet input
(store/inputs.py) and /upload/mask the image it masks with the mask as its alpha
(masks.py); a LoadImage naming either gets it on whichever node runs the prompt.

`type=input` serves an upload by its name. An output's `subfolder` is its job's id
(shapes.py), so `/view?filename=F&subfolder=<id>` names exactly one job's file; another
principal's job is answered like a missing file.
Uploads keep the fleet's rules: the bytes must be an image (sniffed), and the stored name
is derived from the content (`cfin_<sha256 prefix>.<ext>`), never the client's.
"""

from __future__ import annotations

from aiohttp import web

from comfyfleet.balancer.inputs_api import INPUTS, read_upload, read_upload_form
from comfyfleet.balancer.native.access import own_job
from comfyfleet.balancer.native.masks import merge_mask, original_name
from comfyfleet.balancer.native.shapes import find_output
from comfyfleet.balancer.outputs_api import send_output
from comfyfleet.errors import NotFound
from comfyfleet.models.job import JobStatus
from comfyfleet.store.inputs import input_id_of
from comfyfleet.web.auth import caller_of, principal_of

FOLDER_TYPES = frozenset({"output", "temp", "input"})


async def view(request: web.Request) -> web.StreamResponse:
    filename = request.query.get("filename", "")
    kind = request.query.get("type", "output")
    if not filename or kind not in FOLDER_TYPES or ".." in filename:
        return web.Response(status=400)
    if kind == "input":
        return await _view_input(request, filename)
    job = await own_job(request, request.query.get("subfolder", ""))
    index = find_output(job, filename, kind) if job is not None else None
    if job is None or job.status is not JobStatus.SUCCEEDED or index is None:
        return web.Response(status=404)
    output = next(o for o in job.outputs if o.index == index)
    return await send_output(request, job, output)


async def upload_image(request: web.Request) -> web.Response:
    data = await read_upload(request)
    principal = principal_of(request).label
    stored = await request.app[INPUTS].put(data, caller_of(request), principal)
    return web.json_response({"name": stored.name, "subfolder": "", "type": "input"})


async def upload_mask(request: web.Request) -> web.Response:
    """The painted mask merged into the upload `original_ref` names (masks.py); the
    result is a new upload, answered like /upload/image."""
    mask, fields = await read_upload_form(request)
    name = original_name(fields.get("original_ref"))
    principal = principal_of(request)
    owner = principal.only_owner
    input_id = input_id_of(name)
    found = await request.app[INPUTS].get(input_id, owner) if input_id else None
    if found is None:
        raise NotFound(f"no uploaded image {name!r} to apply the mask to", field="original_ref")
    merged = merge_mask(found[0], mask)
    stored = await request.app[INPUTS].put(merged, caller_of(request), principal.label)
    return web.json_response({"name": stored.name, "subfolder": "", "type": "input"})


async def _view_input(request: web.Request, filename: str) -> web.Response:
    """An upload, by the name /upload/image answered: the caller's own (any for the
    admin), as for jobs that name it."""
    input_id = input_id_of(filename)
    principal = principal_of(request)
    owner = principal.only_owner
    found = await request.app[INPUTS].get(input_id, owner) if input_id else None
    if found is None:
        return web.Response(status=404)
    data, content_type = found
    return web.Response(body=data, content_type=content_type,
                        headers={"Content-Disposition": f'filename="{filename}"'})  # fmt: skip
