"""The `comfyfleet` command. Each sub-command lives in its own module and registers itself
on `app`; only this package wires roles together."""

from __future__ import annotations

from comfyfleet.cli import (  # noqa: F401  (registration)
    alerts,
    apikey,
    balancer,
    mcp,
    node,
    sim,
    submit,
    up,
    version,
    workflow,
)
from comfyfleet.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
