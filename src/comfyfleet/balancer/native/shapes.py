"""Fleet jobs in ComfyUI's shapes (pure): queue items, history entries, output lists.

A native prompt is a fleet job whose `metadata` holds what ComfyUI would have kept beside
it: `comfyui_client_id`, `comfyui_number` and `comfyui_outputs` (the output nodes that
validation kept, comma separated). Jobs submitted through /api/v1 have none of these and
show with their `seq` as number and every node as a candidate output.

Outputs are served under a subfolder unique to the job (its id), so /view finds exactly
that job's file, whichever node made it and whatever it called it.
"""

from __future__ import annotations

from typing import Any

from comfyfleet.balancer.native.frames import fleet_output, outputs_ui
from comfyfleet.models.job import Job, JobStatus

Json = dict[str, Any]
CLIENT_ID = "comfyui_client_id"
NUMBER = "comfyui_number"
OUTPUTS = "comfyui_outputs"
# ComfyUI's SENSITIVE_EXTRA_DATA_KEYS: passed on to ComfyUI, never shown back.
SENSITIVE_EXTRA_DATA = frozenset({"auth_token_comfy_org", "api_key_comfy_org"})

_STATUS_STR = {JobStatus.SUCCEEDED: "success", JobStatus.FAILED: "error",
               JobStatus.CANCELLED: "error"}  # fmt: skip
# Log events that ComfyUI keeps in a history entry's `messages`.
_MESSAGES = {"started": "execution_start", "cached": "execution_cached"}


def number_of(job: Job) -> float | int:
    raw = job.metadata.get(NUMBER)
    if raw is None:
        return job.seq
    value = float(raw)
    return int(value) if value.is_integer() and "." not in raw else value


def extra_data_of(job: Job) -> Json:
    """What the client sent as extra_data, and its client_id, as ComfyUI shows them in
    /queue and /history: without the comfy.org credentials (ComfyUI strips those too)."""
    shown = {k: v for k, v in (job.extra_data or {}).items() if k not in SENSITIVE_EXTRA_DATA}
    client_id = job.metadata.get(CLIENT_ID)
    if client_id:
        shown["client_id"] = client_id
    return shown


def outputs_to_execute(job: Job) -> list[str]:
    raw = job.metadata.get(OUTPUTS)
    return raw.split(",") if raw else list(job.graph)


def queue_item(job: Job) -> list[Any]:
    """`[number, prompt_id, prompt, extra_data, outputs_to_execute]`."""
    return [number_of(job), job.id, job.graph, extra_data_of(job), outputs_to_execute(job)]


def history_outputs(job: Job) -> Json:
    """`{node_id: {"images": [{filename, subfolder, type}]}}` from the stored outputs."""
    files = [(ref.node_id or "0", ref.filename, ref.kind) for ref in job.outputs]
    return {node: fleet_output(ui, job.id) for node, ui in outputs_ui(files).items()}


def history_entry(job: Job, events: list[Json]) -> Json:
    """ComfyUI's `/history/{id}` value for an ended job; `events` is its log (flattened)."""
    messages: list[list[Any]] = []
    for event in events:
        kind = _MESSAGES.get(str(event.get("type")))
        at = event.get("at_ms", 0)
        if kind == "execution_start":
            messages.append([kind, {"prompt_id": job.id, "timestamp": at}])
        elif kind == "execution_cached":
            messages.append([kind, {"nodes": event.get("nodes", []), "prompt_id": job.id,
                                    "timestamp": at}])  # fmt: skip
    end = {JobStatus.SUCCEEDED: "execution_success", JobStatus.FAILED: "execution_error",
           JobStatus.CANCELLED: "execution_interrupted"}[job.status]  # fmt: skip
    messages.append([end, {"prompt_id": job.id, "timestamp": job.finished_ms or 0}])
    outputs = history_outputs(job)
    return {
        "prompt": queue_item(job),
        "outputs": outputs,
        "status": {
            "status_str": _STATUS_STR[job.status],
            "completed": job.status is JobStatus.SUCCEEDED,
            "messages": messages,
        },
        "meta": {node: _meta(node) for node in outputs},
    }


def _meta(node: str) -> Json:
    return {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}


def find_output(job: Job, filename: str, kind: str) -> int | None:
    """The index of the job's output named `filename` of folder type `kind`, or None."""
    for ref in job.outputs:
        if ref.filename == filename and ref.kind == kind:
            return ref.index
    return None
