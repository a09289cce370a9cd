"""The node's `/metrics` (with `--metrics`): this process's view of itself and its ComfyUI."""

from __future__ import annotations

from aiohttp import web

from comfyfleet.models.node import NodeState
from comfyfleet.node.appkeys import STATE, WORKER
from comfyfleet.web.metrics import Collected, Metric


async def collect(app: web.Application) -> list[Collected]:
    info = app[STATE].info(app[WORKER])
    hung = app[STATE].comfy_hung is not None
    return [
        Metric("comfyfleet_node_state", "gauge", "1 for the node's current state.",
               [({"state": s.value}, float(info.state == s)) for s in NodeState
                if s != NodeState.LOST]),
        Metric("comfyfleet_node_running", "gauge", "Jobs this node is running.",
               [({}, float(info.running))]),
        Metric("comfyfleet_node_capacity", "gauge", "Jobs this node can hold at once.",
               [({}, float(info.capacity))]),
        Metric("comfyfleet_node_comfy_healthy", "gauge", "1 while ComfyUI answers.",
               [({}, float(info.comfy_healthy))]),
        Metric("comfyfleet_node_comfy_hung", "gauge", "1 while ComfyUI is found hung.",
               [({}, float(hung))]),
        Metric("comfyfleet_node_comfy_restarts_total", "counter",
               "Times this node found its ComfyUI restarted since it started.",
               [({}, float(info.comfy_restarts))]),
        Metric("comfyfleet_node_clock_skew_seconds", "gauge",
               "This node's clock minus Redis's at its last heartbeat.",
               [({}, info.clock_skew_ms / 1000)]),
        Metric("comfyfleet_node_clock_skewed", "gauge",
               "1 while the node's clock is beyond the skew bound.",
               [({}, float(info.clock_skewed))]),
        Metric("comfyfleet_node_fenced", "gauge",
               "1 while the node claims nothing after fencing (Redis unconfirmed).",
               [({}, float(app[WORKER].fenced))]),
        Metric("comfyfleet_node_fenced_total", "counter",
               "Attempts this node stopped because Redis did not confirm their lease for "
               "half of it, since it started.",
               [({}, float(app[WORKER].fenced_total))]),
        Metric("comfyfleet_node_vram_free_bytes", "gauge", "Free VRAM of the first device.",
               [({}, float(info.vram_free))] if info.vram_free is not None else []),
    ]  # fmt: skip
