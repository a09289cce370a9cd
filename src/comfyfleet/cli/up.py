from __future__ import annotations

from comfyfleet.cli.app import app, not_built


@app.command()
def up() -> None:
    """Start a whole fleet on this machine: Redis, balancer, nodes, simulated ComfyUIs."""
    not_built("up", 4)
