"""Configuration, read in one place.

CLI options (each with an env-var twin, declared in `cli/options.py`) feed these frozen
models; nothing else in the package reads the environment. The seed's variable names
(API_USERNAME, API_PASSWORD, SERVICE_HOST, SERVICE_PORT, REDIS_HOST, REDIS_PORT,
REDIS_PASSWORD, REDIS_DB) keep working beside REDIS_URL.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import shlex
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from comfyfleet.alerts.config import AlertsConfig
from comfyfleet.errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_REDIS_POOL_SIZE = 64
# A burst queues for connections: 1,000 submitters at once on a 2-core box (about 450
# submits/s) wait 2 s on average and 11 s at worst, which a 5 s bound turned into 503s
# while Redis was healthy. A Redis that is down fails at connect, not here.
DEFAULT_REDIS_POOL_TIMEOUT_S = 30.0
DEFAULT_EVENTS_GRACE_MS = 60_000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def redis_url_from_parts(
    url: str | None,
    host: str | None = None,
    port: int | None = None,
    password: str | None = None,
    db: int | None = None,
) -> str:
    """REDIS_URL wins; else the seed's REDIS_HOST/PORT/PASSWORD/DB parts; else the default."""
    if url:
        return url
    if host is None and port is None and password is None and db is None:
        return DEFAULT_REDIS_URL
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host or '127.0.0.1'}:{port or 6379}/{db or 0}"


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def parse_host_port(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) into its parts; a clear ConfigError otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class RedisConfig(_Frozen):
    url: str = DEFAULT_REDIS_URL
    # Every key starts with "{namespace}" -- the braces make it a Redis Cluster hash tag so
    # the whole key space sits in one slot and multi-key Lua scripts stay legal.
    namespace: str = Field(default="comfyfleet", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # Most connections one client (one process) opens, and how long a command waits for a
    # free one before Redis counts as unavailable (s). See store/connect.py.
    pool_size: int = Field(default=DEFAULT_REDIS_POOL_SIZE, ge=2, le=10_000)
    pool_timeout_s: float = Field(default=DEFAULT_REDIS_POOL_TIMEOUT_S, gt=0, le=300)
    # How long a finished job's event stream outlives its end before only the log folded
    # into the job is left (ms; store/events.py): the time live followers have to read the
    # end, and the native /ws replays ended prompts. Every role that ends jobs (balancer,
    # node) should be given the same value.
    events_grace_ms: int = Field(default=DEFAULT_EVENTS_GRACE_MS, ge=100, le=24 * 3600 * 1000)

    @property
    def redacted(self) -> str:
        return redact_url(self.url)


class LogConfig(_Frozen):
    level: str = "info"
    # Logdy's TCP socket as HOST:PORT; None means stdout only.
    logdy: str | None = None

    @field_validator("logdy")
    @classmethod
    def _check_logdy(cls, value: str | None) -> str | None:
        if value:
            try:
                parse_host_port(value)
            except ConfigError as exc:  # pydantic reports ValueErrors as field errors
                raise ValueError(exc.detail) from None
        return value or None


class ServerConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    # Allow binding beyond loopback without credentials (explicit opt-out).
    insecure: bool = False
    # Serve Prometheus metrics at /metrics, open to scrapers (counts only, no job data).
    metrics: bool = False
    # Networks (CIDR) whose requests without credentials are served as the principal
    # `anonymous` (jobs yes, admin no): for ComfyUI clients that cannot send credentials.
    # Empty: every request needs credentials. Wrong credentials are refused regardless.
    anonymous_from: tuple[str, ...] = ()

    @field_validator("anonymous_from")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"--anonymous-from expects a CIDR, got {network!r}") from None
        return value

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")


class WebhookConfig(_Frozen):
    """Webhooks (balancer/webhooks.py). Times in ms."""

    # Called for every job's terminal state beside the job's own `webhook_url` (None: off).
    url: str | None = None
    # Standard Webhooks signing secret `whsec_<base64>`; without it webhooks are refused.
    secret: SecretStr | None = None
    # Networks (CIDR) a webhook may reach although private, loopback, link-local...
    allow: tuple[str, ...] = ()
    max_attempts: int = Field(default=10, ge=1, le=50)
    # First retry delay, doubled per attempt up to retry_max_ms, with jitter unless off.
    retry_base_ms: int = Field(default=5_000, ge=1)
    retry_max_ms: int = Field(default=3_600_000, ge=1)
    retry_jitter: bool = True
    # Whole request, connect to last byte (ms).
    timeout_ms: int = Field(default=10_000, ge=100)
    # How often the dispatcher looks for due work when no hint arrives (ms).
    poll_ms: int = Field(default=500, ge=10)

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = value.get_secret_value()
            try:
                ok = len(base64.b64decode(raw.removeprefix("whsec_"), validate=True)) >= 16
                ok = ok and raw.startswith("whsec_")
            except binascii.Error:
                ok = False
            if not ok:  # never echo the secret itself
                raise ValueError("must be whsec_ followed by base64 of at least 16 bytes")
        return value


