"""Forwarding a prompt's progress from ComfyUI's socket into the job's event log."""

from __future__ import annotations

from comfyfleet.clock import Clock
from comfyfleet.comfy import ComfyClient
from comfyfleet.comfy import events as ev
from comfyfleet.node.previews import PreviewKeeper
from comfyfleet.store.jobs import JobStore

# At most one progress event per job per this many ms: a 150-step sampler on a fast GPU
# would otherwise write hundreds of stream entries a second. The last step always goes.
PROGRESS_MIN_INTERVAL_MS = 100


class ProgressForwarder:
    def __init__(
        self, store: JobStore, job_id: str, comfy: ComfyClient, prompt_id: str, clock: Clock
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.comfy = comfy
        self.prompt_id = prompt_id
        self.clock = clock
        self._last_ms = 0
        self._previews = PreviewKeeper(store, job_id, clock)

    async def run(self) -> None:
        async for event in self.comfy.follow(self.prompt_id):
            if isinstance(event, ev.Progress):
                await self._progress(event)
            elif isinstance(event, ev.ExecutionStart):
                await self.store.append_event(self.job_id, "started", {"prompt_id": self.prompt_id})
            elif isinstance(event, ev.Executing) and event.node is not None:
                await self.store.append_event(self.job_id, "executing", {"node": event.node})
            elif isinstance(event, ev.PreviewImage):
                await self._previews.offer(event)

    async def _progress(self, event: ev.Progress) -> None:
        now = self.clock.now_ms()
        last_step = event.max and event.value >= event.max
        if now - self._last_ms < PROGRESS_MIN_INTERVAL_MS and not last_step:
            return
        self._last_ms = now
        await self.store.append_event(
            self.job_id,
            "progress",
            {"value": int(event.value), "max": int(event.max), "node": event.node},
        )
