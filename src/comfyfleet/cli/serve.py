"""Run an aiohttp app until SIGINT/SIGTERM, then shut it down in order."""

from __future__ import annotations

import asyncio
import signal

import structlog
import typer
from aiohttp import web

from comfyfleet.config import LogConfig
from comfyfleet.errors import ComfyfleetError
from comfyfleet.logs.setup import configure_logging
from comfyfleet.web.metrics import LOGDY_SINK

log = structlog.get_logger(__name__)

SHUTDOWN_TIMEOUT_S = 30.0


async def _serve(app: web.Application, host: str, port: int, banner: str) -> None:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("listening", url=f"http://{host}:{port}", what=banner)
        typer.echo(f"{banner} listening on http://{host}:{port}", err=True)
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
) -> None:
    """Serve `app` with logging configured for `role`; exit non-zero on a startup error."""

    async def main() -> None:
        sink = configure_logging(log_cfg, role=role, node_id=node_id)
        if sink is not None:
            app[LOGDY_SINK] = sink  # its dropped-lines count is a metric
            await sink.start()
        try:
            await _serve(app, host, port, banner)
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