class InputUrlConfig(_Frozen):
    """Input images fetched from URLs (balancer/input_urls.py); off while `allow` is empty."""

    # Hosts (`images.example.com`), domains (`*.example.com`) or networks (CIDR) to fetch from.
    allow: tuple[str, ...] = ()
    # Whole fetch, connect to last byte (ms).
    timeout_ms: int = Field(default=20_000, ge=100, le=300_000)


class BlobConfig(_Frozen):
    """Where output and input bytes live (comfyfleet.blobs). Sizes in bytes, times in s."""

    # None: in Redis beside the state (small fleets, `up`); `s3://bucket/prefix`: any
    # S3-compatible object store (AWS S3, R2, GCS's S3 API, MinIO, Ceph).
    store_url: str | None = None
    # S3 endpoint (None: AWS's own); region; credentials (None: botocore's usual chain --
    # AWS_* variables, ~/.aws, instance roles); path-style addressing (MinIO, Ceph).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_path_style: bool = False
    # Multipart part size: the most output bytes a node holds in memory per upload.
    part_size: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024, le=512 * 1024 * 1024)
    # Largest output kept (None: 64 MiB in Redis, 5 GiB in S3).
    max_output_bytes: int | None = Field(default=None, ge=1)
    # How long outputs are kept, per pool; "*" for every pool not named (s). Unset: 24 h in
    # Redis, 7 days (the job record's retention) in S3.
    output_ttl_s: dict[str, int] = Field(default_factory=dict)
    # Balancer: hand clients presigned URLs valid this long instead of balancer URLs (0: off).
    presign_s: int = Field(default=0, ge=0, le=7 * 24 * 3600)
    # Balancer: a public base URL (a CDN in front of the bucket) + object key, if set.
    public_base_url: str | None = None
    # Balancer: how often the sweeper looks for orphaned objects and stale multipart
    # uploads (0: never), and how old an orphan must be before it is removed.
    sweep_interval_s: float = Field(default=600.0, ge=0)
    sweep_grace_s: float = Field(default=600.0, ge=0)

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, value: str | None) -> str | None:
        if value in (None, "", "redis"):
            return None
        parts = urlsplit(value)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"expected s3://bucket[/prefix] or redis, got {value!r}")
        return value

    @model_validator(mode="after")
    def _urls_need_s3(self) -> BlobConfig:
        if (self.presign_s or self.public_base_url) and not self.s3:
            raise ValueError("presigned or public output URLs need an S3 store (--store-url)")
        return self

    @property
    def s3(self) -> bool:
        return self.store_url is not None

    @property
    def bucket(self) -> str:
        return urlsplit(self.store_url or "").netloc

    @property
    def prefix(self) -> str:
        """The key prefix inside the bucket, '' or ending in '/'."""
        path = urlsplit(self.store_url or "").path.strip("/")
        return f"{path}/" if path else ""


class InputStoreConfig(_Frozen):
    """Bounds on uploaded inputs held in Redis (store/inputs.py), in bytes: per caller (an
    API key, or the admin per source address) and for all callers together."""

    caller_quota_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    total_bytes: int = Field(default=2048 * 1024 * 1024, ge=1)


def check_public_url(value: str) -> str:
    """`--public-url`: an http(s) URL with a host and maybe a path prefix (behind a proxy),
    no credentials, query or fragment; returned without a trailing slash."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host, like https://fleet.example.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def parse_public_url(value: str | None) -> str | None:
    """The CLI's `--public-url` checked (see check_public_url); ConfigError naming it."""
    try:
        return check_public_url(value) if value else None
    except ValueError as exc:
        raise ConfigError(f"--public-url {exc}") from None


class BalancerConfig(_Frozen):
    server: ServerConfig = ServerConfig(port=7999)
    # The base of every URL the balancer hands out (outputs, previews, webhook payloads),
    # e.g. https://fleet.example.com behind a proxy. None: the address the balancer listens
    # on. Never taken from a request's Host header, which the client chooses.
    public_url: str | None = None
    redis: RedisConfig = RedisConfig()
    log: LogConfig = LogConfig()
    # Extra workflow folder published beside the built-in ones (None: built-ins only).
    workflows_dir: str | None = None
    # Backpressure: most jobs waiting in one pool's queue; beyond it a submit gets 429 with
    # Retry-After. Pool name -> bound; "*" applies to every pool not named (empty: no bound).
    queue_limits: dict[str, int] = Field(default_factory=dict)
    webhooks: WebhookConfig = WebhookConfig()
    input_urls: InputUrlConfig = InputUrlConfig()
    alerts: AlertsConfig = AlertsConfig()
    blobs: BlobConfig = BlobConfig()
    inputs: InputStoreConfig = InputStoreConfig()

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        return check_public_url(value) if value else None


