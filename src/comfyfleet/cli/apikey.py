"""`comfyfleet apikey create|list|revoke`: manage bearer API keys straight in Redis, for
operators who hold the Redis URL (the same can be done over HTTP by the admin at
/api/v1/apikeys). The key is printed once, on create, and never stored."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.config import RedisConfig
from comfyfleet.errors import ComfyfleetError
from comfyfleet.store.apikeys import SCOPES, ApiKeyStore, NewApiKeyRequest
from comfyfleet.store.connect import connect
from comfyfleet.store.keys import Keys

T = TypeVar("T")
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
    redis_url: opt.RedisUrl = None,
    namespace: opt.Namespace = "comfyfleet",
) -> None:
    """Create a key and print it (once: only its hash is kept)."""
    scopes = list(scope or [])
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise typer.BadParameter(f"unknown scope {unknown[0]!r}; one of {', '.join(SCOPES)}")
    try:
        NewApiKeyRequest(name=name)
    except ValidationError:
        raise typer.BadParameter("use 1 to 64 of A-Z a-z 0-9 _ . : @ / - and space") from None
    cfg = opt.redis_config(redis_url, None, None, None, None, namespace)
    created = _run(cfg, lambda store: store.create(name, [s for s in SCOPES if s in scopes]))
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
