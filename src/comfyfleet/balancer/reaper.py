"""The reaper: takes back jobs whose node stopped working on them.

Two ways a job comes back, both one atomic script per step:
- its node is lost (no heartbeat for the lost bound, 6 s by default): the node is marked
  lost and every job it holds is requeued at once (`JobStore.reap_node`), without waiting
  out the leases -- a node killed mid-job costs seconds, not a lease;
- its lease expired (the node is alive but stopped renewing: hung, or cut off from Redis
  longer than a lease): `JobStore.requeue_expired`.
A requeued job avoids the node it left; a job out of attempts fails with its history.
Nodes lost for long are then forgotten, and, once a minute, the inventories no registered
node has had for an hour are dropped (`InventoryStore.sweep`).

Safe to run in every balancer replica at once: each step is atomic, so two reapers never
take a job back twice, and exactly one of them reports a node as newly lost.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from comfyfleet.errors import StoreError
from comfyfleet.models.retry import Backoff
from comfyfleet.store.inventory import UNUSED_KEEP_MS, InventoryStore
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.tasks import Pacer

log = structlog.get_logger(__name__)

DEFAULT_REAP_INTERVAL_S = 1.0
# Longest pause between passes while Redis keeps failing (ms); doubles from the interval.
MAX_BACKOFF_MS = 10_000
# A lost node stays listed (as lost) this long, so operators see it, then is forgotten (ms).
FORGET_LOST_AFTER_MS = 10 * 60 * 1000
# How often unused inventories are looked for (ms, the fleet's clock).
INVENTORY_SWEEP_MS = 60 * 1000
BATCH = 100


@dataclass
class ReapResult:
    """What one pass did: job ids whose lease expired, job ids taken from lost nodes, and
    the nodes this pass newly marked lost."""

    expired: list[str] = field(default_factory=list)
    taken_back: list[str] = field(default_factory=list)
    lost_nodes: list[str] = field(default_factory=list)

    @property
    def jobs(self) -> list[str]:
        return self.expired + self.taken_back


class Reaper:
    def __init__(
        self,
        jobs: JobStore,
        nodes: NodeRegistry,
        *,
        interval_s: float = DEFAULT_REAP_INTERVAL_S,
        forget_after_ms: int = FORGET_LOST_AFTER_MS,
        inventory_keep_ms: int = UNUSED_KEEP_MS,
    ) -> None:
        self.jobs = jobs
        self.nodes = nodes
        self.interval_s = interval_s
        self.forget_after_ms = forget_after_ms
        self.inventories = InventoryStore(jobs.redis, jobs.keys)
        self.inventory_keep_ms = inventory_keep_ms
        self._inventories_swept_ms: int | None = None
        # After this reaper could not reach Redis (or Redis refused writes, being full),
        # nodes could not write either: their heartbeats and lease renewals are stale
        # through no fault of theirs. So nothing is reaped -- lost nodes nor expired
        # leases -- until one lost bound after Redis answers again (ms, the fleet's clock).
        self._outage = False
        self.grace_until_ms = 0

    def outage_seen(self) -> None:
        """Redis was unreachable or full: give nodes one lost bound to write again."""
        self._outage = True

    async def run_once(self) -> ReapResult:
        """One pass: lost nodes first (their jobs come back without waiting for leases),
        then expired leases, then forget nodes lost for long. For tests, one step."""
        result = ReapResult()
        now = await self.nodes.now_ms()
        if self._outage:
            self._outage, self.grace_until_ms = False, now + self.nodes.lost_after_ms
            log.info("reaper_grace", until_ms=self.grace_until_ms)
        if now < self.grace_until_ms:
            return result
        for node_id in await self.nodes.lost_nodes():
            marked, ids = await self.jobs.reap_node(node_id, lost_after_ms=self.nodes.lost_after_ms)
            if marked:
                result.lost_nodes.append(node_id)
                log.warning("node_lost", lost_node=node_id, jobs=ids[:20], count=len(ids))
            elif ids:
                log.warning("lost_node_jobs_taken_back", lost_node=node_id, jobs=ids[:20])
            result.taken_back += ids
        while True:
            batch = await self.jobs.requeue_expired(limit=BATCH)
            result.expired += batch
            if len(batch) < BATCH:
                break
        if result.expired:
            log.warning("leases_expired", count=len(result.expired), jobs=result.expired[:20])
        await self._forget_long_lost(now)
        await self._sweep_inventories(now)
        return result

    async def _forget_long_lost(self, now: int) -> None:
        for node_id, since_ms in (await self.nodes.marked_lost()).items():
            if now - since_ms >= self.forget_after_ms:
                await self.nodes.forget(node_id)
                log.info("lost_node_forgotten", lost_node=node_id)

    async def _sweep_inventories(self, now: int) -> None:
        last = self._inventories_swept_ms
        if last is not None and now - last < INVENTORY_SWEEP_MS:
            return
        self._inventories_swept_ms = now
        in_use = {n.inventory_digest for n in await self.nodes.all() if n.inventory_digest}
        for digest in await self.inventories.sweep(in_use, now, self.inventory_keep_ms):
            log.info("inventory_dropped", digest=digest)

    async def run(self) -> None:
        """Pass every `interval_s` s; while Redis fails, back off (doubling, capped) and
        carry on when it answers again."""
        backoff = Backoff(int(self.interval_s * 1000), MAX_BACKOFF_MS, jitter=False)
        pacer = Pacer(backoff)
        while True:
            try:
                await self.run_once()
                pacer.reset()
            except StoreError as exc:  # Redis down or restarting: the next pass catches up
                log.warning("reaper_pass_failed", error=exc.detail, retry_in_s=pacer.delay_s)
                self.outage_seen()
                await pacer.sleep()
                continue
            await asyncio.sleep(self.interval_s)
