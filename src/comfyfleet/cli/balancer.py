from __future__ import annotations

from comfyfleet.cli.app import app, not_built


@app.command()
def balancer() -> None:
    """Run the balancer: public job API, scheduling, reaper (port 7999)."""
    not_built("balancer", 4)
