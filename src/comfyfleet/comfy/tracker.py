"""Following prompts: a `PromptTracker` per prompt, and the `Router` that hands each socket
event to the tracker of its prompt. Pure state; the client does the I/O (history lookups).

A prompt is finished when `executing` arrives with `node: null` and *its* prompt_id (for
success, error and interrupt alike). The terminal event before it (`execution_success`,
`execution_error`, `execution_interrupted`) says how it ended.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from comfyfleet.comfy import events as ev
from comfyfleet.comfy.models import NodeError, NodeOutput
from comfyfleet.comfy.outcome import (
    ExecutionFailed,
    Interrupted,
    PromptOutcome,
    Success,
    all_cached,
)

log = structlog.get_logger(__name__)

REPLAY_EVENTS = 512  # events kept per prompt for a follow() that starts late
Terminal = ev.ExecutionSuccess | ev.ExecutionError | ev.ExecutionInterrupted


class PromptTracker:
    """What the socket said about one prompt, and its outcome once known."""

    def __init__(
        self,
        prompt_id: str,
        *,
        graph: dict[str, Any] | None = None,
        now: float,
        on_resolved: Callable[[PromptTracker, PromptOutcome], None],
    ) -> None:
        self.prompt_id = prompt_id
        self.graph = graph
        self.node_errors: dict[str, NodeError] = {}  # outputs dropped at submit (HTTP 200)
        self.last_activity = now  # monotonic s of the last event or cross-check
        self.started = False  # seen running: a running prompt cannot be deleted
        self.gap = False  # the socket dropped while tracking: events may be missing
        self.checking = False  # a /queue + /history cross-check is in flight
        # True while our POST /prompt is unanswered: ComfyUI may not have queued it yet, so
        # a /queue read now proves nothing (the watchdog must not call it deleted).
        self.posting = False
        self.accepted_at: float | None = None  # monotonic s when ComfyUI answered the POST
        self.outputs: dict[str, NodeOutput] = {}
        self.cached_nodes: list[str] = []
        self.executed_any = False
        self.terminal: Terminal | None = None
        self.outcome: PromptOutcome | None = None
        self._on_resolved = on_resolved
        self._error: BaseException | None = None
        self._resolved = asyncio.Event()
        self._buffer: deque[ev.Event] = deque(maxlen=REPLAY_EVENTS)
        self._subscribers: list[asyncio.Queue[ev.Event | None]] = []

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def touch(self, now: float) -> None:
        self.last_activity = now

    def feed(self, event: ev.Event, now: float) -> bool:
        """Take one event of this prompt. True when it is the "finished" signal."""
        self.last_activity = now
        self._publish(event)
        match event:
            case ev.ExecutionStart():
                self.started = True
            case ev.ExecutionCached(nodes=nodes):
                self.cached_nodes = list(nodes)
            case ev.Executing(node=None):
                return True
            case ev.Executing():
                self.started = self.executed_any = True
            case ev.Executed(node=node, output=output):
                self.outputs[node] = NodeOutput.from_ui(output)
            case ev.ExecutionSuccess() | ev.ExecutionError() | ev.ExecutionInterrupted():
                self.terminal = event
        return False

    def outcome_from_events(self) -> PromptOutcome | None:
        """The outcome the socket events describe; None without a terminal event."""
        pid, outputs, terminal = self.prompt_id, dict(self.outputs), self.terminal
        if isinstance(terminal, ev.ExecutionSuccess):
            # A fully cached run sends no `executing` for any node, and `executed` re-sends
            # the filenames of the earlier run: no new file exists.
            cached = (
                all_cached(self.cached_nodes, self.graph)
                if self.graph
                else bool(self.cached_nodes) and not self.executed_any
            )
            return Success(
                prompt_id=pid, outputs=outputs, cached=cached, cached_nodes=self.cached_nodes
            )
        if isinstance(terminal, ev.ExecutionError):
            return ExecutionFailed(
                prompt_id=pid,
                outputs=outputs,
                node_id=terminal.node_id,
                node_type=terminal.node_type,
                exception_type=terminal.exception_type,
                exception_message=terminal.exception_message,
                traceback=terminal.traceback,
                executed=terminal.executed,
            )
        if isinstance(terminal, ev.ExecutionInterrupted):
            return Interrupted(
                prompt_id=pid,
                outputs=outputs,
                node_id=terminal.node_id,
                node_type=terminal.node_type,
                executed=terminal.executed,
            )
        return None

    def resolve(self, outcome: PromptOutcome) -> bool:
        """Set the outcome once; later calls are ignored (the first source wins)."""
        if self.outcome is not None:
            return False
        if isinstance(outcome, Success) and self.node_errors:
            outcome = outcome.model_copy(update={"node_errors": self.node_errors})
        self.outcome = outcome
        self._resolved.set()
        for queue in self._subscribers:
            queue.put_nowait(None)
        log.info(
            "comfy.prompt_resolved",
            prompt_id=self.prompt_id,
            kind=outcome.kind,
            source=outcome.source,
        )
        self._on_resolved(self, outcome)
        return True

    def fail(self, error: BaseException) -> None:
        """End waiters and followers without an outcome (the client is closing)."""
        self._error = error
        self._resolved.set()
        for queue in self._subscribers:
            queue.put_nowait(None)

    async def wait(self) -> PromptOutcome:
        await self._resolved.wait()
        if self.outcome is None:
            raise self._error or RuntimeError("tracker ended without an outcome")
        return self.outcome

    def subscribe(self) -> asyncio.Queue[ev.Event | None]:
        """A queue of this prompt's events (those kept so far first), then None at the end."""
        queue: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        for event in self._buffer:
            queue.put_nowait(event)
        if self.done:
            queue.put_nowait(None)
        else:
            self._subscribers.append(queue)
        return queue

    def kept_events(self) -> tuple[ev.Event, ...]:
        """The events kept so far, less previews (of no use once the prompt has ended)."""
        return tuple(e for e in self._buffer if not isinstance(e, ev.PreviewImage))

    def unsubscribe(self, queue: asyncio.Queue[ev.Event | None]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)

    def _publish(self, event: ev.Event) -> None:
        self._buffer.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)


