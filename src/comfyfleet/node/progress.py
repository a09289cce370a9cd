"""Forwarding a prompt's progress from ComfyUI's socket into the job's event log.

What is recorded is what the balancer's native websocket needs to send a ComfyUI client
the frames ComfyUI would have sent it (balancer/native/frames.py): `started`, `cached`,
`executing` per node, `progress` (throttled), `executed` with the node's ui dict,
`preview`, and ComfyUI's own error/interrupt details (`comfy_error`,
`comfy_interrupted`), which the job's terminal state then reports. Error details are
redacted of host paths like every job error a client sees."""

from __future__ import annotations

import orjson

from comfyfleet.clock import Clock
from comfyfleet.comfy import ComfyClient
from comfyfleet.comfy import events as ev
from comfyfleet.node.job_events import JobEventWriter
from comfyfleet.node.previews import PreviewKeeper
from comfyfleet.web.redact import scrub

# At most one progress event per job per this many ms: a 150-step sampler on a fast GPU
# would otherwise write hundreds of stream entries a second. The last step always goes.
PROGRESS_MIN_INTERVAL_MS = 100
# Most bytes (JSON) of a failed node's input values recorded with ComfyUI's error.
MAX_CURRENT_INPUTS_BYTES = 16 * 1024


class ProgressForwarder:
    def __init__(
        self, events: JobEventWriter, comfy: ComfyClient, prompt_id: str, clock: Clock
    ) -> None:
        self.events = events
        self.comfy = comfy
        self.prompt_id = prompt_id
        self.clock = clock
        self._last_ms = 0
        self._previews = PreviewKeeper(events, clock)

    async def run(self) -> None:
        async for event in self.comfy.follow(self.prompt_id):
            if isinstance(event, ev.Progress):
                self._progress(event)
            elif isinstance(event, ev.ExecutionStart):
                self.events.add("started", {"prompt_id": self.prompt_id})
            elif isinstance(event, ev.ExecutionCached):
                self.events.add("cached", {"nodes": event.nodes})
            elif isinstance(event, ev.Executing) and event.node is not None:
                self.events.add("executing", {"node": event.node})
            elif isinstance(event, ev.Executed):
                output = {"node": event.node, "output": event.output}
                self.events.add("executed", output)
            elif isinstance(event, ev.ExecutionError):
                self.events.add("comfy_error", _error_details(event))
            elif isinstance(event, ev.ExecutionInterrupted):
                where = {"node_id": event.node_id, "node_type": event.node_type,
                         "executed": event.executed}  # fmt: skip
                self.events.add("comfy_interrupted", where)
            elif isinstance(event, ev.PreviewImage):
                await self._previews.offer(event)

    def _progress(self, event: ev.Progress) -> None:
        now = self.clock.now_ms()
        last_step = event.max and event.value >= event.max
        if now - self._last_ms < PROGRESS_MIN_INTERVAL_MS and not last_step:
            return
        self._last_ms = now
        self.events.add(
            "progress",
            {"value": int(event.value), "max": int(event.max), "node": event.node},
        )


def _error_details(event: ev.ExecutionError) -> dict[str, object]:
    """ComfyUI's execution_error, as a client may see it: no host paths (web/redact.py);
    the failed node's input values only while small (they can be large tensors' reprs)."""
    inputs = scrub(event.current_inputs)
    if len(orjson.dumps(inputs, default=str)) > MAX_CURRENT_INPUTS_BYTES:
        inputs = {}
    return {
        "node_id": event.node_id,
        "node_type": event.node_type,
        "executed": event.executed,
        "exception_message": scrub(event.exception_message),
        "exception_type": event.exception_type,
        "traceback": [scrub(line) for line in event.traceback],
        "current_inputs": inputs,
        "current_outputs": event.current_outputs,
    }
