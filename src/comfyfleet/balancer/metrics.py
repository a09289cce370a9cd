"""The balancer's `/metrics` (with `--metrics`): fleet-wide numbers read from Redis at
scrape time, so every replica answers the same and none keeps state of its own: counts,
queue depths, nodes, the job latency histograms and ended jobs per workflow
(store/histograms.py), and the alerts firing."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from comfyfleet.alerts.snapshot import SnapshotReader
from comfyfleet.balancer.alerts_api import ALERTS
from comfyfleet.balancer.appkeys import JOBS, NODES
from comfyfleet.balancer.webhooks import WEBHOOKS
from comfyfleet.models.job import DEFAULT_POOL
from comfyfleet.models.node import NodeState
from comfyfleet.store import histograms
from comfyfleet.store.usage import OUTCOMES, UsageStore
from comfyfleet.web.metrics import Collected, Metric, histogram

# Store counters that are not job outcomes are still worth a series; the help says what.
_GAUGES = ("running", "delayed")


async def collect(app: web.Application) -> list[Collected]:
    return [
        *await _counts(app), *await _pools(app), *await _latencies(app), *await _alerts(app),
        *await _usage(app),
    ]  # fmt: skip


async def _usage(app: web.Application) -> list[Collected]:
    """Per owner (bounded by the API keys, plus admin and anonymous), not per workflow too:
    owners x workflows could grow past what a scrape should carry; /api/v1/usage has both."""
    jobs = app[JOBS]
    totals = await UsageStore(jobs.redis, jobs.keys).totals()
    owners = sorted({owner for owner, _ in totals})
    return [
        Metric("comfyfleet_tenant_jobs_total", "counter", "Jobs ended, by owner and outcome.",
               [({"owner": o, "outcome": outcome}, float(totals.get((o, outcome), 0)))
                for o in owners for outcome in OUTCOMES]),
        Metric("comfyfleet_tenant_gpu_seconds_total", "counter",
               "Running time of owners' jobs' attempts on nodes, by owner.",
               [({"owner": o}, totals.get((o, "gpu_ms"), 0) / 1000) for o in owners]),
        Metric("comfyfleet_tenant_queue_seconds_total", "counter",
               "Time owners' jobs spent queued or backing off, by owner.",
               [({"owner": o}, totals.get((o, "queue_ms"), 0) / 1000) for o in owners]),
        Metric("comfyfleet_tenant_output_bytes_total", "counter",
               "Bytes of owners' jobs' outputs, by owner.",
               [({"owner": o}, float(totals.get((o, "output_bytes"), 0))) for o in owners]),
    ]  # fmt: skip


async def _pools(app: web.Application) -> list[Collected]:
    """What the alert rules read, for Prometheus rules to read the same (deploy/prometheus)."""
    store = app[ALERTS]
    snap = await SnapshotReader(store.redis, store.keys, app[NODES]).read(await store.now_ms())
    ready = Counter(p for n in snap.nodes if n.state == NodeState.READY for p in n.pools)
    return [
        Metric("comfyfleet_pool_ready_nodes", "gauge", "Nodes ready to claim, by pool.",
               [({"pool": p}, float(ready.get(p, 0))) for p in sorted(snap.pools)]),
        Metric("comfyfleet_queue_oldest_age_seconds", "gauge",
               "Age of the oldest queued job, by pool (0: none queued).",
               [({"pool": p}, max(0.0, (snap.now_ms - v.oldest_created_ms) / 1000)
                 if v.oldest_created_ms else 0.0) for p, v in sorted(snap.pools.items())]),
        Metric("comfyfleet_redis_used_memory_bytes", "gauge", "Redis used_memory.",
               [({}, float(snap.redis_used_memory))]),
        Metric("comfyfleet_redis_maxmemory_bytes", "gauge", "Redis maxmemory (0: no limit).",
               [({}, float(snap.redis_maxmemory))]),
    ]  # fmt: skip


async def _latencies(app: web.Application) -> list[Collected]:
    jobs = app[JOBS]
    series = await histograms.read(jobs.redis, jobs.keys)
    ended = await histograms.ended(jobs.redis, jobs.keys)
    return [
        *(histogram(spec, series[spec.key]) for spec in histograms.SPECS),
        Metric("comfyfleet_jobs_ended_total", "counter",
               "Jobs ended, by workflow (_graph: a raw graph), pool and status.",
               [({"workflow": wf, "pool": pool, "status": status}, float(n))
                for (wf, pool, status), n in sorted(ended.items())]),
    ]  # fmt: skip


async def _alerts(app: web.Application) -> list[Collected]:
    store = app[ALERTS]
    firing = Counter(
        (s.alertname, s.labels.get("severity", ""))
        for s in (await store.states()).values()
        if s.status == "firing"
    )
    return [
        Metric("comfyfleet_alerts_firing", "gauge", "Alerts firing now, by name and severity.",
               [({"alertname": name, "severity": severity}, float(n))
                for (name, severity), n in sorted(firing.items())]),
        Metric("comfyfleet_alert_notifications_pending", "gauge",
               "Alert notifications waiting to be delivered (or retried).",
               [({}, float(await store.pending()))]),
    ]  # fmt: skip


async def _counts(app: web.Application) -> list[Collected]:
    jobs, registry = app[JOBS], app[NODES]
    stats = await jobs.stats()
    nodes = await registry.all()
    # Pools with jobs waiting (a pool no node serves is what an alert should see), those
    # nodes serve, and the default, so the series stay put while queues are empty.
    waiting = await jobs.queue_depths()
    pools = sorted({DEFAULT_POOL, *waiting, *(pool for node in nodes for pool in node.pools)})
    depths = [({"pool": pool}, float(waiting.get(pool, 0))) for pool in pools]
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
        Metric("comfyfleet_node_comfy_restarts_total", "counter",
               "Times each live node found its ComfyUI restarted (since the node started).",
               [({"node_id": n.node_id}, float(n.comfy_restarts)) for n in alive]),
        Metric("comfyfleet_webhooks_pending", "gauge", "Webhook deliveries not yet done.",
               [({}, float(await app[WEBHOOKS].store.pending()))]),
    ]  # fmt: skip