class Router:
    """Hands each socket event to the tracker of its prompt, and to every listener."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        on_finished: Callable[[PromptTracker], None],
    ) -> None:
        self.trackers: dict[str, PromptTracker] = {}
        self.listeners: list[Callable[[ev.Event], None]] = []
        self.executing: str | None = None  # the prompt running now, for unlabeled frames
        self._clock = clock
        self._on_finished = on_finished

    def route(self, event: ev.Event) -> None:
        event = self._attribute(event)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not stop the socket
                log.exception("comfy.listener_failed", kind=event.kind)
        if isinstance(event, ev.UnknownMessage | ev.UnknownBinary):
            log.info("comfy.unknown_event", kind=event.kind, event=_describe(event))
        tracker = self.trackers.get(event.prompt_id) if event.prompt_id else None
        if tracker is not None and not tracker.done and tracker.feed(event, self._clock()):
            self._on_finished(tracker)

    def _attribute(self, event: ev.Event) -> ev.Event:
        """Keep `executing` state, and label preview/text frames that name no prompt."""
        if isinstance(event, ev.ExecutionStart):
            self.executing = event.prompt_id
        elif isinstance(event, ev.Executing):
            if event.prompt_id is None:
                # The reconnect-time `{"node": "2"}`: some prompt runs, we cannot say which.
                log.debug("comfy.executing_without_prompt_id", node=event.node)
            elif event.node is not None:
                self.executing = event.prompt_id
            elif self.executing == event.prompt_id:
                self.executing = None
        elif (
            isinstance(event, ev.PreviewImage | ev.TextFrame)
            and event.prompt_id is None
            and self.executing is not None
        ):
            return event.model_copy(update={"prompt_id": self.executing})
        return event


def _describe(event: ev.UnknownMessage | ev.UnknownBinary) -> str:
    if isinstance(event, ev.UnknownMessage):
        return event.type
    return f"binary type {event.event_type} ({len(event.payload)} bytes)"
