"""ComfyUI's prompt routes on the fleet: POST/GET /prompt, GET/POST /queue, POST
/interrupt, GET/POST /history, GET /history/{id}. A prompt is a fleet job (prompt_id =
job id); a principal sees and touches only its own (access.py), the admin all.

Shapes follow ComfyUI 0.3.64 (shared/comfyui/PROTOCOL.md): validation refusals are its own
400 bodies; `/queue` and `/history` list the caller's jobs. Where the fleet's rules refuse
something ComfyUI would not check (a path-like file name, a missing upload, a full queue,
wrong credentials), the answer is the fleet's problem+json with its 4xx.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from aiohttp import web

from comfyfleet.balancer.admission import queue_limit
from comfyfleet.balancer.appkeys import CONFIG, JOBS, NODES, WORKFLOWS
from comfyfleet.balancer.inputs_api import INPUT_NAMES, hold_inputs
from comfyfleet.balancer.native import shapes
from comfyfleet.balancer.native.access import own_job
from comfyfleet.balancer.native.catalog import InfoCatalogue, input_file_exists
from comfyfleet.balancer.native.context import FEED, INVENTORY, VEIL
from comfyfleet.balancer.native.queues import remaining, unfinished
from comfyfleet.balancer.schemas import JOB_ID_RE
from comfyfleet.comfy.validation import validate_prompt
from comfyfleet.errors import BadRequest
from comfyfleet.models.file_inputs import check_file_names
from comfyfleet.models.graph import check_graph
from comfyfleet.models.job import Job, JobSpec, JobStatus
from comfyfleet.store.input_names import InputNames, looked_up
from comfyfleet.store.prompt_feed import CLIENT_ID_RE
from comfyfleet.web.auth import principal_of
from comfyfleet.web.numbers import ascii_int
from comfyfleet.web.responses import read_json

Json = dict[str, Any]
# Most ended prompts GET /history lists (ComfyUI keeps 10000 in memory; the fleet reads
# each from Redis).
HISTORY_MAX = 200
HISTORY_EVENTS = 500
# Most jobs of the fleet one GET /history looks through for the caller's (pages of 200).
HISTORY_SCAN_PAGES = 20


def refusal(
    kind: str, message: str, details: str | None = None, node_errors: Json | None = None
) -> web.Response:
    """ComfyUI's 400 body for a prompt it will not queue (`details`: the message when not
    given, as ComfyUI's own checks of the body have it; validation gives its own)."""
    details = message if details is None else details
    error = {"type": kind, "message": message, "details": details, "extra_info": {}}
    return web.json_response({"error": error, "node_errors": node_errors or {}}, status=400)


