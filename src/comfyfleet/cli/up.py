from __future__ import annotations

import secrets
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.cli.fleet import Fleet, FleetSpec
from comfyfleet.errors import ComfyfleetError


@app.command()
def up(
    host: opt.Host = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", envvar="BALANCER_PORT", help="Balancer port.")
    ] = 7999,
    nodes: Annotated[
        int, typer.Option("--nodes", envvar="FLEET_NODES", min=1, max=32, help="Nodes to run.")
    ] = 2,
    comfy_url: Annotated[
        list[str] | None,
        typer.Option(
            "--comfy-url",
            envvar="COMFY_URLS",
            help="A real ComfyUI for a node (repeatable); none: one stand-in per node.",
        ),
    ] = None,
    comfy_cmd: Annotated[
        str | None,
        typer.Option(
            "--comfy-cmd",
            envvar="COMFY_CMD",
            help="Each node runs and supervises its own ComfyUI with this command (see "
            "`comfyfleet node --comfy-cmd`); none: one stand-in per node.",
        ),
    ] = None,
    first_node_port: Annotated[
        int, typer.Option("--node-port", envvar="NODE_PORT", help="First node's port.")
    ] = 8101,
    redis_url: opt.RedisUrl = None,
    namespace: opt.Namespace = "comfyfleet",
    username: opt.Username = None,
    password: opt.Password = None,
    node_ms: Annotated[
        float, typer.Option("--node-ms", envvar="SIM_NODE_MS", help="Stand-in ms per node.")
    ] = 20.0,
    step_ms: Annotated[
        float, typer.Option("--step-ms", envvar="SIM_STEP_MS", help="Stand-in ms per step.")
    ] = 10.0,
    anonymous_from: Annotated[
        list[str] | None,
        typer.Option(
            "--anonymous-from",
            envvar="BALANCER_ANONYMOUS_FROM",
            help="Passed to the balancer: networks (CIDR) served without credentials as "
            "'anonymous', for ComfyUI clients that cannot send them; repeatable.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", envvar="FLEET_DATA_DIR", help="Logs and Redis data (temp)."),
    ] = None,
) -> None:
    """Start a whole fleet on this machine: Redis, balancer, nodes, simulated ComfyUIs."""
    user = username or "comfy"
    secret = password or secrets.token_urlsafe(18)
    spec = FleetSpec(
        nodes=max(nodes, len(comfy_url or [])),
        host=host,
        balancer_port=port,
        first_node_port=first_node_port,
        comfy_urls=list(comfy_url or []),
        comfy_cmd=comfy_cmd,
        redis_url=redis_url,
        namespace=namespace,
        username=user,
        password=secret,
        node_ms=node_ms,
        step_ms=step_ms,
        data_dir=data_dir,
        balancer_args=[arg for net in anonymous_from or [] for arg in ("--anonymous-from", net)],
    )
    stop = threading.Event()
    # A closed terminal (SIGHUP) stops the fleet in order too; a hard death of this process
    # takes the children with it (cli/fleet.py).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with Fleet(spec) as fleet:
            _banner(fleet, user, secret, generated=password is None)
            stop.wait()
            typer.echo("stopping the fleet ...", err=True)
    except ComfyfleetError as exc:
        typer.echo(f"comfyfleet up: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None


def _banner(fleet: Fleet, user: str, secret: str, *, generated: bool) -> None:
    lines = [
        "comfyfleet is up",
        f"  balancer   {fleet.balancer_url}",
        *(f"  {n.name:<10} {fleet.node_url(i)}" for i, n in enumerate(fleet.nodes)),
        *(f"  {s.name:<10} {s.health_url.removesuffix('/system_stats')}" for s in fleet.sims),
        f"  redis      {fleet.redis_url}",
        f"  user       {user}",
        f"  password   {secret}"
        + ("   (generated; set API_PASSWORD to choose)" if generated else ""),
        f"  logs       {fleet.dir}",
        "Press Ctrl-C to stop.",
    ]
    typer.echo("\n".join(lines))
