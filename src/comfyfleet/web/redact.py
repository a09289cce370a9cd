"""What a client may see of the GPU box: no absolute paths of the ComfyUI host.

A job's error comes from ComfyUI on another machine: exception messages and tracebacks
name files there (`/opt/ComfyUI/input/x.png`, `File "/opt/ComfyUI/execution.py"`,
`C:\\ComfyUI\\models\\...`). Clients get the last part of such a path only; the node's
own log keeps the whole message for the operator."""

from __future__ import annotations

import re
from typing import Any

# An absolute path of at least one folder, not inside a URL or a word (`a/b`, `http://x/y`).
_POSIX_PATH = re.compile(r"(?<![\w.:/\\~-])/(?:[^\s'\"/:<>|]+/)+([^\s'\"/:<>|]*)")
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:[\\/](?:[^\s'\"\\/:<>|]+[\\/])*([^\s'\"\\/:<>|]*)")
# How deep `scrub` follows nested details (an error's details are small, built by a node).
_MAX_DEPTH = 8


def strip_host_paths(text: str) -> str:
    """`text` with every absolute path replaced by its last part (`.../x.png` -> `x.png`)."""
    return _WINDOWS_PATH.sub(r"\1", _POSIX_PATH.sub(r"\1", text))


def scrub(value: Any, depth: int = 0) -> Any:
    """`value` (strings, lists, dicts of them) with host paths stripped from every string."""
    if isinstance(value, str):
        return strip_host_paths(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, depth + 1) for k, v in value.items()}
    return value
