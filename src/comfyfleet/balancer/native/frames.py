"""ComfyUI websocket frames derived from a job's event log (pure: no I/O).

A node records what ComfyUI told it about a prompt as events of the job's log (`started`,
`cached`, `executing`, `progress`, `executed`, `preview`, `comfy_error`,
`comfy_interrupted`; node/progress.py), and the job scripts record its state changes.
`PromptFrames` turns that log, read in order, into the frames a ComfyUI 0.3.64 would have
sent the submitting client, in its order (see shared/comfyui/PROTOCOL.md, "Successful job"):

    status (queued)  status (taken)  execution_start  execution_cached
    per node: progress_state(running)  executing  [progress...]  [executed]
              progress_state(finished)
    execution_success | execution_error | execution_interrupted   status   executing(null)

`progress_state` is rebuilt from the `executing` events (ComfyUI sends one as a node starts
and one as it finishes), so the node does not record it. `status` frames are placeholders
(`Status`): the socket fills in `queue_remaining`, which is a count of the principal's
unfinished prompts at the time the frame is sent, not something the log holds. A retried
job's failed attempts do not end the prompt: only the terminal `state` event does, so a
client sees one end per prompt. Previews become `Preview` markers; the socket fetches the
bytes (only the newest is kept in Redis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Status:
    """A `status` frame; the socket fills in queue_remaining when it sends it."""


@dataclass(frozen=True)
class Preview:
    """A binary preview frame for the job's preview number `n` (store/previews.py)."""

    prompt_id: str
    n: int
    content_type: str
    node: str | None


Frame = Json | Status | Preview


def _frame(kind: str, **data: Any) -> Json:
    return {"type": kind, "data": data}


