"""Read the recordings of a real ComfyUI 0.3.64 (tests/data/comfyui, copied from
shared/comfyui). See tests/data/comfyui/PROTOCOL.md for the file formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

COMFY_DATA = Path(__file__).resolve().parents[1] / "data" / "comfyui"
TRACES = COMFY_DATA / "traces"
WORKFLOWS = COMFY_DATA / "workflows"
# The recorded POST /prompt refusals whose 400 body a server must repeat exactly (in
# 07_validation_errors; the stand-in and the fleet are both held to them).
EXACT_REJECTIONS = [
    "body_without_prompt_key",
    "e1_invalid_bad_input_type",
    "e2_invalid_missing_node_class",
    "e3_invalid_link_type_mismatch",
    "e4_invalid_out_of_range_and_missing_input",
    "e5_invalid_no_output_node",
    "e6_invalid_loadimage_missing_file",
    "node_without_class_type",
]


def load(relative: str) -> Any:
    """A trace file by its path under traces/, e.g. '04_success_a/ws_messages.json'."""
    return orjson.loads((TRACES / relative).read_bytes())


def workflow(name: str) -> dict[str, Any]:
    """A shared API-format workflow by file stem, e.g. 'a_empty_save'."""
    data: dict[str, Any] = orjson.loads((WORKFLOWS / f"{name}.json").read_bytes())
    return data


def ws_messages(relative: str) -> list[dict[str, Any]]:
    """The recorded frames of one WebSocket trace, in order."""
    trace = load(relative)
    messages: list[dict[str, Any]] = trace["messages"]
    return messages


def ws_json_messages(relative: str) -> list[dict[str, Any]]:
    """Only the parsed JSON text frames of one WebSocket trace, in order."""
    return [m["json"] for m in ws_messages(relative) if m.get("kind") == "text"]


def binary_payload(name: str) -> bytes:
    return (TRACES / "binary_payloads" / name).read_bytes()
