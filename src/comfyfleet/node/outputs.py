"""Moving a finished prompt's files from ComfyUI into the result store, one stream each:
from ComfyUI's /view straight into the blob store (multipart in S3), never whole in memory.
The job completes only after every output is stored (see runner.py)."""

from __future__ import annotations

import mimetypes

from comfyfleet.comfy import ComfyClient, ImageRef, NodeOutput
from comfyfleet.comfy.errors import ComfyBadRequest
from comfyfleet.models.file_inputs import file_name_problem
from comfyfleet.models.job import Job, OutputRef
from comfyfleet.store.results import ResultStore


def ordered_images(outputs: dict[str, NodeOutput]) -> list[tuple[str, ImageRef]]:
    """Every image of a prompt, ordered by node id (numerically where ids are numbers) and
    then batch position, so output indexes are stable across attempts."""

    def order(node_id: str) -> tuple[int, int | str]:
        return (0, int(node_id)) if node_id.isdigit() else (1, node_id)

    return [
        (node_id, ref) for node_id in sorted(outputs, key=order) for ref in outputs[node_id].images
    ]


def content_type(filename: str) -> str:
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def _check_servable(image: ImageRef) -> None:
    """ComfyBadRequest (permanent) for an output whose name no /view can serve: one with
    control characters (a CR/LF in a SaveImage prefix) makes ComfyUI's /view fail with a
    500, which would otherwise read as a retryable fault of the node."""
    for part in (image.filename, image.subfolder):
        problem = file_name_problem(part, file_input=True)
        if problem is not None:
            raise ComfyBadRequest(f"output {image.filename!r} {problem}", http_status=400)


async def collect_outputs(
    comfy: ComfyClient, results: ResultStore, job: Job, outputs: dict[str, NodeOutput]
) -> list[OutputRef]:
    """Stream each image from ComfyUI into the result store (bounded by its cap:
    OutputTooLarge beyond). Returns what the job records of each: key, size, type, sha256."""
    refs: list[OutputRef] = []
    for index, (node_id, image) in enumerate(ordered_images(outputs)):
        _check_servable(image)
        kind = content_type(image.filename)
        stored = await results.put(
            job, index, image.filename, comfy.iter_view(image), content_type=kind
        )
        refs.append(
            OutputRef(
                index=index,
                filename=image.filename,
                content_type=kind,
                size=stored.size,
                node_id=node_id,
                kind=image.type,
                sha256=stored.sha256,
                key=stored.key,
            )
        )
    return refs
