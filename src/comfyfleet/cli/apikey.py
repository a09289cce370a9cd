"""`comfyfleet apikey create|list|revoke|update`: manage bearer API keys and their tenant
limits straight in Redis, for operators who hold the Redis URL (the same can be done over
HTTP by the admin at /api/v1/apikeys and /api/v1/tenants). The key is printed once, on
create, and never stored."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.config import RedisConfig
from comfyfleet.errors import ComfyfleetError, NotFound
from comfyfleet.store.apikeys import (
    KEY_ID_PATTERN,
    SCOPES,
    ApiKeyStore,
    NewApiKey,
    NewApiKeyRequest,
)
from comfyfleet.store.connect import connect
from comfyfleet.store.keys import Keys
from comfyfleet.store.limits import OWNER_PATTERN, LimitStore, TenantLimits, TenantView, parse_rate

T = TypeVar("T")
LIMITS = tuple(TenantLimits.model_fields)
MaxQueued = Annotated[
    int | None,
    typer.Option(
        "--max-queued",
        envvar="APIKEY_MAX_QUEUED",
        min=0,
        help="Jobs it may have queued at once (429 quota-exceeded beyond).",
    ),
]
MaxRunning = Annotated[
    int | None,
    typer.Option(
        "--max-running",
        envvar="APIKEY_MAX_RUNNING",
        min=0,
        help="Jobs of it that run at once, fleet-wide.",
    ),
]
Rate = Annotated[
    str | None,
    typer.Option(
        "--rate",
        envvar="APIKEY_RATE",
        help="Submits on average: R/s, R/m or R/h (token bucket, in Redis).",
    ),
]
Burst = Annotated[
    int | None,
    typer.Option(
        "--burst", envvar="APIKEY_BURST", min=1, help="Submits at once beyond --rate (default 1)."
    ),
]
Workflows = Annotated[
    str | None,
    typer.Option(
        "--workflows",
        envvar="APIKEY_WORKFLOWS",
        help="Comma-separated: the only workflows it may run (_graph: raw graphs).",
    ),
]
Pools = Annotated[
    str | None,
    typer.Option(
        "--pools", envvar="APIKEY_POOLS", help="Comma-separated: the only pools it may submit to."
    ),
]
MaxPriority = Annotated[
    int | None,
    typer.Option(
        "--max-priority", envvar="APIKEY_MAX_PRIORITY", help="The highest priority it may ask for."
    ),
]
Weight = Annotated[
    int | None,
    typer.Option(
        "--weight",
        envvar="APIKEY_WEIGHT",
        min=1,
        help="Its share of GPU time against other tenants with work queued (default 1).",
    ),
]

apikey_app = typer.Typer(help="Create, list and revoke bearer API keys.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


def _run(cfg: RedisConfig, action: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    async def main() -> T:
        redis = connect(cfg)
        try:
            return await action(ApiKeyStore(redis, Keys(cfg.namespace)))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(main())
    except ComfyfleetError as exc:
        typer.echo(f"comfyfleet apikey: {exc.detail} ({cfg.redacted})", err=True)
        raise typer.Exit(code=2) from None


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@apikey_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What the key is for (shown in listings).")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            envvar="APIKEY_SCOPE",
            help="Grant more than running jobs: 'workflows' (publish, roll back, retire).",
        ),
    ] = None,
    max_queued: MaxQueued = None,
    max_running: MaxRunning = None,
    rate: Rate = None,
    burst: Burst = None,
    workflows: Workflows = None,
    pools: Pools = None,
    max_priority: MaxPriority = None,
    weight: Weight = None,
    redis_url: opt.RedisUrl = None,
    namespace: opt.Namespace = "comfyfleet",
) -> None:
    """Create a key and print it (once: only its hash is kept), with its limits if given."""
    limits = _limits(max_queued, max_running, rate, burst, workflows, pools, max_priority,
                     weight, clear=[])  # fmt: skip
    scopes = list(scope or [])
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise typer.BadParameter(f"unknown scope {unknown[0]!r}; one of {', '.join(SCOPES)}")
    try:
        NewApiKeyRequest(name=name)
    except ValidationError:
        raise typer.BadParameter("use 1 to 64 of A-Z a-z 0-9 _ . : @ / - and space") from None
    cfg = opt.redis_config(redis_url, None, None, None, None, namespace)
    granted = [s for s in SCOPES if s in scopes]

    async def make(store: ApiKeyStore) -> NewApiKey:
        made = await store.create(name, granted)
        if limits.model_fields_set:
            await LimitStore(store.redis, store.keys).update(f"apikey:{made.id}", limits)
        return made

    created = _run(cfg, make)
    typer.echo(f"id    {created.id}\nname  {created.name}", err=True)
    if created.scopes:
        typer.echo(f"scope {', '.join(created.scopes)}", err=True)
    typer.echo("key (shown once; send it as 'Authorization: Bearer <key>'):", err=True)
    typer.echo(created.key)


@apikey_app.command("list")
def list_keys(redis_url: opt.RedisUrl = None, namespace: opt.Namespace = "comfyfleet") -> None:
    """List keys: id, name, created, last used (never the keys)."""
    cfg = opt.redis_config(redis_url, None, None, None, None, namespace)
    for info in _run(cfg, lambda store: store.all()):
        typer.echo(
            f"{info.id}  {info.name:<24}  created {_when(info.created_ms)}"
            f"  last used {_when(info.last_used_ms)}"
            + (f"  scopes {','.join(info.scopes)}" if info.scopes else "")
        )


@apikey_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `apikey list`).")],
    redis_url: opt.RedisUrl = None,
    namespace: opt.Namespace = "comfyfleet",
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    cfg = opt.redis_config(redis_url, None, None, None, None, namespace)
    if not _run(cfg, lambda store: store.revoke(key_id)):
        typer.echo(f"comfyfleet apikey: no key {key_id!r}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"revoked {key_id}")


def _limits(
    max_queued: int | None,
    max_running: int | None,
    rate: str | None,
    burst: int | None,
    workflows: str | None,
    pools: str | None,
    max_priority: int | None,
    weight: int | None,
    *,
    clear: list[str],
) -> TenantLimits:
    """The limits given on the command line (and those to clear, as None)."""
    unknown = sorted(set(clear) - set(LIMITS))
    if unknown:
        raise typer.BadParameter(f"unknown limit {unknown[0]!r}; one of {', '.join(LIMITS)}")
    given: dict[str, object] = {name: None for name in clear}
    try:
        values = {"max_queued": max_queued, "max_running": max_running,
                  "rate": parse_rate(rate) if rate is not None else None, "burst": burst,
                  "workflows": workflows.split(",") if workflows is not None else None,
                  "pools": pools.split(",") if pools is not None else None,
                  "max_priority": max_priority, "weight": weight}  # fmt: skip
        given.update({k: v for k, v in values.items() if v is not None})
        return TenantLimits.model_validate(given).check_names()
    except (ValueError, ComfyfleetError) as exc:
        raise typer.BadParameter(str(getattr(exc, "detail", exc))) from None


def _owner(who: str) -> str:
    """A key id, or an owner: admin, anonymous, apikey:<key id>."""
    if re.fullmatch(KEY_ID_PATTERN, who):
        return f"apikey:{who}"
    if re.fullmatch(OWNER_PATTERN, who):
        return who
    raise typer.BadParameter(f"{who!r} is neither a key id nor admin, anonymous, apikey:<id>")


@apikey_app.command("update")
def update(
    who: Annotated[
        str,
        typer.Argument(
            help="A key id, or admin / anonymous (the principal "
            "of unauthenticated callers) / apikey:<id>."
        ),
    ],
    max_queued: MaxQueued = None,
    max_running: MaxRunning = None,
    rate: Rate = None,
    burst: Burst = None,
    workflows: Workflows = None,
    pools: Pools = None,
    max_priority: MaxPriority = None,
    weight: Weight = None,
    clear: Annotated[
        list[str] | None,
        typer.Option("--clear", envvar="APIKEY_CLEAR", help="Remove this limit (repeatable)."),
    ] = None,
    redis_url: opt.RedisUrl = None,
    namespace: opt.Namespace = "comfyfleet",
) -> None:
    """Set a tenant's limits; the others stay as they are. Prints them all."""
    owner = _owner(who)
    limits = _limits(max_queued, max_running, rate, burst, workflows, pools, max_priority,
                     weight, clear=list(clear or []))  # fmt: skip
    cfg = opt.redis_config(redis_url, None, None, None, None, namespace)

    async def apply(store: ApiKeyStore) -> TenantView:
        if owner.startswith("apikey:") and owner[7:] not in {k.id for k in await store.all()}:
            raise NotFound(f"no key {owner[7:]!r}")
        return await LimitStore(store.redis, store.keys).update(owner, limits)

    view = _run(cfg, apply)
    shown = view.limits.model_dump(exclude_none=True)
    typer.echo(f"{owner}  " + ("  ".join(f"{k} {v}" for k, v in shown.items()) or "no limits"))
