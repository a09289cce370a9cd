"""The reaper: hands back jobs whose lease expired (a node died, hung or lost Redis).

Safe to run in every balancer replica at once: requeue_expired is one atomic script per
batch, so two reapers never requeue the same job twice.
"""

from __future__ import annotations

import asyncio

import structlog

from comfyfleet.store.jobs import JobStore
from comfyfleet.store.nodes import NodeRegistry

log = structlog.get_logger(__name__)

DEFAULT_REAP_INTERVAL_S = 1.0
# A lost node stays listed (as lost) this long, so operators see it, then is forgotten.
FORGET_LOST_AFTER_MS = 10 * 60 * 1000


class Reaper:
    def __init__(
        self, jobs: JobStore, nodes: NodeRegistry, *, interval_s: float = DEFAULT_REAP_INTERVAL_S
    ) -> None:
        self.jobs = jobs
        self.nodes = nodes
        self.interval_s = interval_s

    async def run_once(self) -> list[str]:
        """One pass: requeue every job whose lease expired. Returns their ids."""
        requeued: list[str] = []
        while True:
            batch = await self.jobs.requeue_expired(limit=100)
            requeued += batch
            if len(batch) < 100:
                break
        if requeued:
            log.warning("leases_expired", count=len(requeued), jobs=requeued[:20])
        return requeued

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down: keep trying, the next pass catches up
                log.exception("reaper_pass_failed")
            await asyncio.sleep(self.interval_s)
