"""Options shared by several commands, each with its env-var twin. The seed's names
(SERVICE_HOST, SERVICE_PORT, REDIS_HOST, ...) are accepted as second env vars."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, SecretStr, ValidationError

from comfyfleet.config import (
    DEFAULT_EVENTS_GRACE_MS,
    DEFAULT_REDIS_POOL_SIZE,
    DEFAULT_REDIS_POOL_TIMEOUT_S,
    BlobConfig,
    LogConfig,
    RedisConfig,
    ServerConfig,
    redis_url_from_parts,
)
from comfyfleet.errors import ComfyfleetError, ConfigError

C = TypeVar("C")
M = TypeVar("M", bound=BaseModel)
A = TypeVar("A")

Host = Annotated[
    str, typer.Option("--host", envvar=["COMFYFLEET_HOST", "SERVICE_HOST"], help="Bind address.")
]
RedisUrl = Annotated[
    str | None,
    typer.Option("--redis-url", envvar="REDIS_URL", help="redis://[:password@]host:port/db"),
]
RedisHost = Annotated[
    str | None, typer.Option("--redis-host", envvar="REDIS_HOST", help="Seed-style Redis host.")
]
RedisPort = Annotated[
    int | None, typer.Option("--redis-port", envvar="REDIS_PORT", help="Seed-style Redis port.")
]
RedisPassword = Annotated[
    str | None,
    typer.Option("--redis-password", envvar="REDIS_PASSWORD", help="Seed-style Redis password."),
]
RedisDb = Annotated[
    int | None, typer.Option("--redis-db", envvar="REDIS_DB", help="Seed-style Redis db number.")
]
RedisPoolSize = Annotated[
    int,
    typer.Option(
        "--redis-pool-size",
        envvar="REDIS_POOL_SIZE",
        min=2,
        help="Most Redis connections per process; a burst beyond waits for a free one.",
    ),
]
RedisPoolTimeout = Annotated[
    float,
    typer.Option(
        "--redis-pool-timeout",
        envvar="REDIS_POOL_TIMEOUT",
        min=0.001,
        help="Seconds a command waits for a free Redis connection before Redis counts as "
        "unavailable (the balancer then answers 503 with Retry-After).",
    ),
]
EventsGrace = Annotated[
    float,
    typer.Option(
        "--events-grace",
        envvar="COMFYFLEET_EVENTS_GRACE",
        min=0.1,
        help="Seconds a finished job's event stream is kept for live followers (and the "
        "native /ws replays ended prompts); then its log lives on folded into the job.",
    ),
]
Namespace = Annotated[
    str,
    typer.Option("--namespace", envvar="COMFYFLEET_NAMESPACE", help="Redis key prefix."),
]
Logdy = Annotated[
    str | None,
    typer.Option("--logdy", envvar="LOGDY_ADDR", help="Send JSON log lines to Logdy at HOST:PORT."),
]
LogLevel = Annotated[
    str, typer.Option("--log-level", envvar="COMFYFLEET_LOG_LEVEL", help="debug|info|warning")
]
Username = Annotated[
    str | None, typer.Option("--username", envvar="API_USERNAME", help="Basic-auth user.")
]
Password = Annotated[
    str | None,
    typer.Option(
        "--password", envvar="API_PASSWORD", help="Basic-auth password.", show_default=False
    ),
]


def redis_config(
    url: str | None,
    host: str | None,
    port: int | None,
    password: str | None,
    db: int | None,
    namespace: str,
    pool_size: int = DEFAULT_REDIS_POOL_SIZE,
    pool_timeout_s: float = DEFAULT_REDIS_POOL_TIMEOUT_S,
    events_grace_s: float = DEFAULT_EVENTS_GRACE_MS / 1000,
) -> RedisConfig:
    return RedisConfig(
        url=redis_url_from_parts(url, host, port, password, db),
        namespace=namespace,
        pool_size=pool_size,
        pool_timeout_s=pool_timeout_s,
        events_grace_ms=round(events_grace_s * 1000),
    )


def server_config(
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    insecure: bool,
    metrics: bool = False,
    anonymous_from: tuple[str, ...] = (),
) -> ServerConfig:
    return ServerConfig(
        host=host,
        port=port,
        username=username,
        password=SecretStr(password) if password else None,
        insecure=insecure,
        metrics=metrics,
        anonymous_from=anonymous_from,
    )


def parse_networks(specs: list[str]) -> tuple[str, ...]:
    """`--anonymous-from` values: each a CIDR (or one address); ConfigError otherwise."""
    for spec in specs:
        try:
            ipaddress.ip_network(spec, strict=False)
        except ValueError:
            raise ConfigError(f"--anonymous-from expects a network (CIDR), got {spec!r}") from None
    return tuple(specs)


def log_config(level: str, logdy: str | None) -> LogConfig:
    return LogConfig(level=level, logdy=logdy)


Metrics = Annotated[
    bool,
    typer.Option(
        "--metrics",
        envvar="COMFYFLEET_METRICS",
        help="Serve Prometheus metrics at /metrics (open to scrapers; counts only).",
    ),
]
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        envvar="COMFYFLEET_INSECURE",
        help="Allow listening beyond loopback without credentials.",
    ),
]


def config_or_exit(model: type[M], role: str, **fields: Any) -> M:
    """The role's config, or a one-line message naming the bad option and exit code 2."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        typer.echo(f"comfyfleet {role}: {where}: {first['msg']}", err=True)
        raise typer.Exit(code=2) from None


