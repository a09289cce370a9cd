"""Downscaled previews of output images, small enough to hand an LLM as image content.

Pillow (in the `mcp` extra) decodes whatever a ComfyUI node saved (PNG, JPEG, WebP, GIF),
resamples with a proper filter and re-encodes, in C: a pure-Python PNG codec would spend
seconds of CPU on one 1024x1024 output and could not read JPEG or WebP at all. Callers run
`make_preview` in a thread, so a big image never blocks the event loop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Longest side of a preview (px) and most encoded bytes. 512 px shows an agent what it made
# at a fraction of the tokens of a full image; the full output stays a resource link away.
DEFAULT_MAX_PX = 512
DEFAULT_MAX_BYTES = 512 * 1024
JPEG_QUALITY = 85
# Pillow refuses images beyond this many pixels (a decompression bomb guard), as the
# balancer's input sniffer does (64 Mpx).
Image.MAX_IMAGE_PIXELS = 64_000_000
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


@dataclass(frozen=True)
class Preview:
    mime_type: str
    data: bytes
    width: int
    height: int


def make_preview(
    data: bytes, max_px: int = DEFAULT_MAX_PX, max_bytes: int = DEFAULT_MAX_BYTES
) -> Preview | None:
    """A PNG no larger than `max_px` a side (JPEG if the PNG would pass `max_bytes`), or
    None when `data` is not an image Pillow can read."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGBA" if _has_alpha(opened) else "RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        return None
    if max(image.size) > max_px:
        image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    if out.tell() <= max_bytes:
        return Preview("image/png", out.getvalue(), *image.size)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
    return Preview("image/jpeg", out.getvalue(), *image.size)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