@dataclass
class PromptFrames:
    """Feeds one prompt's events in log order; each `feed` answers the frames to send.

    `subfolder_of` maps a node's output ui dict to what the fleet serves (a subfolder
    unique to the job: see shapes.py)."""

    prompt_id: str
    output_subfolder: str
    queued: bool = False
    started: bool = False
    ended: bool = False
    running: str | None = None
    nodes: dict[str, Json] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    error: Json | None = None
    interrupted: Json | None = None

    def feed(self, event: Json) -> list[Frame]:
        kind = event.get("type")
        if self.ended:
            return []
        if kind == "state":
            return self._state(event)
        if kind == "started":
            return self._start(event)
        if not self.started:
            return []
        handler = _HANDLERS.get(str(kind))
        return handler(self, event) if handler is not None else []

    def _state(self, event: Json) -> list[Frame]:
        status = event.get("status")
        if status == "queued" and not self.queued and not self.started:
            self.queued = True
            return [Status()]
        if status not in TERMINAL:
            return []
        self.ended = True
        at = _ms(event)
        if status == "cancelled" and not self.started:
            # A pending prompt deleted from the queue: ComfyUI sends only a status.
            return [Status()]
        frames: list[Frame] = [] if self.started else self._opening(at)
        if status == "succeeded":
            frames += self._finish_running()
            frames += self._unreported_outputs(event)
            frames.append(_frame("execution_success", prompt_id=self.prompt_id, timestamp=at))
        elif status == "failed":
            frames.append(self._error_frame(event, at))
        else:
            frames.append(self._interrupted_frame(at))
        frames += [Status(), _frame("executing", node=None, prompt_id=self.prompt_id)]
        return frames

    def _opening(self, at: int) -> list[Frame]:
        self.queued = self.started = True
        return [
            Status(),
            _frame("execution_start", prompt_id=self.prompt_id, timestamp=at),
        ]

    def _start(self, event: Json) -> list[Frame]:
        if self.started:
            # A retry: the prompt runs again inside another ComfyUI; the client has seen
            # it start already, and sees the nodes run again.
            self.running = None
            self.nodes.clear()
            return []
        return self._opening(_ms(event))

    def _cached(self, event: Json) -> list[Frame]:
        nodes = [str(n) for n in event.get("nodes", [])]
        return [_frame("execution_cached", nodes=nodes, prompt_id=self.prompt_id,
                       timestamp=_ms(event))]  # fmt: skip

    def _executing(self, event: Json) -> list[Frame]:
        node = event.get("node")
        if node is None:
            return []
        node = str(node)
        frames = self._finish_running()
        self.running = node
        self.nodes[node] = self._node_state(node, 0.0, "running")
        frames.append(self._progress_state())
        frames.append(_frame("executing", node=node, display_node=node, prompt_id=self.prompt_id))
        return frames

    def _progress(self, event: Json) -> list[Frame]:
        node = event.get("node")
        return [_frame("progress", value=event.get("value", 0), max=event.get("max", 0),
                       prompt_id=self.prompt_id, node=node)]  # fmt: skip

    def _executed(self, event: Json) -> list[Frame]:
        node = str(event.get("node"))
        self.executed.append(node)
        output = fleet_output(event.get("output") or {}, self.output_subfolder)
        return [_frame("executed", node=node, display_node=node, output=output,
                       prompt_id=self.prompt_id)]  # fmt: skip

    def _unreported_outputs(self, event: Json) -> list[Frame]:
        """`executed` frames for the nodes whose files the job's `outputs` list but whose
        `executed` event the log does not hold: a log folded after its grace leaves them
        out, and a node may have lost one to a Redis hiccup. Built like /history's."""
        files = [(str(o.get("node_id") or "0"), str(o.get("filename")),
                  str(o.get("kind") or "output"))
                 for o in event.get("outputs") or [] if isinstance(o, dict)]  # fmt: skip
        unreported = [file for file in files if file[0] not in self.executed]
        return [frame for node, ui in outputs_ui(unreported).items()
                for frame in self._executed({"node": node, "output": ui})]  # fmt: skip

    def _preview(self, event: Json) -> list[Frame]:
        return [Preview(self.prompt_id, int(event.get("n", 0)),
                        str(event.get("content_type", "")), self.running)]  # fmt: skip

    def _comfy_error(self, event: Json) -> list[Frame]:
        self.error = event
        return []

    def _comfy_interrupted(self, event: Json) -> list[Frame]:
        self.interrupted = event
        return []

    def _finish_running(self) -> list[Frame]:
        if self.running is None:
            return []
        self.nodes[self.running] = self._node_state(self.running, 1.0, "finished")
        self.running = None
        return [self._progress_state()]

    def _node_state(self, node: str, value: float, state: str) -> Json:
        return {"value": value, "max": 1.0, "state": state, "node_id": node,
                "prompt_id": self.prompt_id, "display_node_id": node, "parent_node_id": None,
                "real_node_id": node}  # fmt: skip

    def _progress_state(self) -> Json:
        nodes = {node: dict(state) for node, state in self.nodes.items()}
        return _frame("progress_state", prompt_id=self.prompt_id, nodes=nodes)

    def _error_frame(self, event: Json, at: int) -> Json:
        recorded = self.error or {}
        error = event.get("error") or {}
        return _frame(
            "execution_error",
            prompt_id=self.prompt_id,
            node_id=recorded.get("node_id", error.get("comfy_node_id")),
            node_type=recorded.get("node_type", error.get("comfy_node_type")),
            executed=list(recorded.get("executed", self.executed)),
            exception_message=recorded.get("exception_message", error.get("message", "")),
            exception_type=recorded.get(
                "exception_type", f"comfyfleet.{error.get('code', 'error')}"
            ),
            traceback=list(recorded.get("traceback", [])),
            current_inputs=dict(recorded.get("current_inputs", {})),
            current_outputs=list(recorded.get("current_outputs", [])),
            timestamp=at,
        )

    def _interrupted_frame(self, at: int) -> Json:
        recorded = self.interrupted or {}
        return _frame(
            "execution_interrupted",
            prompt_id=self.prompt_id,
            node_id=recorded.get("node_id", self.running),
            node_type=recorded.get("node_type"),
            executed=list(recorded.get("executed", self.executed)),
            timestamp=at,
        )


_HANDLERS = {
    "cached": PromptFrames._cached,
    "executing": PromptFrames._executing,
    "progress": PromptFrames._progress,
    "executed": PromptFrames._executed,
    "preview": PromptFrames._preview,
    "comfy_error": PromptFrames._comfy_error,
    "comfy_interrupted": PromptFrames._comfy_interrupted,
}


def _ms(event: Json) -> int:
    at = event.get("at_ms")
    return int(at) if isinstance(at, int | float) else 0


def outputs_ui(files: list[tuple[str, str, str]]) -> dict[str, Json]:
    """Each node's ui dict (`{"images": [{filename, subfolder, type}]}`) for output files
    given as (node id, filename, folder type), as ComfyUI's SaveImage/PreviewImage report
    them; `subfolder` is filled in by fleet_output."""
    outputs: dict[str, Json] = {}
    for node, filename, kind in files:
        image = {"filename": filename, "subfolder": "", "type": kind}
        outputs.setdefault(node, {"images": []})["images"].append(image)
    return outputs


def fleet_output(output: Json, subfolder: str) -> Json:
    """A node's ui dict (`{"images": [{filename, subfolder, type}]}`, text...) as the fleet
    serves it: every file under `subfolder`, the one unique to its job, so two nodes'
    `ComfyUI_00001_.png` never meet in /view."""
    shaped: Json = {}
    for key, value in output.items():
        if isinstance(value, list) and all(_is_file(item) for item in value):
            shaped[key] = [{**item, "subfolder": subfolder} for item in value]
        else:
            shaped[key] = value
    return shaped


def _is_file(item: Any) -> bool:
    return isinstance(item, dict) and "filename" in item
