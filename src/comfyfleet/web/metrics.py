"""Prometheus text exposition (format 0.0.4) for `/metrics`, written by hand: a handful of
gauges and counters read from Redis or the process at scrape time need no client library.

`/metrics` is off unless a role is started with `--metrics`; when on, it is open (scrapers
carry no secrets, see web/auth.py), so it holds counts only: no job ids, params or URLs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from comfyfleet.web.openapi import Op, Reply

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = Mapping[str, str]


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Literal["gauge", "counter"]
    help: str
    samples: Sequence[tuple[Labels, float]] = field(default_factory=tuple)


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text of `metrics`, one HELP and TYPE line each, then its samples."""
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in metric.samples:
            inner = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{metric.name}{{{inner}}} {_number(value)}" if inner
                         else f"{metric.name} {_number(value)}")  # fmt: skip
    return "\n".join(lines) + "\n"


Collector = Callable[[web.Application], Awaitable[list[Metric]]]


def add_metrics_route(app: web.Application, collect: Collector) -> None:
    """Serve `collect`'s metrics at GET /metrics."""

    async def metrics(request: web.Request) -> web.Response:
        body = render(await collect(request.app))
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", metrics)


METRICS_OP = Op(
    "GET", "/metrics", "metrics", "Prometheus metrics",
    "Only with `--metrics` (else 401 like any unknown path). Open: scrapers carry no "
    "secrets, and it holds counts only. Prometheus text format 0.0.4.",
    "health",
    {200: Reply("Metrics", schema={"type": "string"}, media_type=CONTENT_TYPE,
                example='# HELP comfyfleet_queue_depth Jobs waiting to be claimed, by pool.\n'
                        '# TYPE comfyfleet_queue_depth gauge\n'
                        'comfyfleet_queue_depth{pool="default"} 0\n')},
    auth="open",
)  # fmt: skip


def served_only(doc: dict[str, Any], app: web.Application) -> dict[str, Any]:
    """`doc` without /metrics when `app` does not serve it (metrics off)."""
    served = any(
        r.resource is not None and r.resource.canonical == "/metrics" for r in app.router.routes()
    )
    if not served:
        doc["paths"].pop("/metrics", None)
    return doc
