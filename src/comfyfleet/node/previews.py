"""Keeping a running job's latest preview where clients can fetch it.

ComfyUI sends a preview per sampler step; storing each would flood Redis and the event log,
so at most one per `PREVIEW_MIN_INTERVAL_MS` is stored (store/previews.py) and announced
with a `preview` event {n, content_type, size}. Previews above `MAX_PREVIEW_BYTES` are
dropped: they are a glance at the work, not an output.
"""

from __future__ import annotations

from comfyfleet.clock import Clock
from comfyfleet.comfy import events as ev
from comfyfleet.node.job_events import JobEventWriter
from comfyfleet.store.previews import Preview, PreviewStore

PREVIEW_MIN_INTERVAL_MS = 500
MAX_PREVIEW_BYTES = 2 * 1024 * 1024
_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}


class PreviewKeeper:
    """One per running prompt: stores throttled previews and announces them."""

    def __init__(self, events: JobEventWriter, clock: Clock) -> None:
        self.events = events
        self.previews = PreviewStore(events.store.redis, events.store.keys)
        self.job_id = events.job_id
        self.clock = clock
        self._last_ms: int | None = None
        self._n = 0

    async def offer(self, event: ev.PreviewImage) -> None:
        now = self.clock.now_ms()
        content_type = _TYPES.get(event.image_format.lower())
        if content_type is None or len(event.image) > MAX_PREVIEW_BYTES:
            return
        if self._last_ms is not None and now - self._last_ms < PREVIEW_MIN_INTERVAL_MS:
            return
        self._last_ms = now
        self._n += 1
        await self.previews.put(self.job_id, Preview(event.image, content_type, self._n))
        data = {"n": self._n, "content_type": content_type, "size": len(event.image)}
        # After the preview is stored, so a client told of it can fetch it.
        self.events.add("preview", data)