def build(factory: Callable[[C], A], cfg: C, role: str) -> A:
    """Build a role's app, turning a configuration error into a clean exit."""
    try:
        return factory(cfg)
    except ComfyfleetError as exc:
        typer.echo(f"comfyfleet {role}: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None


AlertsConfigFile = Annotated[
    str | None,
    typer.Option(
        "--alerts-config",
        envvar="BALANCER_ALERTS_CONFIG",
        help="JSON file of alert rules' thresholds and receivers (README: Alerts).",
    ),
]
AlertReceiver = Annotated[
    list[str] | None,
    typer.Option(
        "--alert-receiver",
        envvar="BALANCER_ALERT_RECEIVER",
        help="Where alerts go, KIND=URL: alertmanager, webhook, slack, discord, feishu, "
        "dingtalk, wecom; repeatable (e-mail and signing secrets: --alerts-config).",
    ),
]
# Where output and input bytes live (comfyfleet.blobs); the same on every role of a fleet.
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        envvar="COMFYFLEET_STORE_URL",
        help="Where outputs and inputs live: redis (default: beside the state) or "
        "s3://bucket/prefix (any S3-compatible store; needs comfyfleet[s3]).",
    ),
]
S3Endpoint = Annotated[
    str | None,
    typer.Option(
        "--s3-endpoint-url",
        envvar=["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
        help="S3 endpoint (MinIO, R2, Ceph...); unset: AWS.",
    ),
]
S3Region = Annotated[
    str | None,
    typer.Option("--s3-region", envvar=["AWS_REGION", "AWS_DEFAULT_REGION"], help="S3 region."),
]
S3AccessKey = Annotated[
    str | None,
    typer.Option(
        "--s3-access-key-id",
        envvar="AWS_ACCESS_KEY_ID",
        help="S3 access key; unset: the usual AWS chain (~/.aws, instance role).",
    ),
]
S3SecretKey = Annotated[
    str | None,
    typer.Option(
        "--s3-secret-access-key",
        envvar="AWS_SECRET_ACCESS_KEY",
        help="S3 secret key. Prefer the env var.",
        show_default=False,
    ),
]
S3PathStyle = Annotated[
    bool,
    typer.Option(
        "--s3-path-style",
        envvar="S3_PATH_STYLE",
        help="Path-style bucket addressing (MinIO, Ceph); default: virtual-hosted.",
    ),
]
OutputTtl = Annotated[
    list[str] | None,
    typer.Option(
        "--output-ttl",
        envvar="COMFYFLEET_OUTPUT_TTL",
        help="How long outputs are kept, in s: N (every pool) or POOL=N; repeatable. "
        "Unset: 24 h in Redis, 7 days in S3.",
    ),
]


def blob_config(
    store_url: str | None,
    endpoint: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    path_style: bool,
    output_ttl: list[str],
    **balancer: object,
) -> BlobConfig:
    """The blob store settings; `balancer` adds the balancer's own (presign_s, ...).
    ConfigError naming the setting that is wrong."""
    try:
        return _blob_config(store_url, endpoint, region, access_key, secret_key, path_style,
                            output_ttl, balancer)  # fmt: skip
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad object store settings: {wrong}") from None


def _blob_config(
    store_url: str | None,
    endpoint: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    path_style: bool,
    output_ttl: list[str],
    balancer: dict[str, object],
) -> BlobConfig:
    return BlobConfig.model_validate(
        {
            # Empty env values (compose's `${X:-}`) mean unset.
            "store_url": store_url or None,
            "s3_endpoint_url": endpoint or None,
            "s3_region": region or None,
            "s3_access_key_id": access_key or None,
            "s3_secret_access_key": SecretStr(secret_key) if secret_key else None,
            "s3_path_style": path_style,
            "output_ttl_s": parse_pool_seconds(output_ttl),
            **balancer,
        }
    )


def parse_pool_seconds(specs: list[str]) -> dict[str, int]:
    """`N` or `POOL=N` (repeatable) into pool -> seconds, "*" for every other pool."""
    out: dict[str, int] = {}
    for spec in specs:
        pool, sep, value = spec.rpartition("=")
        if not value.strip().isdigit() or int(value) <= 0 or (sep and not pool.strip()):
            raise ConfigError(f"expected N or POOL=N (seconds > 0), got {spec!r}")
        out[pool.strip() or "*"] = int(value)
    return out
