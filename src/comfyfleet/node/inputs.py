"""Putting a job's uploaded inputs into this node's ComfyUI before its prompt is submitted.

A graph names an upload as `cfin_<id>.<ext>` (see `store/inputs.py`). Each one is fetched
from Redis, uploaded to ComfyUI's input folder under that name, and every graph input
holding the name is rewritten to the name ComfyUI answered: ComfyUI keeps the name for the
same bytes but renames (`x (1).png`) when a different file already has it.
"""

from __future__ import annotations

import copy
from typing import Any

from comfyfleet.comfy import ComfyClient
from comfyfleet.errors import ComfyfleetError
from comfyfleet.models.job import JobError, JobErrorCode
from comfyfleet.store.inputs import InputStore, input_names


class InputMissing(ComfyfleetError):
    """An upload the job names has expired (or never existed): no retry can help."""

    status = 422
    code = "input-missing"
    title = "Input image missing"


async def stage_inputs(
    graph: dict[str, Any], inputs: InputStore, comfy: ComfyClient
) -> dict[str, Any]:
    """The graph to submit: `graph` itself when it names no upload, else a copy with each
    upload's name replaced by ComfyUI's. InputMissing, or the store's / client's errors."""
    wanted = input_names(graph)
    if not wanted:
        return graph
    staged = copy.deepcopy(graph)
    for input_id, places in wanted.items():
        found = await inputs.get(input_id)
        if found is None:
            raise InputMissing(
                f"input {input_id} has expired or was never uploaded", input_id=input_id
            )
        data, _content_type = found
        node_id, key = places[0]
        ref = await comfy.upload_image(data, graph[node_id]["inputs"][key])
        name = f"{ref.subfolder}/{ref.filename}" if ref.subfolder else ref.filename
        for node_id, key in places:
            staged[node_id]["inputs"][key] = name
    return staged


def input_error(node_id: str, exc: ComfyfleetError) -> JobError:
    """How a failed staging ends the attempt: a missing input fails the job for good; Redis
    or ComfyUI trouble is retryable (on this node or another)."""
    if isinstance(exc, InputMissing):
        return JobError(code=JobErrorCode.INPUT_MISSING, message=exc.detail, node_id=node_id)
    return JobError(
        code=JobErrorCode.INPUT_STAGING, message=exc.detail, retryable=True, node_id=node_id
    )
