"""Keeping a job's lease alive while the node works on it, and fencing when it cannot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from comfyfleet.errors import StoreError, StoreFull
from comfyfleet.store.jobs import JobStore
from comfyfleet.tasks import stop

log = structlog.get_logger(__name__)

# After a failed renewal, try again this soon (s) rather than a third of a lease later:
# once Redis is back the lease is confirmed before the reaper's grace runs out.
RETRY_S = 1.0


class LeaseKeeper:
    """Renews one job's lease every third of the lease until stopped.

    If a renewal is refused (the reaper gave the job to someone else, or it was cancelled
    and ended), `on_lost` is called once so the runner stops wasting the GPU on it.

    Fencing: if no renewal has been confirmed by Redis for half the lease (Redis down, or
    this node cut off from it), `on_fenced` is called once and the keeper stops: the lease
    may lapse unseen and the job run elsewhere, so the node must stop the prompt now rather
    than spend GPU time on work nobody will accept. A renewal Redis refuses for lack of
    memory (StoreFull) still confirms the lease: Redis answered, and no one else can change
    anything while it refuses writes.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        node_id: str,
        *,
        lease_ms: int,
        attempt: int = 0,
        on_lost: Callable[[], None],
        on_fenced: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.node_id = node_id
        self.lease_ms = lease_ms
        self.attempt = attempt
        self.on_lost = on_lost
        self.on_fenced = on_fenced
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval, fence_after = self.lease_ms / 3000.0, self.lease_ms / 2000.0
        # The claim itself confirmed the lease just before this keeper started.
        confirmed = loop.time()
        wait = interval
        while True:
            await asyncio.sleep(min(wait, max(0.0, confirmed + fence_after - loop.time())))
            if loop.time() - confirmed >= fence_after:
                self._fence(loop.time() - confirmed)
                return
            sent = loop.time()
            try:
                async with asyncio.timeout(max(0.01, confirmed + fence_after - sent)):
                    held = await self.store.renew(
                        self.job_id, self.node_id, lease_ms=self.lease_ms, attempt=self.attempt
                    )
            except StoreFull as exc:
                log.warning("lease_renew_refused_store_full", job_id=self.job_id, error=exc.detail)
                confirmed, wait = sent, RETRY_S
                continue
            except (StoreError, TimeoutError) as exc:  # Redis unreachable: try again soon
                log.warning("lease_renew_failed", job_id=self.job_id, error=repr(exc))
                wait = RETRY_S
                continue
            if not held:
                log.warning("lease_lost", job_id=self.job_id)
                self.on_lost()
                return
            confirmed, wait = sent, interval

    def _fence(self, unconfirmed_s: float) -> None:
        log.error(
            "lease_fenced", job_id=self.job_id, unconfirmed_s=round(unconfirmed_s, 3),
            lease_ms=self.lease_ms,
        )  # fmt: skip
        self.on_fenced()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.job_id}")

    async def stop(self) -> None:
        await stop(self._task)
        self._task = None
