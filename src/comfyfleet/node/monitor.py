"""Background loops of a node: ComfyUI health, heartbeats (with drain requests and missed
cancels), and the cancel listener."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from comfyfleet.comfy import ComfyClient
from comfyfleet.errors import ComfyfleetError, StoreError
from comfyfleet.models.capability import covers
from comfyfleet.models.job import ANY_CAPABILITY
from comfyfleet.node.state import MODEL_FOLDERS, NodeStatus
from comfyfleet.node.worker import Worker
from comfyfleet.store.events import Subscription
from comfyfleet.store.inventory import InventoryStore
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.store.routing import CapabilityStore

log = structlog.get_logger(__name__)

HEALTH_INTERVAL_S = 2.0
# A node whose clock is further than this from the fleet's (Redis TIME) says so loudly (ms).
# Nothing depends on its clock for correctness; a skewed clock still hints at a broken
# time sync that will confuse whoever reads its logs.
MAX_CLOCK_SKEW_MS = 2_000
# While skewed, the warning is repeated every this many heartbeats.
SKEW_REPEAT_BEATS = 30


async def check_health(comfy: ComfyClient, status: NodeStatus, worker: Worker) -> bool:
    """One probe of ComfyUI. On recovery, re-read its inventory (it may have changed)."""
    try:
        status.stats = await comfy.system_stats()
        if not status.comfy_healthy:
            object_info = await comfy.object_info()
            models: dict[str, list[str]] = {}
            folders = await comfy.models()
            for folder in MODEL_FOLDERS:
                if folder in folders:
                    models[folder] = await comfy.models(folder)
            status.set_inventory(object_info, models)
            log.info("comfy_healthy", classes=len(status.node_classes), digest=status.digest)
        healthy = True
    except ComfyfleetError as exc:
        if status.comfy_healthy:
            log.warning("comfy_unhealthy", error=str(exc))
        healthy = False
    changed = healthy != status.comfy_healthy
    status.comfy_healthy = healthy
    if changed:
        worker.poke()
    return healthy


async def health_loop(
    comfy: ComfyClient, status: NodeStatus, worker: Worker, wake: asyncio.Event | None = None
) -> None:
    """Probe every HEALTH_INTERVAL_S, or at once when `wake` is set (a ComfyUI the node
    runs itself just answered: read its inventory now, not up to 2 s later)."""
    wake = wake or asyncio.Event()
    while True:
        await check_health(comfy, status, worker)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), HEALTH_INTERVAL_S)
        wake.clear()


async def beat_once(
    registry: NodeRegistry, store: JobStore, status: NodeStatus, worker: Worker
) -> None:
    """Write the heartbeat; apply a drain/resume request; catch cancels pub/sub missed."""
    wanted = await registry.drain_requested(status.node_id)
    if wanted is True and not worker.draining:
        log.info("drain_requested")
        worker.draining = True
        worker.poke()
    elif wanted is False and worker.draining:
        log.info("resume_requested")
        worker.resume()
    inventories = InventoryStore(registry.redis, registry.keys)
    await publish_inventory(inventories, status)
    await cover_classes(CapabilityStore(registry.redis, registry.keys, inventories), status, worker)
    beat = await registry.heartbeat(status.info(worker))
    worker.store_reached()
    note_skew(status, beat.skew_ms)
    if beat.inventory_missing and status.digest == status.published_digest:
        # Dropped while this node was away (lost long enough to be forgotten): publish it
        # and cover every class anew at the next beat; till then it claims jobs any node
        # can run.
        log.warning("inventory_dropped_republishing", digest=status.digest)
        status.published_digest = None
        worker.digest = None
    for job_id in list(worker.controls):
        job = await store.get(job_id)
        if job is not None and job.cancel_requested:
            worker.cancel(job_id)


async def publish_inventory(inventories: InventoryStore, status: NodeStatus) -> None:
    """Publish this node's inventory when its digest is new to this process (the store keeps
    one copy per digest), before the heartbeat that names the digest."""
    if status.digest is None or status.digest == status.published_digest:
        return
    await inventories.publish(status.digest, status.object_info, status.models)
    status.published_digest = status.digest
    log.info("inventory_published", digest=status.digest, classes=len(status.node_classes))


async def cover_classes(capabilities: CapabilityStore, status: NodeStatus, worker: Worker) -> None:
    """Record which capability classes listed since the last look this node's inventory
    covers (all of them after a new digest), then claim by that digest: from then on the
    node sees queued jobs of those classes."""
    digest = status.published_digest
    if digest is None:
        return
    fresh = worker.digest != digest
    if fresh:
        status.class_order = 0  # a new inventory: every class is new to it
    listed = await capabilities.listed_since(status.class_order)
    mine = [c.class_id for c in listed if covers(status.object_info, c.requirement)]
    if fresh:
        mine.append(ANY_CAPABILITY)  # jobs queued without a requirement: any node runs them
    if mine:
        await capabilities.cover(digest, mine, worker.pools)
    if listed:
        status.class_order = listed[-1].order
    if fresh:
        worker.digest = digest
        log.info("routing_ready", digest=digest, classes=len(mine))
        worker.poke()
    elif mine:
        worker.poke()


def note_skew(status: NodeStatus, skew_ms: int) -> None:
    """Record how far this node's clock is from the fleet's; log an error while it is
    beyond MAX_CLOCK_SKEW_MS (when it starts, then every SKEW_REPEAT_BEATS beats)."""
    skewed = abs(skew_ms) > MAX_CLOCK_SKEW_MS
    if skewed and (not status.clock_skewed or status.skewed_beats % SKEW_REPEAT_BEATS == 0):
        log.error(
            "clock_skew", skew_ms=skew_ms, bound_ms=MAX_CLOCK_SKEW_MS,
            detail="this node's clock differs from Redis's; leases, deadlines and liveness "
            "use Redis's clock, so work goes on, but the host's time sync is broken",
        )  # fmt: skip
    elif not skewed and status.clock_skewed:
        log.info("clock_skew_resolved", skew_ms=skew_ms)
    status.skewed_beats = status.skewed_beats + 1 if skewed else 0
    status.clock_skew_ms, status.clock_skewed = skew_ms, skewed


async def heartbeat_loop(
    registry: NodeRegistry, store: JobStore, status: NodeStatus, worker: Worker
) -> None:
    while True:
        try:
            await beat_once(registry, store, status, worker)
        except StoreError as exc:  # Redis down: the next beat tries again
            log.warning("heartbeat_failed", error=exc.detail)
        await asyncio.sleep(registry.heartbeat_ms / 1000)


async def cancel_listener(store: JobStore, keys: Keys, worker: Worker) -> None:
    """Relay cancel requests published by the balancer to the jobs this node holds. A
    message lost while the subscription is down is caught by the heartbeat's look at
    `cancel_requested`."""

    def relay(job_id: str) -> None:
        if worker.cancel(job_id):
            log.info("cancel_received", job_id=job_id)

    await Subscription(store.redis, keys.cancel_channel, relay).run()
