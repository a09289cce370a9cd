"""`comfyfleet sim`: run the ComfyUI stand-in (every option has an env-var twin)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from aiohttp import web

from comfyfleet.cli.app import app
from comfyfleet.config import SimConfig, parse_models
from comfyfleet.errors import ComfyfleetError


def _opt(flag: str, env: str, text: str) -> typer.models.OptionInfo:
    option: typer.models.OptionInfo = typer.Option(flag, envvar=env, help=text)
    return option


@app.command()
def sim(
    host: Annotated[
        str,
        typer.Option(
            "--host", "--listen", envvar="SIM_HOST", help="Bind address (--listen: ComfyUI's name)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, _opt("--port", "SIM_PORT", "HTTP port (0: any free port).")] = 8188,
    node_ms: Annotated[float, _opt("--node-ms", "SIM_NODE_MS", "Time per node, ms.")] = 5.0,
    step_ms: Annotated[float, _opt("--step-ms", "SIM_STEP_MS", "Time per sampler step, ms.")] = 2.0,
    models: Annotated[
        list[str] | None,
        _opt(
            "--models",
            "SIM_MODELS",
            "FOLDER=FILE[,FILE...] (repeatable), e.g. checkpoints=a.safetensors.",
        ),
    ] = None,
    extra_class: Annotated[
        list[str] | None,
        _opt(
            "--extra-class",
            "SIM_EXTRA_CLASS",
            "Offer a node class the built-ins lack; it passes its IMAGE through (repeatable).",
        ),
    ] = None,
    without_class: Annotated[
        list[str] | None,
        _opt(
            "--without-class", "SIM_WITHOUT_CLASS", "Leave out a built-in node class (repeatable)."
        ),
    ] = None,
    data_dir: Annotated[
        str | None, _opt("--data-dir", "SIM_DATA_DIR", "Folder for input/output/temp.")
    ] = None,
    fail_node_type: Annotated[
        list[str] | None,
        _opt("--fail-node-type", "SIM_FAIL_NODE_TYPE", "Fail nodes of this class (repeatable)."),
    ] = None,
    reject_prompts: Annotated[
        int,
        _opt(
            "--reject-prompts",
            "SIM_REJECT_PROMPTS",
            "Answer 500 to the next N POST /prompt (-1: all).",
        ),
    ] = 0,
    stall_after_nodes: Annotated[
        int | None,
        _opt(
            "--stall-after-nodes",
            "SIM_STALL_AFTER_NODES",
            "Stall (no frames, no execution) after N executed nodes.",
        ),
    ] = None,
    stall_ms: Annotated[
        float, _opt("--stall-ms", "SIM_STALL_MS", "Stall length, ms (0: until resumed).")
    ] = 0.0,
    drop_ws_after_nodes: Annotated[
        int | None,
        _opt(
            "--drop-ws-after-nodes",
            "SIM_DROP_WS_AFTER_NODES",
            "Close every websocket after N executed nodes.",
        ),
    ] = None,
    die_after_nodes: Annotated[
        int | None,
        _opt(
            "--die-after-nodes",
            "SIM_DIE_AFTER_NODES",
            "Exit the process abruptly after N executed nodes.",
        ),
    ] = None,
) -> None:
    """Run a ComfyUI stand-in that speaks the recorded protocol (port 8188)."""
    from comfyfleet.sim import create_app

    try:
        cfg = SimConfig(
            host=host,
            port=port,
            node_ms=node_ms,
            step_ms=step_ms,
            models=parse_models(_split(models)),
            extra_classes=tuple(_split(extra_class)),
            without_classes=tuple(_split(without_class)),
            data_dir=data_dir,
            fail_node_types=tuple(_split(fail_node_type)),
            reject_prompts=reject_prompts,
            stall_after_nodes=stall_after_nodes,
            stall_ms=stall_ms,
            drop_ws_after_nodes=drop_ws_after_nodes,
            die_after_nodes=die_after_nodes,
            echo_logs=True,
        )
    except (ComfyfleetError, ValueError) as exc:
        typer.echo(f"comfyfleet sim: {exc}", err=True)
        raise typer.Exit(code=2) from None
    try:
        asyncio.run(_serve(create_app(cfg), host, port))
    except OSError as exc:
        typer.echo(f"comfyfleet sim: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(code=2) from None


def _split(values: list[str] | None) -> list[str]:
    """Repeated options, where the env-var twin may hold several values separated by ';'."""
    return [part for value in values or [] for part in value.split(";") if part.strip()]


async def _serve(application: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(application, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = port
        if port == 0 and runner.addresses:
            bound = runner.addresses[0][1]
        # The one line scripts and tests wait for: where the stand-in listens.
        typer.echo(f"comfyfleet sim listening on http://{host}:{bound}", err=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
