from __future__ import annotations

from comfyfleet.cli.app import app, not_built


@app.command()
def submit() -> None:
    """Submit a job to a balancer, follow its progress and download the outputs."""
    not_built("submit", 4)
