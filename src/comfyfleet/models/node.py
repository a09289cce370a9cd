"""What a node reports about itself in its heartbeat. Pure data."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class NodeState(StrEnum):
    READY = "ready"  # claiming jobs
    DRAINING = "draining"  # finishing what it holds, claiming nothing
    UNHEALTHY = "unhealthy"  # its ComfyUI is down or hung; claiming nothing
    LOST = "lost"  # heartbeat lapsed (set by readers, never written by the node)


class ComfyProcess(BaseModel):
    """The ComfyUI a node runs itself (`--comfy-cmd`). Times in ms since the epoch."""

    # starting (launched, not answering yet) | running | backoff (waiting to start again)
    # | stopped (the node is shutting down)
    state: str = "starting"
    pid: int | None = None
    port: int = 0
    starts: int = 0
    restarts: int = 0  # starts after the first: exits, hangs, failed starts
    last_exit: str | None = None  # e.g. "exit code 1", "killed by SIGKILL", "hung"
    last_lines: list[str] = Field(default_factory=list)  # its last output before that
    next_start_ms: int | None = None  # while in backoff


class NodeInfo(BaseModel):
    """A node's heartbeat record. Times in ms since the epoch; sizes in bytes."""

    node_id: str
    state: NodeState = NodeState.READY
    url: str = Field(default="", description="the node's own HTTP API")
    comfy_url: str = ""
    comfy_healthy: bool = False
    comfy_version: str | None = None
    device: str | None = None
    vram_total: int | None = None
    vram_free: int | None = None
    # Digest of the node classes and model files its ComfyUI offers (capability routing).
    inventory_digest: str | None = None
    node_classes: int = 0
    models: dict[str, list[str]] = Field(default_factory=dict)
    pools: list[str] = Field(default_factory=lambda: ["default"])
    running: int = 0
    capacity: int = 1
    # Times the node found its ComfyUI restarted since the node started (0 when it cannot
    # tell); the ComfyRestarting alert reads its growth.
    comfy_restarts: int = 0
    started_ms: int = 0
    last_seen_ms: int = 0
    version: str = ""
    # Set when the node runs its ComfyUI itself; None for an external one (`--comfy-url`).
    comfy_process: ComfyProcess | None = None
    # How far the node's clock is ahead of the fleet's (Redis TIME), measured at its last
    # heartbeat (ms; negative: behind). Reported, never relied on: every time that decides
    # something comes from Redis. `clock_skewed`: beyond the bound (node/monitor.py).
    clock_skew_ms: int = 0
    clock_skewed: bool = False


# One node as the API shows it: the OpenAPI example of both roles.
NODE_INFO_EXAMPLE: dict[str, Any] = {
    "node_id": "gpu-box-1-8101",
    "state": "ready",
    "url": "http://10.0.0.5:8101",
    "comfy_url": "http://127.0.0.1:8188",
    "comfy_healthy": True,
    "comfy_version": "0.3.60",
    "device": "cuda:0 NVIDIA L4",
    "vram_total": 23_580_639_232,
    "vram_free": 20_001_112_064,
    "inventory_digest": "a1b2c3d4e5f6",
    "node_classes": 612,
    "models": {"checkpoints": ["sd_xl_base_1.0.safetensors"]},
    "pools": ["default"],
    "running": 1,
    "capacity": 2,
    "started_ms": 1_760_000_000_000,
    "last_seen_ms": 1_760_000_060_000,
    "version": "0.1.0",
    "comfy_process": {
        "state": "running",
        "pid": 48213,
        "port": 40313,
        "starts": 2,
        "restarts": 1,
        "last_exit": "killed by SIGKILL",
        "last_lines": ["got prompt"],
        "next_start_ms": None,
    },
    "clock_skew_ms": 12,
    "clock_skewed": False,
}
