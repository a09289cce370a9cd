"""Moving a finished prompt's files from ComfyUI into the result store."""

from __future__ import annotations

import hashlib
import mimetypes

from comfyfleet.comfy import ComfyClient, ImageRef, NodeOutput
from comfyfleet.models.job import OutputRef
from comfyfleet.store.results import OutputTooLarge, ResultStore


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


async def collect_outputs(
    comfy: ComfyClient, results: ResultStore, job_id: str, outputs: dict[str, NodeOutput],
    *, max_bytes: int,
) -> list[OutputRef]:  # fmt: skip
    """Stream each image from ComfyUI (bounded by `max_bytes`) into the result store."""
    refs: list[OutputRef] = []
    for index, (node_id, image) in enumerate(ordered_images(outputs)):
        chunks: list[bytes] = []
        size = 0
        digest = hashlib.sha256()
        async for chunk in comfy.iter_view(image):
            size += len(chunk)
            if size > max_bytes:
                raise OutputTooLarge(
                    f"output {image.filename} exceeds the result store's cap of {max_bytes} bytes"
                )
            digest.update(chunk)
            chunks.append(chunk)
        await results.put(job_id, index, b"".join(chunks))
        refs.append(
            OutputRef(
                index=index,
                filename=image.filename,
                content_type=content_type(image.filename),
                size=size,
                node_id=node_id,
                kind=image.type,
                sha256=digest.hexdigest(),
            )
        )
    return refs
