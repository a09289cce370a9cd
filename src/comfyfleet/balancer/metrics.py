"""The balancer's `/metrics` (with `--metrics`): fleet-wide numbers read from Redis at
scrape time, so every replica answers the same and none keeps state of its own."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from comfyfleet.balancer.appkeys import JOBS, NODES
from comfyfleet.balancer.webhooks import WEBHOOKS
from comfyfleet.models.job import DEFAULT_POOL
from comfyfleet.models.node import NodeState
from comfyfleet.web.metrics import Metric

# Store counters that are not job outcomes are still worth a series; the help says what.
_GAUGES = ("running", "delayed")


async def collect(app: web.Application) -> list[Metric]:
    jobs, registry = app[JOBS], app[NODES]
    stats = await jobs.stats()
    nodes = await registry.all()
    # Pools with jobs waiting (a pool no node serves is what an alert should see), those
    # nodes serve, and the default, so the series stay put while queues are empty.
    prefix = jobs.keys.queue("")
    waiting = {
        (key.decode() if isinstance(key, bytes) else key)[len(prefix) :]
        async for key in jobs.redis.scan_iter(match=jobs.keys.queue("*"), count=500)
    }
    pools = sorted({DEFAULT_POOL, *waiting, *(pool for node in nodes for pool in node.pools)})
    depths = [({"pool": pool}, float(await jobs.queue_depth(pool))) for pool in pools]
    states = Counter(node.state.value for node in nodes)
    alive = [n for n in nodes if n.state != NodeState.LOST]
    return [
        Metric("comfyfleet_jobs_total", "counter",
               "Job events since the namespace began, by event (enqueued, claimed, ...).",
               [({"event": k}, float(v)) for k, v in sorted(stats.items()) if k not in _GAUGES]),
        Metric("comfyfleet_jobs_running", "gauge", "Jobs held by a node now.",
               [({}, float(stats["running"]))]),
        Metric("comfyfleet_jobs_delayed", "gauge", "Jobs waiting out a retry backoff.",
               [({}, float(stats["delayed"]))]),
        Metric("comfyfleet_queue_depth", "gauge", "Jobs waiting to be claimed, by pool.",
               depths),
        Metric("comfyfleet_nodes", "gauge", "Registered nodes, by state.",
               [({"state": s.value}, float(states.get(s.value, 0))) for s in NodeState]),
        Metric("comfyfleet_node_running", "gauge", "Jobs each live node is running.",
               [({"node_id": n.node_id}, float(n.running)) for n in alive]),
        Metric("comfyfleet_node_capacity", "gauge", "Jobs each live node can hold at once.",
               [({"node_id": n.node_id}, float(n.capacity)) for n in alive]),
        Metric("comfyfleet_node_comfy_healthy", "gauge", "1 while a node's ComfyUI answers.",
               [({"node_id": n.node_id}, float(n.comfy_healthy)) for n in alive]),
        Metric("comfyfleet_webhooks_pending", "gauge", "Webhook deliveries not yet done.",
               [({}, float(await app[WEBHOOKS].store.pending()))]),
    ]  # fmt: skip
