"""Run an aiohttp app until SIGINT/SIGTERM, then shut it down in order.

A balancer worker (cli/workers.py) listens with SO_REUSEPORT beside its siblings and tells
its supervisor it is listening by writing one byte to an inherited pipe (`ready_fd`).
On SIGTERM the listening socket closes first, then requests in flight get up to
SHUTDOWN_TIMEOUT_S to finish (aiohttp's graceful shutdown), then the app's resources close.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass

import structlog
import typer
from aiohttp import web

from comfyfleet.config import LogConfig
from comfyfleet.errors import ComfyfleetError
from comfyfleet.logs.setup import configure_logging
from comfyfleet.web.metrics import LOGDY_SINK
from comfyfleet.web.server import SHUTDOWN_TIMEOUT_S as SHUTDOWN_TIMEOUT_S  # workers read it here
from comfyfleet.web.server import make_runner

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Listen:
    """Where and how to listen. `reuse_port`: share the port with sibling workers
    (SO_REUSEPORT); `ready_fd`: a pipe to write one byte to once listening (None: none)."""

    host: str
    port: int
    reuse_port: bool = False
    ready_fd: int | None = None


async def _serve(app: web.Application, listen: Listen, banner: str) -> None:
    runner = make_runner(app, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    host, port = listen.host, listen.port
    try:
        site = web.TCPSite(runner, host, port, reuse_port=listen.reuse_port or None)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("listening", url=f"http://{host}:{port}", what=banner)
        typer.echo(f"{banner} listening on http://{host}:{port}", err=True)
        if listen.ready_fd is not None:
            os.write(listen.ready_fd, b"1")
            os.close(listen.ready_fd)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def run_server(
    app: web.Application,
    host: str,
    port: int,
    *,
    banner: str,
    log_cfg: LogConfig,
    role: str,
    node_id: str | None = None,
    reuse_port: bool = False,
    ready_fd: int | None = None,
) -> None:
    """Serve `app` with logging configured for `role`; exit non-zero on a startup error.
    `reuse_port` and `ready_fd`: see `Listen`."""
    listen = Listen(host, port, reuse_port, ready_fd)

    async def main() -> None:
        sink = configure_logging(log_cfg, role=role, node_id=node_id)
        if sink is not None:
            app[LOGDY_SINK] = sink  # its dropped-lines count is a metric
            await sink.start()
        try:
            await _serve(app, listen, banner)
        finally:
            if sink is not None:
                await sink.aclose()

    try:
        asyncio.run(main())
    except ComfyfleetError as exc:
        typer.echo(f"comfyfleet {role}: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as exc:
        typer.echo(f"comfyfleet {role}: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(code=2) from None
