"""Raw graphs the security tests submit."""

from __future__ import annotations

from typing import Any

import orjson


def solid(prefix: str = "sec", **meta: Any) -> dict[str, Any]:
    """EmptyImage -> SaveImage: runs on a stand-in with no models. `meta` goes into the
    first node's `_meta` (ComfyUI ignores it), to make a body as large as a test needs."""
    return {
        "1": {"class_type": "EmptyImage", "_meta": {"title": "Solid", **meta},
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 255}},
        "2": {"class_type": "SaveImage",
              "inputs": {"filename_prefix": prefix, "images": ["1", 0]}},
    }  # fmt: skip


def sized(total_bytes: int) -> dict[str, Any]:
    """A valid graph whose JSON is about `total_bytes` long: a workflow with embedded notes."""
    return solid(notes="n" * (total_bytes - 400))


def load_and_save(image: str, klass: str = "LoadImage") -> dict[str, Any]:
    return {
        "1": {"class_type": klass, "inputs": {"image": image}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["1", 0]}},
    }


DEEP = "__DEEP__"


def deep(levels: int) -> str:
    """JSON text of a value nested `levels` lists deep (no encoder writes one that deep)."""
    return "[" * levels + "0" + "]" * levels


def with_deep(body: dict[str, Any], levels: int) -> bytes:
    """`body` as JSON, with the string DEEP in it replaced by a value `levels` deep."""
    return orjson.dumps(body).replace(f'"{DEEP}"'.encode(), deep(levels).encode())
