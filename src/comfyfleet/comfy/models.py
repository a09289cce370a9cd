"""Typed forms of what ComfyUI's HTTP API answers. Pure: parsing only, no I/O.

Models ignore unknown fields (`extra="ignore"`) so a newer ComfyUI that adds fields does not
break the client; fields ComfyUI may omit have defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FolderType = Literal["output", "input", "temp"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ImageRef(_Model):
    """A file ComfyUI can serve from /view: in an output (`images` entry) or an upload."""

    filename: str
    subfolder: str = ""
    type: FolderType = "output"

    def query(self) -> dict[str, str]:
        """The /view query parameters that name this file."""
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


class ValidationIssue(_Model):
    """One entry of `node_errors[id].errors` (or the top-level `error`) of a rejection."""

    type: str
    message: str = ""
    details: str = ""
    extra_info: dict[str, Any] = Field(default_factory=dict)


class NodeError(_Model):
    """Why one node failed validation, and which outputs depend on it."""

    class_type: str = ""
    errors: list[ValidationIssue] = Field(default_factory=list)
    dependent_outputs: list[str] = Field(default_factory=list)

    @property
    def error_types(self) -> list[str]:
        return [e.type for e in self.errors]


class PromptAccepted(_Model):
    """POST /prompt answered 200: the prompt is queued.

    `number` is its queue position key (lowest runs first): negative for `front`, a float
    when the client chose it. `node_errors` can be non-empty: ComfyUI queues the valid
    outputs and silently drops those whose nodes failed validation (they will not run).
    """

    prompt_id: str
    number: int | float
    node_errors: dict[str, NodeError] = Field(default_factory=dict)


class QueueItem(_Model):
    """One queued prompt: ComfyUI sends `[number, prompt_id, prompt, extra_data, outputs]`."""

    number: int | float
    prompt_id: str
    prompt: dict[str, Any] = Field(default_factory=dict)
    extra_data: dict[str, Any] = Field(default_factory=dict)
    outputs_to_execute: list[str] = Field(default_factory=list)

    @classmethod
    def from_wire(cls, item: list[Any]) -> QueueItem:
        names = ("number", "prompt_id", "prompt", "extra_data", "outputs_to_execute")
        return cls.model_validate(dict(zip(names, item, strict=False)))


class QueueState(_Model):
    """GET /queue. `pending` is sorted in run order (ComfyUI sends heap-array order)."""

    running: list[QueueItem] = Field(default_factory=list)
    pending: list[QueueItem] = Field(default_factory=list)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> QueueState:
        running = [QueueItem.from_wire(i) for i in body.get("queue_running", [])]
        pending = [QueueItem.from_wire(i) for i in body.get("queue_pending", [])]
        # ComfyUI's heap orders on (number, prompt_id, ...); sorting on the same key gives
        # the order the worker will pop them in.
        pending.sort(key=lambda i: (i.number, i.prompt_id))
        return cls(running=running, pending=pending)

    def is_running(self, prompt_id: str) -> bool:
        return any(i.prompt_id == prompt_id for i in self.running)

    def is_pending(self, prompt_id: str) -> bool:
        return any(i.prompt_id == prompt_id for i in self.pending)

    def contains(self, prompt_id: str) -> bool:
        return self.is_running(prompt_id) or self.is_pending(prompt_id)


class HistoryStatus(_Model):
    status_str: str = ""
    completed: bool = False
    messages: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)

    def message(self, event: str) -> dict[str, Any] | None:
        """The data of the first status message named `event`, if any."""
        return next((data for name, data in self.messages if name == event), None)


class NodeOutput(_Model):
    """What one output node reported (its `ui` dict): images, text, or anything else."""

    images: list[ImageRef] = Field(default_factory=list)
    text: list[str] = Field(default_factory=list)
    ui: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_ui(cls, ui: dict[str, Any]) -> NodeOutput:
        images = [ImageRef.model_validate(i) for i in ui.get("images", []) if "filename" in i]
        text = [str(t) for t in ui.get("text", [])]
        return cls(images=images, text=text, ui=ui)


class HistoryEntry(_Model):
    """GET /history/{id} for a finished prompt. ComfyUI keeps it in memory only."""

    prompt_id: str
    number: int | float
    prompt: dict[str, Any] = Field(default_factory=dict)
    extra_data: dict[str, Any] = Field(default_factory=dict)
    outputs_to_execute: list[str] = Field(default_factory=list)
    outputs: dict[str, NodeOutput] = Field(default_factory=dict)
    status: HistoryStatus | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_wire(cls, prompt_id: str, body: dict[str, Any]) -> HistoryEntry:
        queued = QueueItem.from_wire(body.get("prompt", [0, prompt_id]))
        outputs = {k: NodeOutput.from_ui(v) for k, v in body.get("outputs", {}).items()}
        return cls(
            prompt_id=prompt_id,
            number=queued.number,
            prompt=queued.prompt,
            extra_data=queued.extra_data,
            outputs_to_execute=queued.outputs_to_execute,
            outputs=outputs,
            status=body.get("status"),
            meta=body.get("meta") or {},
        )


class SystemInfo(_Model):
    model_config = ConfigDict(frozen=True, extra="allow")

    os: str = ""
    ram_total: int = 0
    ram_free: int = 0
    comfyui_version: str = ""
    python_version: str = ""
    pytorch_version: str = ""
    argv: list[str] = Field(default_factory=list)


class Device(_Model):
    model_config = ConfigDict(frozen=True, extra="allow")

    name: str
    type: str
    index: int | None = None
    vram_total: int = 0
    vram_free: int = 0
    torch_vram_total: int = 0
    torch_vram_free: int = 0


class SystemStats(_Model):
    """GET /system_stats. Sizes are bytes."""

    system: SystemInfo
    devices: list[Device] = Field(default_factory=list)


class Features(_Model):
    """GET /features (also what the server answers to our WS feature flags)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    supports_preview_metadata: bool = False
    max_upload_size: int | None = None  # bytes


class LogEntry(_Model):
    t: str  # ISO timestamp, server local time
    m: str  # the line, usually ending in "\n"


class LogsRaw(_Model):
    """GET /internal/logs/raw: the server's last log lines (300 kept) and terminal size."""

    entries: list[LogEntry] = Field(default_factory=list)
    size: dict[str, int] | None = None
