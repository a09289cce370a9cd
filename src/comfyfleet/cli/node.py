from __future__ import annotations

from typing import Annotated

import typer

from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.config import (
    DEFAULT_EVENTS_GRACE_MS,
    DEFAULT_REDIS_POOL_SIZE,
    DEFAULT_REDIS_POOL_TIMEOUT_S,
    NodeConfig,
)


@app.command()
def node(
    comfy_url: Annotated[
        str, typer.Option("--comfy-url", envvar="COMFY_URL", help="The ComfyUI this node drives.")
    ] = "http://127.0.0.1:8188",
    comfy_cmd: Annotated[
        str | None,
        typer.Option(
            "--comfy-cmd",
            envvar="COMFY_CMD",
            help="Run ComfyUI as this node's child with this command (e.g. \"python main.py "
            '--disable-auto-launch"); it gets --listen 127.0.0.1 --port P unless it says '
            "{port}. Restarted when it exits or hangs; --comfy-url is then ignored.",
        ),
    ] = None,
    comfy_dir: Annotated[
        str | None,
        typer.Option("--comfy-dir", envvar="COMFY_DIR", help="Working directory of --comfy-cmd."),
    ] = None,
    comfy_start_timeout: Annotated[
        float,
        typer.Option(
            "--comfy-start-timeout",
            envvar="COMFY_START_TIMEOUT",
            min=1.0,
            help="Seconds --comfy-cmd may take to answer before it is restarted.",
        ),
    ] = 300.0,
    comfy_stop_grace: Annotated[
        float,
        typer.Option(
            "--comfy-stop-grace",
            envvar="COMFY_STOP_GRACE",
            min=0.0,
            help="Seconds ComfyUI gets to exit after SIGTERM before SIGKILL.",
        ),
    ] = 10.0,
    comfy_restart_delay: Annotated[
        float,
        typer.Option(
            "--comfy-restart-delay",
            envvar="COMFY_RESTART_DELAY",
            min=0.01,
            max=60.0,
            help="First wait before restarting ComfyUI; doubles per failed start up to 60 s.",
        ),
    ] = 1.0,
    host: opt.Host = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", envvar=["NODE_PORT", "SERVICE_PORT"], help="HTTP port.")
    ] = 8101,
    node_id: Annotated[
        str | None,
        typer.Option("--node-id", envvar="NODE_ID", help="Stable id; default HOSTNAME-PORT."),
    ] = None,
    prefetch: Annotated[
        int,
        typer.Option(
            "--prefetch",
            envvar="NODE_PREFETCH",
            min=0,
            max=16,
            help="Extra jobs kept queued inside ComfyUI so the GPU never idles.",
        ),
    ] = 1,
    hang_timeout: Annotated[
        float,
        typer.Option(
            "--hang-timeout",
            envvar="NODE_HANG_TIMEOUT",
            min=1.0,
            help="Seconds a running prompt may go without any ComfyUI event before ComfyUI "
            "counts as hung (and unreachable ComfyUI as lost).",
        ),
    ] = 120.0,
    lease_ms: Annotated[
        int,
        typer.Option(
            "--lease-ms", envvar="NODE_LEASE_MS", min=1000, help="Job lease, renewed every third."
        ),
    ] = 30_000,
    retry_base_ms: Annotated[
        int,
        typer.Option(
            "--retry-base-ms",
            envvar="NODE_RETRY_BASE_MS",
            min=0,
            help="First retry delay after a failed attempt; doubles up to 30 s.",
        ),
    ] = 1_000,
    retry_jitter: Annotated[
        bool,
        typer.Option(
            "--retry-jitter/--no-retry-jitter",
            envvar="NODE_RETRY_JITTER",
            help="Draw each retry delay from half to all of it (off: exact, for tests).",
        ),
    ] = True,
    redis_url: opt.RedisUrl = None,
    redis_host: opt.RedisHost = None,
    redis_port: opt.RedisPort = None,
    redis_password: opt.RedisPassword = None,
    redis_db: opt.RedisDb = None,
    redis_pool_size: opt.RedisPoolSize = DEFAULT_REDIS_POOL_SIZE,
    redis_pool_timeout: opt.RedisPoolTimeout = DEFAULT_REDIS_POOL_TIMEOUT_S,
    events_grace: opt.EventsGrace = DEFAULT_EVENTS_GRACE_MS / 1000,
    namespace: opt.Namespace = "comfyfleet",
    username: opt.Username = None,
    password: opt.Password = None,
    insecure: opt.Insecure = False,
    metrics: opt.Metrics = False,
    store_url: opt.StoreUrl = None,
    s3_endpoint_url: opt.S3Endpoint = None,
    s3_region: opt.S3Region = None,
    s3_access_key_id: opt.S3AccessKey = None,
    s3_secret_access_key: opt.S3SecretKey = None,
    s3_path_style: opt.S3PathStyle = False,
    output_ttl: opt.OutputTtl = None,
    logdy: opt.Logdy = None,
    log_level: opt.LogLevel = "info",
) -> None:
    """Run a node that drives one ComfyUI (port 8101)."""
    from comfyfleet.cli.serve import run_server
    from comfyfleet.node.app import create_app, default_node_id

    node_id = node_id or default_node_id(port)
    blobs = opt.build(
        lambda url: opt.blob_config(url, s3_endpoint_url, s3_region, s3_access_key_id,
                                    s3_secret_access_key, s3_path_style, output_ttl or []),
        store_url,
        "node",
    )  # fmt: skip
    cfg = opt.config_or_exit(
        NodeConfig,
        "node",
        server=opt.server_config(host, port, username, password, insecure, metrics),
        redis=opt.redis_config(
            redis_url,
            redis_host,
            redis_port,
            redis_password,
            redis_db,
            namespace,
            redis_pool_size,
            redis_pool_timeout,
            events_grace,
        ),
        log=opt.log_config(log_level, logdy),
        comfy_url=comfy_url,
        node_id=node_id,
        prefetch=prefetch,
        hang_s=hang_timeout,
        lease_ms=lease_ms,
        retry_base_ms=retry_base_ms,
        retry_jitter=retry_jitter,
        comfy_cmd=comfy_cmd,
        comfy_dir=comfy_dir,
        comfy_start_timeout_s=comfy_start_timeout,
        comfy_stop_grace_s=comfy_stop_grace,
        comfy_restart_s=comfy_restart_delay,
        blobs=blobs,
    )
    run_server(
        opt.build(create_app, cfg, "node"),
        host,
        port,
        banner=f"node {node_id}",
        log_cfg=cfg.log,
        role="node",
        node_id=node_id,
    )
