"""What a node reports about itself in its heartbeat. Pure data."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class NodeState(StrEnum):
    READY = "ready"  # claiming jobs
    DRAINING = "draining"  # finishing what it holds, claiming nothing
    UNHEALTHY = "unhealthy"  # its ComfyUI is down or hung; claiming nothing
    LOST = "lost"  # heartbeat lapsed (set by readers, never written by the node)


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
    started_ms: int = 0
    last_seen_ms: int = 0
    version: str = ""