class NodeConfig(_Frozen):
    server: ServerConfig = ServerConfig(port=8101)
    redis: RedisConfig = RedisConfig()
    log: LogConfig = LogConfig()
    comfy_url: str = "http://127.0.0.1:8188"
    # Addressable in the balancer's API paths and Redis keys: no ':' or '/' (see schemas).
    node_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    # Jobs kept queued inside ComfyUI beyond the one running, so the GPU never idles.
    prefetch: int = Field(default=1, ge=0, le=16)
    # Reliability (see node/watchdog.py, node/leases.py, models/retry.py): a running prompt
    # with no socket event and no queue movement this long (s) means ComfyUI hung, and
    # ComfyUI unreachable this long loses the node's prompts; the lease of a claimed job
    # (ms, renewed every third); the first retry delay after a failed attempt (ms, doubling
    # up to 30 s), drawn from half to all of it unless jitter is off (tests).
    hang_s: float = Field(default=120.0, ge=1.0)
    lease_ms: int = Field(default=30_000, ge=1_000)
    retry_base_ms: int = Field(default=1_000, ge=0)
    retry_jitter: bool = True
    blobs: BlobConfig = BlobConfig()

    # Run ComfyUI as the node's child (node/supervisor.py) instead of driving `comfy_url`:
    # the command, its working directory, how long it may take to answer (s), how long it
    # gets to stop after SIGTERM (s), and the first restart delay (s, doubling up to 60 s).
    comfy_cmd: str | None = None
    comfy_dir: str | None = None
    comfy_start_timeout_s: float = Field(default=300.0, gt=0)
    comfy_stop_grace_s: float = Field(default=10.0, ge=0)
    comfy_restart_s: float = Field(default=1.0, gt=0, le=60)

    @field_validator("comfy_cmd")
    @classmethod
    def _check_comfy_cmd(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot be split into arguments: {exc}") from None
            return value
        return None

    @field_validator("comfy_dir")
    @classmethod
    def _check_comfy_dir(cls, value: str | None) -> str | None:
        if value and not Path(value).is_dir():
            raise ValueError(f"{value!r} is not a directory")
        return value or None


class McpConfig(_Frozen):
    """`comfyfleet mcp` (comfyfleet/mcp/): a client of one balancer's public API."""

    # The balancer, and how to authenticate to it (an API key wins over basic auth).
    url: str = "http://127.0.0.1:7999"
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    # Streamable HTTP instead of stdio, on host:port, behind this bearer token.
    http: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=7998, ge=0, le=65535)
    http_token: SecretStr | None = None
    insecure: bool = False
    # A tool call waits this long for its job (s), then answers the job id for get_job.
    wait_s: float = Field(default=120.0, gt=0, le=3600)
    # How often the workflows listing is polled for publishes and rollbacks (ms).
    watch_ms: int = Field(default=2000, ge=50)
    # Image previews in tool results: longest side (px) and most encoded bytes.
    preview_px: int = Field(default=512, ge=16, le=4096)
    preview_bytes: int = Field(default=512 * 1024, ge=4096)
    log: LogConfig = LogConfig()


class SimConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8188, ge=0, le=65535)
    log: LogConfig = LogConfig()
    # Simulated time per executed node and per sampler step, in milliseconds.
    node_ms: float = Field(default=5.0, ge=0)
    step_ms: float = Field(default=2.0, ge=0)
    # Model inventory: folder name -> file names (e.g. checkpoints -> [a.safetensors]).
    models: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Node classes beyond the built-in ones (each passes its optional IMAGE input through,
    # like a custom node the fleet's other stand-ins lack) and built-in ones left out.
    extra_classes: tuple[str, ...] = ()
    without_classes: tuple[str, ...] = ()
    # Where outputs, inputs and temp files live (None: a fresh temp dir, removed at exit).
    data_dir: str | None = None
    # Fault injection (see comfyfleet.sim.faults; all off by default).
    # Node class types whose execution fails with an execution_error.
    fail_node_types: tuple[str, ...] = ()
    # The next N POST /prompt answer HTTP 500 (-1: every one; 0: off).
    reject_prompts: int = Field(default=0, ge=-1)
    # One-shot stall (no execution, no frames) after N executed nodes, lasting stall_ms
    # milliseconds (0: until resumed through POST /sim/faults).
    stall_after_nodes: int | None = Field(default=None, ge=1)
    stall_ms: float = Field(default=0.0, ge=0)
    # One-shot: close every websocket after N executed nodes.
    drop_ws_after_nodes: int | None = Field(default=None, ge=1)
    # Kill the process (os._exit) after N executed nodes.
    die_after_nodes: int | None = Field(default=None, ge=1)
    # Write each log line to stderr as well, as ComfyUI's console does (the CLI sets it).
    echo_logs: bool = False


def parse_models(specs: list[str]) -> dict[str, tuple[str, ...]]:
    """`--models checkpoints=a.safetensors,b.safetensors` (repeatable) into a mapping."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        folder, sep, files = spec.partition("=")
        if not sep or not folder.strip():
            raise ConfigError(f"--models expects FOLDER=FILE[,FILE...], got {spec!r}")
        names = tuple(f.strip() for f in files.split(",") if f.strip())
        out[folder.strip()] = out.get(folder.strip(), ()) + names
    return out
