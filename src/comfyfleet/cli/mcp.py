"""`comfyfleet mcp`: serve the fleet's workflows as MCP tools for LLM agents, as a client of
a balancer's public API. stdio by default (desktop clients launch it); `--http` serves
streamable HTTP at /mcp behind a bearer token."""

from __future__ import annotations

import sys
from typing import Annotated

import anyio
import typer
from pydantic import SecretStr, ValidationError

from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.config import McpConfig
from comfyfleet.errors import ComfyfleetError
from comfyfleet.logs.setup import configure_logging


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


@app.command()
def mcp(
    url: Annotated[
        str, typer.Option("--url", envvar="COMFYFLEET_URL", help="The balancer's base URL.")
    ] = "http://127.0.0.1:7999",
    username: opt.Username = None,
    password: opt.Password = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="COMFYFLEET_API_KEY",
            help="A bearer API key for the balancer (instead of basic auth).",
            show_default=False,
        ),
    ] = None,
    http: Annotated[
        bool, typer.Option("--http", envvar="MCP_HTTP", help="Serve streamable HTTP, not stdio.")
    ] = False,
    host: Annotated[
        str, typer.Option("--host", envvar="MCP_HOST", help="HTTP bind address.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="MCP_PORT", help="HTTP port.")] = 7998,
    http_token: Annotated[
        str | None,
        typer.Option(
            "--http-token",
            envvar="COMFYFLEET_MCP_TOKEN",
            show_default=False,
            help="The bearer token HTTP clients must send (needed with --http).",
        ),
    ] = None,
    insecure: opt.Insecure = False,
    wait_s: Annotated[
        float,
        typer.Option(
            "--wait-s",
            envvar="MCP_WAIT_S",
            help="A tool call waits this long "
            "(s) for its job, then answers the job id to poll with get_job.",
        ),
    ] = 120.0,
    watch_ms: Annotated[
        int,
        typer.Option(
            "--watch-ms",
            envvar="MCP_WATCH_MS",
            help="How often (ms) to look for published or rolled back workflows.",
        ),
    ] = 2000,
    preview_px: Annotated[
        int,
        typer.Option(
            "--preview-px",
            envvar="MCP_PREVIEW_PX",
            help="Longest side (px) of the image previews in tool results.",
        ),
    ] = 512,
    log_level: opt.LogLevel = "info",
) -> None:
    """Serve the fleet's workflows as MCP tools (stdio; --http for streamable HTTP)."""
    try:
        from comfyfleet.mcp.transport import Refused, serve
    except ImportError as exc:
        typer.echo(f"comfyfleet mcp needs the mcp extra ({exc.name} is missing): "
                   "pip install 'comfyfleet[mcp]'", err=True)  # fmt: skip
        raise typer.Exit(code=2) from None
    try:
        cfg = McpConfig(
            url=url, username=username, password=_secret(password), api_key=_secret(api_key),
            http=http, host=host, port=port, http_token=_secret(http_token), insecure=insecure,
            wait_s=wait_s, watch_ms=watch_ms, preview_px=preview_px,
            log=opt.log_config(log_level, None),
        )  # fmt: skip
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    if http and cfg.http_token is None and not insecure:
        typer.echo("comfyfleet mcp: --http needs --http-token (env COMFYFLEET_MCP_TOKEN), or "
                   "--insecure to serve without one", err=True)  # fmt: skip
        raise typer.Exit(code=2)
    # stdout is the protocol channel on stdio: logs go to stderr.
    configure_logging(cfg.log, role="mcp", stream=sys.stderr)
    try:
        anyio.run(serve, cfg)
    except (Refused, ComfyfleetError) as exc:
        typer.echo(f"comfyfleet mcp: {exc}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as exc:
        typer.echo(f"comfyfleet mcp: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(code=2) from None
