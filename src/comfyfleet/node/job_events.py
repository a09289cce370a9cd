"""Writing one attempt's node-side events to the job's log without waiting on each.

ComfyUI sends a burst of frames around every node it runs (`executing`, `executed`,
`progress`): awaiting one XADD per frame put a Redis round trip per frame on the job's
path, in series. Events are taken in order, and whatever piled up while a write was in
flight goes out in the next one, as one pipelined round trip; the order in the log is the
order they were added. `flush` waits until everything added so far is written (or given
up on), so the attempt's end still comes after its events in the log.

Informational, like every node-side event: Redis unable to take them costs the events,
never the attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog

from comfyfleet.errors import StoreError
from comfyfleet.store.jobs import JobStore

log = structlog.get_logger(__name__)


class JobEventWriter:
    """Ordered, batched writes of one job's events; one per attempt."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self._pending: list[tuple[str, Mapping[str, Any]]] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, kind: str, data: Mapping[str, Any]) -> None:
        """Queue an event; it is written with whatever else is pending, in order."""
        self._pending.append((kind, data))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name=f"events-{self.job_id}")

    @property
    def pending(self) -> int:
        """Events added but not yet handed to Redis."""
        return len(self._pending)

    async def flush(self) -> None:
        """Return once every event added so far is written or dropped."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.store.append_events(self.job_id, batch)
            except StoreError as exc:
                log.warning("job_events_dropped", job_id=self.job_id, events=len(batch),
                            error=exc.detail)  # fmt: skip

    async def close(self) -> None:
        """Stop writing (an attempt abandoned without a flush drops what is pending)."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
