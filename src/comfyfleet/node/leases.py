"""Keeping a job's lease alive while the node works on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from comfyfleet.errors import StoreError
from comfyfleet.store.jobs import JobStore
from comfyfleet.tasks import stop

log = structlog.get_logger(__name__)


class LeaseKeeper:
    """Renews one job's lease every third of the lease until stopped.

    If a renewal is refused (the reaper gave the job to someone else, or it was cancelled
    and ended), `on_lost` is called once so the runner stops wasting the GPU on it.
    A Redis outage is not a refusal: renewals are retried on the next tick, and the lease
    only lapses if the outage outlasts it.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        node_id: str,
        *,
        lease_ms: int,
        on_lost: Callable[[], None],
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.node_id = node_id
        self.lease_ms = lease_ms
        self.on_lost = on_lost
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        interval = self.lease_ms / 3000.0
        while True:
            await asyncio.sleep(interval)
            try:
                held = await self.store.renew(self.job_id, self.node_id, lease_ms=self.lease_ms)
            except StoreError as exc:  # Redis unreachable: try again next tick
                log.warning("lease_renew_failed", job_id=self.job_id, error=exc.detail)
                continue
            if not held:
                log.warning("lease_lost", job_id=self.job_id)
                self.on_lost()
                return

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.job_id}")

    async def stop(self) -> None:
        await stop(self._task)
        self._task = None
