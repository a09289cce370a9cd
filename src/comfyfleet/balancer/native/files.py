"""ComfyUI's file routes on the fleet: GET /view serves a prompt's output from the result
store (any replica), POST /upload/image stores an upload as a fleet input
(store/inputs.py) and /upload/mask the image it masks with the mask as its alpha
(masks.py); a LoadImage naming either gets it on whichever node runs the prompt.

`type=input` serves an upload by its name. An output's `subfolder` is its job's id
(shapes.py), so `/view?filename=F&subfolder=<id>` names exactly one job's file; another
principal's job is answered like a missing file.
Uploads keep the fleet's rules: the bytes must be an image (sniffed), and the stored name
is derived from the content (`cfin_<sha256 prefix>.<ext>`), never the client's. The name
and subfolder the client sent are remembered as its own name for the upload
(store/input_names.py), which `original_ref`, `/view` and a prompt's LoadImage may use,
as the editor's mask editor does.
"""

from __future__ import annotations

from aiohttp import web

from comfyfleet.balancer.appkeys import RESULTS
from comfyfleet.balancer.inputs_api import INPUT_NAMES, INPUTS, Upload, read_upload_form
from comfyfleet.balancer.native.access import own_job
from comfyfleet.balancer.native.masks import FileRef, merge_mask, original_ref
from comfyfleet.balancer.native.shapes import find_output
from comfyfleet.balancer.outputs_api import send_output
from comfyfleet.blobs import read_all
from comfyfleet.errors import NotFound
from comfyfleet.models.job import JobStatus
from comfyfleet.store.input_names import client_path
from comfyfleet.store.inputs import StoredInput, input_id_of
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
    upload = await read_upload_form(request)
    return await _store(request, upload, upload.data)


async def upload_mask(request: web.Request) -> web.Response:
    """The painted mask merged into the image `original_ref` names (masks.py): an upload
    (by the fleet's name or the client's) or an output of one of the caller's prompts. The
    result is a new upload, answered like /upload/image."""
    upload = await read_upload_form(request)
    ref = original_ref(upload.fields.get("original_ref"))
    original = await _image_of(request, ref)
    if original is None:
        raise NotFound(f"no image {ref.path!r} ({ref.type}) to apply the mask to",
                       field="original_ref")  # fmt: skip
    return await _store(request, upload, merge_mask(original, upload.data))


async def _store(request: web.Request, upload: Upload, data: bytes) -> web.Response:
    """Store `data` as the caller's upload, under the client's name too."""
    principal = principal_of(request).label
    path = client_path(upload.fields.get("subfolder", ""), upload.filename)
    stored: StoredInput = await request.app[INPUTS].put(data, caller_of(request), principal)
    if path is not None and path != stored.name:
        await request.app[INPUT_NAMES].remember(principal, path, stored.name)
    return web.json_response({"name": stored.name, "subfolder": "", "type": "input"})


async def _image_of(request: web.Request, ref: FileRef) -> bytes | None:
    """The bytes of the caller's image `ref` names, or None."""
    if ref.type == "input":
        found = await _caller_input(request, ref.path)
        return found[0] if found is not None else None
    job = await own_job(request, ref.subfolder)
    index = find_output(job, ref.filename, ref.type) if job is not None else None
    if job is None or job.status is not JobStatus.SUCCEEDED or index is None:
        return None
    output = next(o for o in job.outputs if o.index == index)
    return await read_all(request.app[RESULTS].blobs, output.key) if output.key else None


async def _caller_input(request: web.Request, path: str) -> tuple[bytes, str] | None:
    """An upload of the caller's (any for the admin) by the fleet's name or by the name
    the caller gave it, with its content type; None when there is none."""
    principal = principal_of(request)
    input_id = input_id_of(path)
    if input_id is None:
        named = await request.app[INPUT_NAMES].resolve(principal.label, [path])
        input_id = input_id_of(named.get(path, ""))
    if input_id is None:
        return None
    return await request.app[INPUTS].get(input_id, principal.only_owner)


async def _view_input(request: web.Request, filename: str) -> web.Response:
    """An upload, by the name /upload/image answered or the one the client sent (with its
    subfolder): the caller's own (any for the admin), as for jobs that name it."""
    subfolder = request.query.get("subfolder", "").strip("/")
    found = await _caller_input(request, f"{subfolder}/{filename}" if subfolder else filename)
    if found is None:
        return web.Response(status=404)
    data, content_type = found
    return web.Response(body=data, content_type=content_type,
                        headers={"Content-Disposition": f'filename="{filename}"'})  # fmt: skip
