"""The ComfyUI client: HTTP API, one shared WebSocket, prompts followed to their outcome.

Knows ComfyUI's protocol (tests/data/comfyui/PROTOCOL.md) and nothing of Redis or jobs.
"""

from comfyfleet.comfy.api import ByteSink, ComfyAPI
from comfyfleet.comfy.client import ComfyClient
from comfyfleet.comfy.errors import (
    ComfyBadRequest,
    ComfyForbidden,
    ComfyNotFound,
    ComfyProtocolError,
    ComfyRefused,
    ComfyServerError,
    ComfyUnavailable,
    PromptRejected,
    WaitTimeout,
)
from comfyfleet.comfy.events import Event
from comfyfleet.comfy.models import (
    Features,
    HistoryEntry,
    ImageRef,
    LogsRaw,
    NodeError,
    NodeOutput,
    PromptAccepted,
    QueueItem,
    QueueState,
    SystemStats,
    ValidationIssue,
)
from comfyfleet.comfy.options import ComfyOptions
from comfyfleet.comfy.outcome import (
    Deleted,
    ExecutionFailed,
    Interrupted,
    Lost,
    PromptOutcome,
    Rejected,
    Success,
    outcome_from_history,
)
from comfyfleet.comfy.tracker import PromptTracker

__all__ = [
    "ByteSink",
    "ComfyAPI",
    "ComfyBadRequest",
    "ComfyClient",
    "ComfyForbidden",
    "ComfyNotFound",
    "ComfyOptions",
    "ComfyProtocolError",
    "ComfyRefused",
    "ComfyServerError",
    "ComfyUnavailable",
    "Deleted",
    "Event",
    "ExecutionFailed",
    "Features",
    "HistoryEntry",
    "ImageRef",
    "Interrupted",
    "LogsRaw",
    "Lost",
    "NodeError",
    "NodeOutput",
    "PromptAccepted",
    "PromptOutcome",
    "PromptRejected",
    "PromptTracker",
    "QueueItem",
    "QueueState",
    "Rejected",
    "Success",
    "SystemStats",
    "ValidationIssue",
    "WaitTimeout",
    "outcome_from_history",
]
