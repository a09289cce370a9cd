"""The alert rules: pure functions from a snapshot of the fleet to the conditions that hold.

Each rule reads a `Snapshot` (what alerts/snapshot.py read from Redis this round) and the
`Counters` of an earlier round (for rates over a window), and returns `Active` conditions
with their labels and a human summary. The `for` duration, firing and resolving are the
state machine's business (alerts/state.py), not the rules'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from comfyfleet.alerts.config import FAILURE_RATIO_MIN_JOBS, AlertsConfig, Rule
from comfyfleet.alerts.model import Active
from comfyfleet.models.node import NodeInfo, NodeState

# Counter names in `Counters.values` (flat, so a sample is one small JSON object).
RETRIED = "retried"


def ended_key(workflow: str, status: str) -> str:
    return f"ended\x1f{workflow}\x1f{status}"


def restarts_key(node_id: str) -> str:
    return f"restarts\x1f{node_id}"


@dataclass(frozen=True)
class Counters:
    """Cumulative counters at `at_ms`: retries, ended jobs per workflow and status, ComfyUI
    restarts per node. Rates over a window are differences of two of these."""

    at_ms: int
    values: Mapping[str, int] = field(default_factory=dict)

    def since(self, earlier: Counters, key: str) -> int:
        """Growth of `key` since `earlier`; a counter that went down (a node restarted and
        counts from 0 again, the stats were reset) counts from 0."""
        now, then = self.values.get(key, 0), earlier.values.get(key, 0)
        return now - then if now >= then else now


@dataclass(frozen=True)
class PoolView:
    """A pool's queue: jobs waiting, and when the oldest of them was submitted (ms; 0:
    none seen)."""

    depth: int
    oldest_created_ms: int = 0


@dataclass(frozen=True)
class Snapshot:
    """The fleet at `now_ms` (Redis's clock). `nodes` include lost ones (state LOST);
    `redis_maxmemory` 0 means no limit."""

    now_ms: int
    nodes: tuple[NodeInfo, ...]
    pools: Mapping[str, PoolView]
    counters: Counters
    webhooks_pending: int = 0
    redis_used_memory: int = 0
    redis_maxmemory: int = 0
    # Nodes with a NodeLost alert already: one the reaper has since forgotten (lost for
    # 10 min) stays lost until a node with its id heartbeats again.
    lost_before: frozenset[str] = frozenset()


def _labels(name: str, rule: Rule, **extra: str) -> dict[str, str]:
    return {"alertname": name, "severity": rule.severity, **extra}


def node_lost(snap: Snapshot, rule: Rule, _: Counters) -> list[Active]:
    out = [
        Active(_labels("NodeLost", rule, node_id=n.node_id),
               f"node {n.node_id} stopped heartbeating "
               f"({(snap.now_ms - n.last_seen_ms) / 1000:.0f} s ago); its jobs were requeued",
               (snap.now_ms - n.last_seen_ms) / 1000)
        for n in snap.nodes if n.state == NodeState.LOST
    ]  # fmt: skip
    listed = {n.node_id for n in snap.nodes}
    out += [Active(_labels("NodeLost", rule, node_id=node_id),
                   f"node {node_id} stopped heartbeating long ago and has not come back")
            for node_id in sorted(snap.lost_before - listed)]  # fmt: skip
    return out


def node_unhealthy(snap: Snapshot, rule: Rule, _: Counters) -> list[Active]:
    return [
        Active(_labels("NodeUnhealthy", rule, node_id=n.node_id),
               f"node {n.node_id}: ComfyUI at {n.comfy_url or '?'} is down or hung")
        for n in snap.nodes if n.state == NodeState.UNHEALTHY
    ]  # fmt: skip


def pool_without_ready_node(snap: Snapshot, rule: Rule, _: Counters) -> list[Active]:
    ready = {p for n in snap.nodes if n.state == NodeState.READY for p in n.pools}
    return [
        Active(_labels("PoolWithoutReadyNode", rule, pool=pool),
               f"pool {pool} has {view.depth} queued job(s) and no ready node", view.depth)
        for pool, view in sorted(snap.pools.items()) if view.depth > 0 and pool not in ready
    ]  # fmt: skip


def queue_wait_high(snap: Snapshot, rule: Rule, _: Counters) -> list[Active]:
    out = []
    for pool, view in sorted(snap.pools.items()):
        waited_s = (snap.now_ms - view.oldest_created_ms) / 1000
        if view.depth > 0 and view.oldest_created_ms and waited_s > rule.threshold:
            out.append(Active(_labels("QueueWaitHigh", rule, pool=pool),
                              f"the oldest queued job of pool {pool} has waited "
                              f"{waited_s:.0f} s (threshold {rule.threshold:.0f} s)",
                              waited_s))  # fmt: skip
    return out


def failure_ratio_high(snap: Snapshot, rule: Rule, base: Counters) -> list[Active]:
    now = snap.counters
    workflows = {k.split("\x1f")[1] for k in now.values if k.startswith("ended\x1f")}
    out = []
    for wf in sorted(workflows):
        ended = {s: now.since(base, ended_key(wf, s)) for s in ("succeeded", "failed")}
        total = ended["succeeded"] + ended["failed"]
        if total >= FAILURE_RATIO_MIN_JOBS and ended["failed"] / total > rule.threshold:
            ratio = ended["failed"] / total
            out.append(Active(_labels("JobFailureRatioHigh", rule, workflow=wf),
                              f"{ended['failed']} of {total} jobs of workflow {wf} failed "
                              f"in the last {_span_s(snap, base):.0f} s ({ratio:.0%})",
                              ratio))  # fmt: skip
    return out


def retries_high(snap: Snapshot, rule: Rule, base: Counters) -> list[Active]:
    span_s = _span_s(snap, base)
    if span_s <= 0:
        return []
    per_minute = snap.counters.since(base, RETRIED) * 60 / span_s
    if per_minute <= rule.threshold:
        return []
    return [Active(_labels("RetriesHigh", rule),
                   f"{per_minute:.1f} job retries per minute over the last {span_s:.0f} s "
                   f"(threshold {rule.threshold:g})", per_minute)]  # fmt: skip


def webhooks_backlog(snap: Snapshot, rule: Rule, _: Counters) -> list[Active]:
    if snap.webhooks_pending <= rule.threshold:
        return []
    return [Active(_labels("WebhooksBacklog", rule),
                   f"{snap.webhooks_pending} webhook deliveries waiting "
                   f"(threshold {rule.threshold:g}); a receiver may be down",
                   snap.webhooks_pending)]  # fmt: skip


def redis_memory_high(snap: Snapshot, rule: Rule, _: Counters) -> list[Active]:
    if not snap.redis_maxmemory:
        return []
    used = snap.redis_used_memory / snap.redis_maxmemory
    if used <= rule.threshold:
        return []
    summary = (f"Redis uses {used:.0%} of maxmemory "
               f"({snap.redis_used_memory} of {snap.redis_maxmemory} bytes)")  # fmt: skip
    return [Active(_labels("RedisMemoryHigh", rule), summary, used)]


def comfy_restarting(snap: Snapshot, rule: Rule, base: Counters) -> list[Active]:
    out = []
    for node in snap.nodes:
        if node.state == NodeState.LOST:
            continue
        restarts = snap.counters.since(base, restarts_key(node.node_id))
        if restarts > rule.threshold:
            out.append(Active(_labels("ComfyRestarting", rule, node_id=node.node_id),
                              f"ComfyUI of node {node.node_id} restarted {restarts} times "
                              f"in the last {_span_s(snap, base):.0f} s", restarts))  # fmt: skip
    return out


def _span_s(snap: Snapshot, base: Counters) -> float:
    return (snap.counters.at_ms - base.at_ms) / 1000


RuleFn = Callable[[Snapshot, Rule, Counters], list[Active]]
RULES: dict[str, RuleFn] = {
    "NodeLost": node_lost,
    "NodeUnhealthy": node_unhealthy,
    "PoolWithoutReadyNode": pool_without_ready_node,
    "QueueWaitHigh": queue_wait_high,
    "JobFailureRatioHigh": failure_ratio_high,
    "RetriesHigh": retries_high,
    "WebhooksBacklog": webhooks_backlog,
    "RedisMemoryHigh": redis_memory_high,
    "ComfyRestarting": comfy_restarting,
}


def evaluate(
    snap: Snapshot, cfg: AlertsConfig, baseline: Callable[[float], Counters]
) -> list[Active]:
    """Every enabled rule's conditions. `baseline(window_s)` gives the counters of the
    round closest to `window_s` ago (or the oldest kept) for the windowed rules."""
    out: list[Active] = []
    for name, fn in RULES.items():
        rule = cfg.rule(name)
        if rule.enabled:
            out += fn(snap, rule, baseline(rule.window_s))
    return out