async def _body(request: web.Request) -> Json:
    body = await read_json(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


async def post_prompt(request: web.Request) -> web.Response:
    body = await _body(request)
    if "prompt" not in body:
        return refusal("no_prompt", "No prompt provided")
    prompt = body["prompt"]
    if not isinstance(prompt, dict) or not prompt:
        return refusal("invalid_prompt", "The prompt must be a non-empty object of nodes")
    client_id = body.get("client_id")
    if client_id is not None and not (isinstance(client_id, str) and CLIENT_ID_RE.match(client_id)):
        raise BadRequest("client_id must be 1 to 128 letters, digits or '_.:-'", field="client_id")
    prompt_id = body.get("prompt_id")
    if prompt_id is not None and not (isinstance(prompt_id, str) and JOB_ID_RE.match(prompt_id)):
        raise BadRequest("prompt_id must be 1 to 64 letters, digits, '_' or '-'", field="prompt_id")
    graph = copy.deepcopy(prompt)
    owner = principal_of(request).label
    await name_uploads(request.app[INPUT_NAMES], owner, graph)
    nodes = await request.app[NODES].all()
    object_info, complete = await request.app[INVENTORY].union(nodes)
    outputs: list[str] = []
    node_errors: Json = {}
    # Without every ready node's inventory (none ready yet, or one did not answer) a class
    # missing from the union proves nothing: the fleet's own checks only.
    if object_info and complete:
        catalogue = InfoCatalogue(object_info)
        verdict = validate_prompt(graph, catalogue, input_file_exists(object_info))
        if not verdict.ok:
            error = verdict.error or {}
            return refusal(
                str(error.get("type", "invalid_prompt")), str(error.get("message", "")),
                str(error.get("details", "")), verdict.node_errors,
            )  # fmt: skip
        outputs, node_errors = verdict.outputs, verdict.node_errors
    graph = check_graph(graph)
    check_file_names(graph)
    metadata = {shapes.OUTPUTS: ",".join(outputs)} if outputs else {}
    if client_id:
        metadata[shapes.CLIENT_ID] = client_id
    number = body.get("number")
    if isinstance(number, int | float) and not isinstance(number, bool):
        metadata[shapes.NUMBER] = str(float(number))
    front = body.get("front") is True
    extra_data = body.get("extra_data")
    if extra_data is not None and not isinstance(extra_data, dict):
        raise BadRequest("extra_data must be a JSON object", field="extra_data")
    spec = JobSpec(graph=graph, owner=owner, metadata=metadata, priority=1 if front else 0,
                   extra_data=extra_data or None)  # fmt: skip
    await hold_inputs(request, spec.graph)
    bound = queue_limit(request.app[CONFIG].queue_limits, spec.pool)
    # ComfyUI's ids are uuid4 strings; a client may choose its own.
    job_id = prompt_id or str(uuid.uuid4())
    job, _created = await request.app[JOBS].enqueue(spec, job_id=job_id, queue_limit=bound)
    if client_id:
        await request.app[FEED].announce(owner, client_id, job.id)
    reply = {"prompt_id": job.id, "number": shapes.number_of(job), "node_errors": node_errors}
    return web.json_response(reply)


async def name_uploads(names: InputNames, owner: str, graph: Json) -> None:
    """Put the fleet's name in place of each image the prompt names as its client sent it
    to /upload/image (`clipspace/x.png [input]`, `photo.png`: store/input_names.py), so
    the job holds and stages that upload. Anything else stays as it is."""
    places: dict[str, list[tuple[Json, str]]] = {}
    for node in graph.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue  # validation names what is wrong with the node
        for key, value in inputs.items():
            if isinstance(value, str) and (path := looked_up(value)) is not None:
                places.setdefault(path, []).append((inputs, key))
    for path, name in (await names.resolve(owner, list(places))).items():
        for inputs, key in places[path]:
            inputs[key] = name


async def get_prompt(request: web.Request) -> web.Response:
    count = await remaining(request.app[FEED], principal_of(request))
    return web.json_response({"exec_info": {"queue_remaining": count}})


async def get_queue(request: web.Request) -> web.Response:
    running, queued = await unfinished(request.app[JOBS], principal_of(request))
    return web.json_response({
        "queue_running": [shapes.queue_item(job) for job in running],
        "queue_pending": [shapes.queue_item(job) for job in queued],
    })  # fmt: skip


async def _ids(body: Json, key: str) -> list[str]:
    ids = body.get(key, [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest(f"{key!r} must be a list of prompt ids", field=key)
    return ids


async def post_queue(request: web.Request) -> web.Response:
    """`{"delete": [ids]}` or `{"clear": true}`: pending prompts only (a running one is
    interrupted with /interrupt), the caller's only; unknown ids are ignored, as ComfyUI
    does."""
    body = await _body(request)
    store = request.app[JOBS]
    if body.get("clear") is True:
        _running, queued = await unfinished(store, principal_of(request))
        targets = [job.id for job in queued]
    else:
        targets = await _ids(body, "delete")
    for prompt_id in targets:
        job = await own_job(request, prompt_id)
        if job is not None and job.status is JobStatus.QUEUED:
            await store.cancel(job.id)
    return web.Response()


async def post_interrupt(request: web.Request) -> web.Response:
    """`{"prompt_id": X}` stops X if it is the caller's and running; without it, every
    running prompt of the caller (ComfyUI's global interrupt, scoped to the principal)."""
    body = await _body(request)
    store = request.app[JOBS]
    prompt_id = body.get("prompt_id")
    if prompt_id is not None:
        if not isinstance(prompt_id, str):
            raise BadRequest("prompt_id must be a string", field="prompt_id")
        job = await own_job(request, prompt_id)
        targets = [job] if job is not None else []
    else:
        targets, _queued = await unfinished(store, principal_of(request))
    for job in targets:
        if job.status is JobStatus.RUNNING:
            await store.cancel(job.id)
    return web.Response()


async def _entry(request: web.Request, job: Job) -> Json:
    events = await request.app[JOBS].events(job.id, count=HISTORY_EVENTS)
    flat = [{"at_ms": int(entry_id.split("-")[0]), **event} for entry_id, event in events]
    if not job.graph:  # a finished job of a published workflow: rendered again
        job = job.model_copy(update={"graph": await request.app[WORKFLOWS].job_graph(job)})
    return shapes.history_entry(job, flat)


async def get_history(request: web.Request) -> web.Response:
    max_items = request.query.get("max_items")
    wanted = HISTORY_MAX if max_items is None else ascii_int(max_items, "max_items", 1, HISTORY_MAX)
    offset_raw = request.query.get("offset")
    offset = 0 if offset_raw is None else ascii_int(offset_raw, "offset", 0, 10_000)
    principal = principal_of(request)
    # The caller's own index (the admin's: every job); a page holds ended and unfinished.
    owner = principal.only_owner
    store, veil, cursor = request.app[JOBS], request.app[VEIL], None
    ended: list[Job] = []
    seen = 0
    for _ in range(HISTORY_SCAN_PAGES):
        page, cursor = await store.list_jobs(owner=owner, cursor=cursor, limit=200)
        page = await veil.visible(principal.label, [job for job in page if job.is_terminal])
        for job in page:
            seen += 1
            if seen > offset and len(ended) < wanted:
                ended.append(job)
        if cursor is None or len(ended) >= wanted:
            break
    # ComfyUI lists oldest first.
    history = {job.id: await _entry(request, job) for job in reversed(ended)}
    return web.json_response(history)


async def get_history_item(request: web.Request) -> web.Response:
    job = await own_job(request, request.match_info["prompt_id"])
    if job is None or not job.is_terminal:
        return web.json_response({})
    if not await request.app[VEIL].visible(principal_of(request).label, [job]):
        return web.json_response({})
    return web.json_response({job.id: await _entry(request, job)})


async def post_history(request: web.Request) -> web.Response:
    """`{"delete": [ids]}` or `{"clear": true}`, as on ComfyUI: the prompts leave the
    caller's /history. The jobs themselves stay for the fleet's retention, in
    /api/v1/jobs with their outputs (store/comfy_history.py says why); ids that are not
    the caller's are ignored, as ComfyUI ignores unknown ones."""
    body = await _body(request)
    principal = principal_of(request)
    veil = request.app[VEIL]
    if body.get("clear") is True:
        await veil.clear(principal.label, await request.app[JOBS].now_ms())
    targets = await _ids(body, "delete") if "delete" in body else []
    own = [job.id for job in [await own_job(request, i) for i in targets] if job is not None]
    await veil.hide(principal.label, own)
    return web.Response()
