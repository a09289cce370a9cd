"""What the node knows about itself and its ComfyUI, kept fresh by the health monitor."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from comfyfleet import __version__
from comfyfleet.comfy import SystemStats
from comfyfleet.models.node import ComfyProcess, NodeInfo, NodeState

if TYPE_CHECKING:
    from comfyfleet.node.worker import Worker

# Model folders reported in the heartbeat for capability routing.
MODEL_FOLDERS = ("checkpoints", "loras", "vae", "controlnet", "upscale_models", "clip")


def inventory_digest(node_classes: list[str], models: dict[str, list[str]]) -> str:
    canonical = orjson.dumps(
        {"classes": sorted(node_classes), "models": {k: sorted(v) for k, v in models.items()}},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()[:16]


@dataclass
class NodeStatus:
    node_id: str
    comfy_url: str
    url: str
    started_ms: int
    comfy_healthy: bool = False
    # The prompt ComfyUI was found hung on (see node/watchdog.py); None: not hung.
    comfy_hung: str | None = None
    stats: SystemStats | None = None
    node_classes: list[str] = field(default_factory=list)
    models: dict[str, list[str]] = field(default_factory=dict)
    digest: str | None = None
    object_info: dict[str, Any] = field(default_factory=dict)
    # The digest whose inventory this node last published (store/inventory.py); the
    # heartbeat publishes again when `digest` differs.
    published_digest: str | None = None
    # The last capability class (its order number, store/routing.py) whose coverage this
    # node recorded for `published_digest`; 0: none yet.
    class_order: int = 0
    # The ComfyUI this node runs itself (node/supervisor.py); None: an external one.
    process: ComfyProcess | None = None
    # This node's clock minus the fleet's (Redis TIME) at the last heartbeat (ms), and
    # whether that is beyond the bound (see node/monitor.py `note_skew`).
    clock_skew_ms: int = 0
    clock_skewed: bool = False
    skewed_beats: int = 0  # heartbeats in a row beyond the bound

    @property
    def can_claim(self) -> bool:
        """ComfyUI answers and is not hung."""
        return self.comfy_healthy and self.comfy_hung is None

    def set_inventory(self, object_info: dict[str, Any], models: dict[str, list[str]]) -> None:
        self.node_classes = sorted(object_info)
        self.object_info = object_info
        self.models = models
        self.digest = inventory_digest(self.node_classes, models)

    def info(self, worker: Worker) -> NodeInfo:
        device = self.stats.devices[0] if self.stats and self.stats.devices else None
        if worker.draining:
            state = NodeState.DRAINING
        elif not self.can_claim:
            state = NodeState.UNHEALTHY
        else:
            state = NodeState.READY
        return NodeInfo(
            node_id=self.node_id,
            state=state,
            url=self.url,
            comfy_url=self.comfy_url,
            comfy_healthy=self.comfy_healthy,
            comfy_version=self.stats.system.comfyui_version if self.stats else None,
            device=device.name if device else None,
            vram_total=device.vram_total if device else None,
            vram_free=device.vram_free if device else None,
            inventory_digest=self.digest,
            node_classes=len(self.node_classes),
            models=self.models,
            pools=list(worker.pools),
            running=len(worker.tasks),
            capacity=worker.capacity,
            started_ms=self.started_ms,
            version=__version__,
            comfy_process=self.process,
            comfy_restarts=self.process.restarts if self.process else 0,
            clock_skew_ms=self.clock_skew_ms,
            clock_skewed=self.clock_skewed,
        )
