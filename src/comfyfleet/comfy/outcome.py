"""How a prompt ended, as one of a few typed outcomes, and how to read one from /history.

| kind          | meaning                                                   | retry helps?  |
| ------------- | --------------------------------------------------------- | ------------- |
| `success`     | every output ran (`cached`: served whole from the cache)  | -             |
| `error`       | a node raised (`node_id`, `node_type`, exception...)      | usually not   |
| `interrupted` | POST /interrupt stopped it (between nodes)                | -             |
| `rejected`    | POST /prompt answered 400: nothing was queued             | no            |
| `deleted`     | removed from the pending queue: it will never run         | -             |
| `lost`        | vanished: ComfyUI restarted (history is in memory only)   | yes           |

Outputs finished before an error or interrupt are kept in `outputs`, as ComfyUI keeps them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from comfyfleet.comfy.models import HistoryEntry, ImageRef, NodeError, NodeOutput

Source = Literal["ws", "history", "watchdog"]


class _Outcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_id: str
    source: Source = "ws"  # where the outcome was read: the socket, or a /history lookup


class _WithOutputs(_Outcome):
    outputs: dict[str, NodeOutput] = Field(default_factory=dict)

    def images(self) -> list[ImageRef]:
        """Every image of every output node, in node id order."""
        return [
            img for key in sorted(self.outputs, key=_node_key) for img in self.outputs[key].images
        ]


class Success(_WithOutputs):
    """Every requested output ran. With `cached`, ComfyUI served every node from its cache:
    no file was written and `outputs` names the files of the earlier identical run."""

    kind: Literal["success"] = "success"
    cached: bool = False
    cached_nodes: list[str] = Field(default_factory=list)
    # Outputs ComfyUI dropped at submit (HTTP 200 with node_errors): they did not run.
    node_errors: dict[str, NodeError] = Field(default_factory=dict)


class ExecutionFailed(_WithOutputs):
    kind: Literal["error"] = "error"
    node_id: str | None = None
    node_type: str | None = None
    exception_type: str = ""
    exception_message: str = ""
    traceback: list[str] = Field(default_factory=list)
    executed: list[str] = Field(default_factory=list)


class Interrupted(_WithOutputs):
    kind: Literal["interrupted"] = "interrupted"
    node_id: str | None = None
    node_type: str | None = None
    executed: list[str] = Field(default_factory=list)


class Rejected(_Outcome):
    """Validation failed at POST /prompt (HTTP 400); see PromptRejected."""

    kind: Literal["rejected"] = "rejected"
    error_type: str
    message: str = ""
    details: str = ""
    node_errors: dict[str, NodeError] = Field(default_factory=dict)


class Deleted(_Outcome):
    """Gone from the queue and never ran: someone deleted it (or cleared the queue)."""

    kind: Literal["deleted"] = "deleted"


class Lost(_Outcome):
    """Gone from queue and history after running or after the socket dropped: ComfyUI
    restarted (or is unreachable for too long, see `reason`). Its outputs are unknown."""

    kind: Literal["lost"] = "lost"
    reason: str = ""


PromptOutcome = Success | ExecutionFailed | Interrupted | Rejected | Deleted | Lost


def all_cached(cached_nodes: list[str], graph: dict[str, object]) -> bool:
    """Whether ComfyUI served every node of `graph` from its cache."""
    return bool(graph) and set(graph) <= set(cached_nodes)


def outcome_from_history(entry: HistoryEntry, source: Source = "history") -> PromptOutcome:
    """Read the outcome ComfyUI recorded: `status.messages` says success, error or interrupt."""
    status = entry.status
    pid, outputs = entry.prompt_id, entry.outputs
    if status is None:  # older ComfyUI wrote no status; an entry means it ran
        return Success(prompt_id=pid, source=source, outputs=outputs)
    cached_msg = status.message("execution_cached") or {}
    cached = [str(n) for n in cached_msg.get("nodes", [])]
    if error := status.message("execution_error"):
        return ExecutionFailed(
            prompt_id=pid,
            source=source,
            outputs=outputs,
            node_id=error.get("node_id"),
            node_type=error.get("node_type"),
            exception_type=error.get("exception_type", ""),
            exception_message=error.get("exception_message", ""),
            traceback=error.get("traceback", []),
            executed=error.get("executed", []),
        )
    if stop := status.message("execution_interrupted"):
        return Interrupted(
            prompt_id=pid,
            source=source,
            outputs=outputs,
            node_id=stop.get("node_id"),
            node_type=stop.get("node_type"),
            executed=stop.get("executed", []),
        )
    if status.status_str == "success" or status.message("execution_success") is not None:
        return Success(
            prompt_id=pid,
            source=source,
            outputs=outputs,
            cached=all_cached(cached, entry.prompt),
            cached_nodes=cached,
        )
    return ExecutionFailed(
        prompt_id=pid,
        source=source,
        outputs=outputs,
        exception_message=f"history status {status.status_str!r} without an error message",
    )


def _node_key(node_id: str) -> tuple[int, str]:
    # Node ids are usually integers as strings; order "10" after "9".
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)
