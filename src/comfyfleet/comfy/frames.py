"""Pure parsing of ComfyUI WebSocket frames into typed events (see events.py).

Binary frames start with a big-endian u32 event type:
- 1 PREVIEW_IMAGE: `[u32 1][u32 fmt: 1=JPEG, 2=PNG][image bytes]`
- 3 TEXT: `[u32 3][u32 len(node_id)][node_id][utf-8 text]`
- 4 PREVIEW_IMAGE_WITH_METADATA: `[u32 4][u32 json_len][json][image bytes]`
"""

from __future__ import annotations

import struct
from typing import Any

import orjson
from pydantic import ValidationError

from comfyfleet.comfy import events as ev
from comfyfleet.comfy.errors import ComfyProtocolError

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_FORMATS = {1: "jpeg", 2: "png"}
_U32 = struct.Struct(">I")

_TEXT_TYPES: dict[str, type[ev._Event]] = {
    "execution_start": ev.ExecutionStart,
    "execution_cached": ev.ExecutionCached,
    "executing": ev.Executing,
    "executed": ev.Executed,
    "progress": ev.Progress,
    "progress_state": ev.ProgressState,
    "execution_success": ev.ExecutionSuccess,
    "execution_error": ev.ExecutionError,
    "execution_interrupted": ev.ExecutionInterrupted,
    "logs": ev.Logs,
}


def parse_text(raw: str | bytes) -> ev.Event:
    """One text frame. Raises ComfyProtocolError if it is not `{"type", "data"}` JSON."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ComfyProtocolError(f"text frame is not JSON: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ComfyProtocolError("text frame has no 'type'")
    return parse_message(message["type"], message.get("data"))


def parse_message(kind: str, data: Any) -> ev.Event:
    """A decoded `{"type": kind, "data": data}` message."""
    try:
        if kind == "status":
            status = (data or {}).get("status") or {}
            remaining = (status.get("exec_info") or {}).get("queue_remaining", 0)
            return ev.Status(queue_remaining=remaining, sid=(data or {}).get("sid"))
        if kind == "feature_flags":
            return ev.FeatureFlags(flags=data or {})
        model = _TEXT_TYPES.get(kind)
        if model is None:
            return ev.UnknownMessage(type=kind, data=data)
        event: ev.Event = model.model_validate(data or {})  # type: ignore[assignment]
        return event
    except (ValidationError, AttributeError, TypeError) as exc:
        raise ComfyProtocolError(f"bad {kind!r} message: {exc}") from exc


def parse_binary(frame: bytes) -> ev.Event:
    """One binary frame. Raises ComfyProtocolError if it is truncated."""
    event_type, body = _split_u32(frame)
    if event_type == PREVIEW_IMAGE:
        fmt, image = _split_u32(body)
        return ev.PreviewImage(
            event_type=event_type, image_format=_IMAGE_FORMATS.get(fmt, str(fmt)), image=image
        )
    if event_type == PREVIEW_IMAGE_WITH_METADATA:
        return _preview_with_metadata(body)
    if event_type == TEXT:
        length, rest = _split_u32(body)
        if len(rest) < length:
            raise ComfyProtocolError("text frame shorter than its node id")
        node_id = rest[:length].decode("utf-8", errors="replace")
        text = rest[length:].decode("utf-8", errors="replace")
        return ev.TextFrame(node_id=node_id, text=text)
    return ev.UnknownBinary(event_type=event_type, payload=body)


def _preview_with_metadata(body: bytes) -> ev.PreviewImage:
    length, rest = _split_u32(body)
    if len(rest) < length:
        raise ComfyProtocolError("preview frame shorter than its metadata")
    try:
        metadata = orjson.loads(rest[:length])
    except orjson.JSONDecodeError as exc:
        raise ComfyProtocolError(f"preview metadata is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ComfyProtocolError("preview metadata is not an object")
    image_type = str(metadata.get("image_type", ""))
    return ev.PreviewImage(
        event_type=PREVIEW_IMAGE_WITH_METADATA,
        image_format=image_type.removeprefix("image/") or "png",
        image=rest[length:],
        prompt_id=metadata.get("prompt_id"),
        node_id=metadata.get("node_id"),
        metadata=metadata,
    )


def _split_u32(data: bytes) -> tuple[int, bytes]:
    if len(data) < 4:
        raise ComfyProtocolError(f"binary frame too short ({len(data)} bytes)")
    (value,) = _U32.unpack_from(data)
    return value, data[4:]
