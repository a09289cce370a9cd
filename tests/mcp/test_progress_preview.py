"""The pure parts of `comfyfleet mcp`: job events as progress, image previews."""

from __future__ import annotations

import io
import random

from PIL import Image

from comfyfleet.mcp.preview import make_preview
from comfyfleet.mcp.progress import ProgressMeter


def test_progress_always_grows_across_queue_start_and_samplers() -> None:
    meter = ProgressMeter()
    events = [
        ("position", {"queue_position": 2}),
        ("position", {"queue_position": 2}),  # no news
        ("position", {"queue_position": 0}),
        ("state", {"status": "running", "node_id": "gpu-1"}),
        ("progress", {"value": 1, "max": 3}),
        ("progress", {"value": 1, "max": 3}),  # a repeat
        ("progress", {"value": 3, "max": 3}),
        ("progress", {"value": 1, "max": 2}),  # a second sampler starts over
        ("progress", {"value": 2, "max": 2}),
        ("position", {"queue_position": 0}),  # late, after the start: ignored
    ]
    out = [p for p in (meter.feed(k, d) for k, d in events) if p is not None]
    assert [p.message for p in out] == [
        "queued: position 3", "queued: position 1", "running on gpu-1",
        "step 1 of 3", "step 3 of 3", "step 1 of 2", "step 2 of 2",
    ]  # fmt: skip
    assert [p.progress for p in out] == [0, 2, 3, 4, 6, 7, 8]
    assert [p.total for p in out] == [None, None, None, 6, 6, 8, 8]


def test_previews_fit_the_bound_and_keep_the_aspect() -> None:
    source = io.BytesIO()
    Image.new("RGB", (1000, 250), (1, 2, 3)).save(source, format="PNG")
    preview = make_preview(source.getvalue(), max_px=100, max_bytes=1 << 20)
    assert preview is not None
    assert (preview.mime_type, preview.width, preview.height) == ("image/png", 100, 25)
    assert Image.open(io.BytesIO(preview.data)).getpixel((50, 12)) == (1, 2, 3)
    small = io.BytesIO()
    Image.new("RGBA", (8, 8), (9, 9, 9, 128)).save(small, format="PNG")
    kept = make_preview(small.getvalue(), max_px=100)
    assert kept is not None
    assert (kept.width, kept.height) == (8, 8)  # never upscaled; alpha kept
    assert Image.open(io.BytesIO(kept.data)).mode == "RGBA"
    assert make_preview(b"not an image") is None


def test_a_preview_too_big_as_png_becomes_jpeg() -> None:
    noisy = Image.frombytes("RGB", (256, 256), random.Random(7).randbytes(256 * 256 * 3))
    source = io.BytesIO()
    noisy.save(source, format="PNG")
    preview = make_preview(source.getvalue(), max_px=256, max_bytes=4096)
    assert preview is not None
    assert preview.mime_type == "image/jpeg"
