"""Typed WebSocket events. `frames.py` builds them from text and binary frames.

Every event has `prompt_id` (None when the frame does not name a prompt: `status`, `logs`,
the reconnect-time `executing`, a preview without metadata). Routing keys on it only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from comfyfleet.comfy.models import LogEntry


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    prompt_id: str | None = None


class Status(_Event):
    """Queue size changed (sent to every socket). `sid` only in the first frame."""

    kind: Literal["status"] = "status"
    queue_remaining: int = 0
    sid: str | None = None


class FeatureFlags(_Event):
    kind: Literal["feature_flags"] = "feature_flags"
    flags: dict[str, Any] = Field(default_factory=dict)


class ExecutionStart(_Event):
    kind: Literal["execution_start"] = "execution_start"
    timestamp: int | None = None  # ms since the epoch


class ExecutionCached(_Event):
    kind: Literal["execution_cached"] = "execution_cached"
    nodes: list[str] = Field(default_factory=list)
    timestamp: int | None = None


class Executing(_Event):
    """Node `node` starts. `node=None` with a prompt_id is the "prompt finished" signal.

    After a reconnect ComfyUI sends `{"node": "2"}` without prompt_id or display_node:
    it names the running node of *some* prompt; never route it.
    """

    kind: Literal["executing"] = "executing"
    node: str | None = None
    display_node: str | None = None


class Executed(_Event):
    """An output node finished; `output` is its ui dict (images, text...)."""

    kind: Literal["executed"] = "executed"
    node: str
    display_node: str | None = None
    output: dict[str, Any] = Field(default_factory=dict)


class Progress(_Event):
    kind: Literal["progress"] = "progress"
    node: str | None = None
    value: float = 0
    max: float = 0


class NodeProgress(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    value: float = 0
    max: float = 0
    state: str = ""  # "running" | "finished"
    node_id: str | None = None
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None


class ProgressState(_Event):
    """Per-node progress. Broadcast to every socket for a prompt without client_id."""

    kind: Literal["progress_state"] = "progress_state"
    nodes: dict[str, NodeProgress] = Field(default_factory=dict)


class ExecutionSuccess(_Event):
    kind: Literal["execution_success"] = "execution_success"
    timestamp: int | None = None


class ExecutionError(_Event):
    kind: Literal["execution_error"] = "execution_error"
    node_id: str | None = None
    node_type: str | None = None
    executed: list[str] = Field(default_factory=list)
    exception_message: str = ""
    exception_type: str = ""
    traceback: list[str] = Field(default_factory=list)
    current_inputs: dict[str, Any] = Field(default_factory=dict)
    current_outputs: list[str] = Field(default_factory=list)
    timestamp: int | None = None


class ExecutionInterrupted(_Event):
    kind: Literal["execution_interrupted"] = "execution_interrupted"
    node_id: str | None = None
    node_type: str | None = None
    executed: list[str] = Field(default_factory=list)
    timestamp: int | None = None


class Logs(_Event):
    """Server log lines, sent to a socket after PATCH /internal/logs/subscribe."""

    kind: Literal["logs"] = "logs"
    entries: list[LogEntry] = Field(default_factory=list)
    size: dict[str, int] | None = None


class UnknownMessage(_Event):
    """A text frame of a type this client does not know; kept, logged, otherwise ignored."""

    kind: Literal["unknown"] = "unknown"
    type: str = ""
    data: Any = None


class PreviewImage(_Event):
    """Binary frame type 1 (no metadata) or 4 (with metadata: prompt_id and node_id).

    For type 1 the router fills in `prompt_id` with the prompt executing at the time.
    """

    kind: Literal["preview_image"] = "preview_image"
    event_type: int
    image_format: str  # "jpeg" | "png" (type 1), from image_type (type 4)
    image: bytes
    node_id: str | None = None
    metadata: dict[str, Any] | None = None


class TextFrame(_Event):
    """Binary frame type 3: text a node sent (e.g. GetImageSize)."""

    kind: Literal["text"] = "text"
    node_id: str
    text: str


class UnknownBinary(_Event):
    kind: Literal["unknown_binary"] = "unknown_binary"
    event_type: int
    payload: bytes


JOB_EVENTS = (
    ExecutionStart,
    ExecutionCached,
    Executing,
    Executed,
    Progress,
    ProgressState,
    ExecutionSuccess,
    ExecutionError,
    ExecutionInterrupted,
)

Event = (
    Status
    | FeatureFlags
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Executed
    | Progress
    | ProgressState
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | Logs
    | UnknownMessage
    | PreviewImage
    | TextFrame
    | UnknownBinary
)
