from __future__ import annotations

from typing import Annotated

import typer

from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.config import BalancerConfig


@app.command()
def balancer(
    host: opt.Host = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", envvar=["BALANCER_PORT", "SERVICE_PORT"], help="HTTP port.")
    ] = 7999,
    redis_url: opt.RedisUrl = None,
    redis_host: opt.RedisHost = None,
    redis_port: opt.RedisPort = None,
    redis_password: opt.RedisPassword = None,
    redis_db: opt.RedisDb = None,
    namespace: opt.Namespace = "comfyfleet",
    username: opt.Username = None,
    password: opt.Password = None,
    insecure: opt.Insecure = False,
    workflows_dir: Annotated[
        str | None,
        typer.Option(
            "--workflows-dir", envvar="WORKFLOWS_DIR", help="Extra folder of workflows to publish."
        ),
    ] = None,
    logdy: opt.Logdy = None,
    log_level: opt.LogLevel = "info",
) -> None:
    """Run the balancer: public job API, scheduling, reaper (port 7999)."""
    from comfyfleet.balancer.app import create_app
    from comfyfleet.cli.serve import run_server

    cfg = BalancerConfig(
        server=opt.server_config(host, port, username, password, insecure),
        redis=opt.redis_config(
            redis_url, redis_host, redis_port, redis_password, redis_db, namespace
        ),
        log=opt.log_config(log_level, logdy),
        workflows_dir=workflows_dir,
    )
    run_server(
        opt.build(create_app, cfg, "balancer"),
        host,
        port,
        banner="balancer",
        log_cfg=cfg.log,
        role="balancer",
    )
