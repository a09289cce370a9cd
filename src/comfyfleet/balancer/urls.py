"""The base of every URL the balancer hands out: job outputs, previews, webhook payloads.

It comes from configuration (`--public-url`), else from the address the balancer listens on
(the local end of the connection, as the server's own socket reports it), never from the
request's `Host` header: a client chooses that header, and a URL built from it would send
the next reader (a webhook receiver, another client listing jobs) to the client's host."""

from __future__ import annotations

from aiohttp import web

from comfyfleet.balancer.appkeys import CONFIG
from comfyfleet.config import BalancerConfig


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_url(cfg: BalancerConfig) -> str:
    """`--public-url`, else the configured listen address (for work done outside a request,
    such as webhook payloads of the fleet-wide hook)."""
    return cfg.public_url or f"http://{_host_port(cfg.server.host, cfg.server.port)}"


def public_base(request: web.Request) -> str:
    """`--public-url`, else the address this connection reached (bound host and port)."""
    cfg = request.app[CONFIG]
    if cfg.public_url:
        return cfg.public_url
    transport = request.transport
    local = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(local, tuple) and len(local) >= 2:
        return f"http://{_host_port(str(local[0]), int(local[1]))}"
    return listen_url(cfg)
