from __future__ import annotations

import os
from typing import Annotated

import typer

from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.config import (
    DEFAULT_EVENTS_GRACE_MS,
    DEFAULT_REDIS_POOL_SIZE,
    DEFAULT_REDIS_POOL_TIMEOUT_S,
    BalancerConfig,
    InputStoreConfig,
    parse_public_url,
)

MIB = 1024 * 1024


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
    redis_pool_size: opt.RedisPoolSize = DEFAULT_REDIS_POOL_SIZE,
    redis_pool_timeout: opt.RedisPoolTimeout = DEFAULT_REDIS_POOL_TIMEOUT_S,
    events_grace: opt.EventsGrace = DEFAULT_EVENTS_GRACE_MS / 1000,
    namespace: opt.Namespace = "comfyfleet",
    username: opt.Username = None,
    password: opt.Password = None,
    insecure: opt.Insecure = False,
    metrics: opt.Metrics = False,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            envvar="BALANCER_PUBLIC_URL",
            help="Base of every URL the balancer hands out (outputs, previews, webhooks), "
            "e.g. https://fleet.example.com; default: the address it listens on. Never "
            "taken from the Host header.",
        ),
    ] = None,
    workflows_dir: Annotated[
        str | None,
        typer.Option(
            "--workflows-dir", envvar="WORKFLOWS_DIR", help="Extra folder of workflows to publish."
        ),
    ] = None,
    queue_limit: Annotated[
        list[str] | None,
        typer.Option(
            "--queue-limit",
            envvar="BALANCER_QUEUE_LIMIT",
            help="Most jobs waiting per pool before submits get 429: N (every pool) or "
            "POOL=N; repeatable; 0 or unset: no bound.",
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            envvar="BALANCER_WEBHOOK_URL",
            help="Fleet-wide webhook: called for every job's terminal state.",
        ),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            "--webhook-secret",
            envvar="BALANCER_WEBHOOK_SECRET",
            help="Signing secret whsec_<base64> (Standard Webhooks); webhooks are off "
            "without it. Prefer the env var.",
            show_default=False,
        ),
    ] = None,
    webhook_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--webhook-allow",
            envvar="BALANCER_WEBHOOK_ALLOW",
            help="Network (CIDR) webhooks may reach although private or loopback; repeatable.",
        ),
    ] = None,
    anonymous_from: Annotated[
        list[str] | None,
        typer.Option(
            "--anonymous-from",
            envvar="BALANCER_ANONYMOUS_FROM",
            help="Network (CIDR) whose requests without credentials are served as the "
            "principal 'anonymous' (jobs yes, admin no), for ComfyUI clients that cannot "
            "send credentials; repeatable. Unset: credentials always needed.",
        ),
    ] = None,
    input_url_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--input-url-allow",
            envvar="BALANCER_INPUT_URL_ALLOW",
            help="Where input images may be fetched from by URL: a host, *.domain or a "
            "network (CIDR, may be private); repeatable. Unset: URL inputs are off.",
        ),
    ] = None,
    input_quota_mib: Annotated[
        int,
        typer.Option(
            "--input-quota-mib",
            envvar="BALANCER_INPUT_QUOTA_MIB",
            min=1,
            help="Most MiB of uploaded inputs one caller (API key, or admin per address) "
            "may hold in Redis; beyond it uploads get 429.",
        ),
    ] = 512,
    input_store_mib: Annotated[
        int,
        typer.Option(
            "--input-store-mib",
            envvar="BALANCER_INPUT_STORE_MIB",
            min=1,
            help="Most MiB of uploaded inputs all callers together may hold in Redis.",
        ),
    ] = 2048,
    webhook_max_attempts: Annotated[
        int,
        typer.Option(
            "--webhook-max-attempts",
            envvar="BALANCER_WEBHOOK_MAX_ATTEMPTS",
            help="Attempts per webhook delivery before it is given up.",
        ),
    ] = 10,
    webhook_retry_base_ms: Annotated[
        int,
        typer.Option(
            "--webhook-retry-base-ms",
            envvar="BALANCER_WEBHOOK_RETRY_BASE_MS",
            help="First webhook retry delay (ms), doubling per attempt up to 1 h.",
        ),
    ] = 5000,
    alerts_config: opt.AlertsConfigFile = None,
    alert_receiver: opt.AlertReceiver = None,
    alert_interval_ms: Annotated[
        int | None,
        typer.Option(
            "--alert-interval-ms",
            envvar="BALANCER_ALERT_INTERVAL_MS",
            help="How often the alert rules are evaluated (ms; default 15000).",
        ),
    ] = None,
    no_alerts: Annotated[
        bool,
        typer.Option(
            "--no-alerts", envvar="BALANCER_NO_ALERTS", help="Do not evaluate alert rules here."
        ),
    ] = False,
    store_url: opt.StoreUrl = None,
    s3_endpoint_url: opt.S3Endpoint = None,
    s3_region: opt.S3Region = None,
    s3_access_key_id: opt.S3AccessKey = None,
    s3_secret_access_key: opt.S3SecretKey = None,
    s3_path_style: opt.S3PathStyle = False,
    output_ttl: opt.OutputTtl = None,
    presign_outputs: Annotated[
        int,
        typer.Option(
            "--presign-outputs",
            envvar="BALANCER_PRESIGN_OUTPUTS",
            min=0,
            help="With an S3 store: give clients presigned output URLs valid this many "
            "seconds instead of balancer URLs (0: off).",
        ),
    ] = 0,
    output_base_url: Annotated[
        str | None,
        typer.Option(
            "--output-base-url",
            envvar="BALANCER_OUTPUT_BASE_URL",
            help="With an S3 store: public base URL of the bucket (a CDN); output URLs "
            "become BASE/KEY.",
        ),
    ] = None,
    sweep_interval: Annotated[
        float,
        typer.Option(
            "--sweep-interval",
            envvar="BALANCER_SWEEP_INTERVAL",
            min=0,
            help="With an S3 store: seconds between sweeps for orphaned objects and dead "
            "multipart uploads (0: never).",
        ),
    ] = 600.0,
    sweep_grace: Annotated[
        float,
        typer.Option(
            "--sweep-grace",
            envvar="BALANCER_SWEEP_GRACE",
            min=0,
            help="Seconds an orphan must have existed before the sweeper removes it.",
        ),
    ] = 600.0,
    logdy: opt.Logdy = None,
    log_level: opt.LogLevel = "info",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            envvar="BALANCER_WORKERS",
            min=1,
            max=256,
            help="Processes serving the port (SO_REUSEPORT) under one supervisor; SIGHUP "
            "reloads them gracefully. 1: serve in this process. Default: number of cores.",
            show_default=False,
        ),
    ] = None,
    reuse_port: Annotated[
        bool,
        typer.Option(
            "--reuse-port",
            envvar="BALANCER_REUSE_PORT",
            hidden=True,
            help="Internal (set by the --workers supervisor): share the port with siblings.",
        ),
    ] = False,
    ready_fd: Annotated[
        int | None,
        typer.Option(
            "--ready-fd",
            envvar="BALANCER_READY_FD",
            hidden=True,
            help="Internal (set by the --workers supervisor): pipe to signal listening on.",
        ),
    ] = None,
) -> None:
    """Run the balancer: public job API, scheduling, reaper, alerts (port 7999)."""
    from comfyfleet.alerts.loading import alerts_config as load_alerts
    from comfyfleet.balancer.admission import parse_queue_limits
    from comfyfleet.balancer.app import create_app
    from comfyfleet.balancer.input_urls import input_url_config
    from comfyfleet.balancer.webhooks import webhook_config
    from comfyfleet.cli.serve import run_server

    webhooks = opt.build(
        lambda url: webhook_config(
            url, webhook_secret, webhook_allow or [], webhook_max_attempts, webhook_retry_base_ms
        ),
        webhook_url,
        "balancer",
    )
    blobs = opt.build(
        lambda url: opt.blob_config(
            url, s3_endpoint_url, s3_region, s3_access_key_id, s3_secret_access_key,
            s3_path_style, output_ttl or [], presign_s=presign_outputs,
            public_base_url=output_base_url, sweep_interval_s=sweep_interval,
            sweep_grace_s=sweep_grace,
        ),
        store_url,
        "balancer",
    )  # fmt: skip
    cfg = BalancerConfig(
        server=opt.server_config(
            host,
            port,
            username,
            password,
            insecure,
            metrics,
            opt.build(opt.parse_networks, anonymous_from or [], "balancer"),
        ),
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
        public_url=opt.build(parse_public_url, public_url, "balancer"),
        workflows_dir=workflows_dir,
        queue_limits=opt.build(parse_queue_limits, queue_limit or [], "balancer"),
        webhooks=webhooks,
        input_urls=opt.build(input_url_config, input_url_allow or [], "balancer"),
        alerts=opt.build(
            lambda path: load_alerts(
                path, alert_receiver or [], interval_ms=alert_interval_ms, enabled=not no_alerts
            ),
            alerts_config,
            "balancer",
        ),
        blobs=blobs,
        inputs=InputStoreConfig(
            caller_quota_bytes=input_quota_mib * MIB, total_bytes=input_store_mib * MIB
        ),
    )
    # Built here even for a supervisor, so a bad configuration is refused before any
    # worker starts (building an app does no I/O).
    application = opt.build(create_app, cfg, "balancer")
    count = workers or os.cpu_count() or 1
    if count > 1:
        _supervise(cfg, count)
        return
    run_server(
        application,
        host,
        port,
        banner="balancer",
        log_cfg=cfg.log,
        role="balancer",
        reuse_port=reuse_port,
        ready_fd=ready_fd,
    )


def _supervise(cfg: BalancerConfig, count: int) -> None:
    """Run `count` workers of this same command (cli/workers.py) until told to stop."""
    from comfyfleet.cli.workers import supervise
    from comfyfleet.errors import ComfyfleetError
    from comfyfleet.logs.setup import configure_logging

    # The supervisor logs to stdout only: it has no event loop to run a Logdy sink in.
    configure_logging(cfg.log.model_copy(update={"logdy": None}), role="balancer")
    try:
        supervise(count, cfg.server.host, cfg.server.port)
    except ComfyfleetError as exc:
        typer.echo(f"comfyfleet balancer: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None
