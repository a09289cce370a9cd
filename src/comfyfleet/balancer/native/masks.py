"""POST /upload/mask as ComfyUI does it: the editor's mask editor uploads the mask it
painted and names the image it masks (`original_ref`); the stored result is that image
with the mask's alpha channel as its own, which a LoadImage then reads as image + mask.

Pillow does the pixels; it comes with the `editor` extra (the mask editor is the editor's)
and with `mcp`. Without it the route says how to get it instead of storing the mask alone,
which would silently lose the image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import orjson

from comfyfleet.errors import BadRequest, ComfyfleetError


class MasksUnavailable(ComfyfleetError):
    status = 501
    code = "masks-unavailable"
    title = "Mask merging is not installed"


@dataclass(frozen=True)
class FileRef:
    """A ComfyUI file reference: `{"filename", "subfolder", "type"}`."""

    filename: str
    subfolder: str
    type: str

    @property
    def path(self) -> str:
        return f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename


def original_ref(raw: str | None) -> FileRef:
    """The image `original_ref` names (ComfyUI: `{"filename", "subfolder", "type"}`): an
    upload (`type` input, by either of its names: files.py) or an output (`type` output or
    temp, its `subfolder` the prompt id)."""
    if raw is None:
        raise BadRequest("original_ref is required: the image the mask belongs to",
                         field="original_ref")  # fmt: skip
    try:
        ref: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("original_ref must be JSON", field="original_ref") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        raise BadRequest("original_ref must be an object with a filename", field="original_ref")
    subfolder, kind = ref.get("subfolder") or "", ref.get("type") or "input"
    if not isinstance(subfolder, str) or kind not in ("input", "output", "temp"):
        raise BadRequest("original_ref's subfolder must be a string and its type input, "
                         "output or temp", field="original_ref")  # fmt: skip
    return FileRef(ref["filename"], subfolder.strip("/"), kind)


def merge_mask(original: bytes, mask: bytes) -> bytes:
    """`original` as RGBA PNG with `mask`'s alpha channel (ComfyUI's upload_mask)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise MasksUnavailable(
            "merging a mask into its image needs Pillow: pip install 'comfyfleet[editor]'"
        ) from None
    try:
        with Image.open(io.BytesIO(original)) as image, Image.open(io.BytesIO(mask)) as painted:
            merged = image.convert("RGBA")
            alpha = painted.convert("RGBA").getchannel("A")
            if alpha.size != merged.size:
                raise BadRequest(
                    f"the mask is {alpha.size[0]}x{alpha.size[1]}, its image "
                    f"{merged.size[0]}x{merged.size[1]}: they must be the same size",
                    field="image",
                )
            merged.putalpha(alpha)
            out = io.BytesIO()
            merged.save(out, format="PNG", compress_level=4)
            return out.getvalue()
    except (UnidentifiedImageError, OSError) as exc:
        raise BadRequest(f"not a readable image: {exc}", field="image") from None
