"""`/metrics` for both roles, rendered by `prometheus_client`.

Each role's collector reads its numbers at scrape time (the balancer from Redis, the node
from itself) and returns them as metric families; `render` hands them to prometheus_client
through a one-shot custom collector, so the text format (escaping, histograms' `_bucket`,
`_sum`, `_count`) is the library's. Numbers every replica must agree on -- counts, queue
depths, the job latency histograms -- live in Redis (store/histograms.py says why), so any
replica answers the same; what is truly one process's own (the Logdy sink's dropped lines)
is that process's.

`/metrics` is off unless a role is started with `--metrics`; when on, it is open (scrapers
carry no secrets, see web/auth.py), so it holds counts only: no job ids, params or URLs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.registry import Collector as PromCollector
from prometheus_client.registry import CollectorRegistry

from comfyfleet.logs.logdy import LogdySink
from comfyfleet.store.histograms import HistogramSpec, Series
from comfyfleet.web.openapi import Op, Reply

# The text format prometheus_client writes for these names is format 0.0.4's.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = Mapping[str, str]
# The Logdy sink of this process (cli/serve.py sets it when --logdy is on).
LOGDY_SINK = web.AppKey("logdy_sink", LogdySink)


@dataclass(frozen=True)
class Metric:
    """A gauge or counter with its samples (label set -> value)."""

    name: str
    kind: Literal["gauge", "counter"]
    help: str
    samples: Sequence[tuple[Labels, float]] = field(default_factory=tuple)

    def family(self) -> Family:
        names = sorted({k for labels, _ in self.samples for k in labels})
        cls = GaugeMetricFamily if self.kind == "gauge" else CounterMetricFamily
        fam = cls(self.name, self.help, labels=names)
        for labels, value in self.samples:
            fam.add_metric([labels.get(k, "") for k in names], value)
        return fam


def histogram(spec: HistogramSpec, series: Iterable[Series]) -> Family:
    """A histogram family from cumulative bucket counts read from Redis."""
    fam = HistogramMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    les = [*(f"{float(b)}" for b in spec.bounds), "+Inf"]
    for s in series:
        fam.add_metric(list(s.labels), list(zip(les, s.cumulative, strict=True)), s.sum)
    return fam


Collected = Metric | Family


class _Once(PromCollector):
    def __init__(self, families: Sequence[Family]) -> None:
        self.families = families

    def collect(self) -> Iterator[Family]:
        yield from self.families


def render(metrics: Iterable[Collected]) -> str:
    """The exposition text of `metrics`."""
    registry = CollectorRegistry(auto_describe=False)
    families = [m.family() if isinstance(m, Metric) else m for m in metrics]
    registry.register(_Once(families))
    return generate_latest(registry).decode()


def process_metrics(app: web.Application) -> list[Collected]:
    """What only this process knows."""
    sink = app.get(LOGDY_SINK)
    return [
        Metric("comfyfleet_logdy_dropped_lines_total", "counter",
               "Log lines this process dropped because Logdy could not keep up or was away.",
               [({}, float(sink.dropped if sink is not None else 0))]),
    ]  # fmt: skip


Collector = Callable[[web.Application], Awaitable[list[Collected]]]


def add_metrics_route(app: web.Application, collect: Collector) -> None:
    """Serve `collect`'s metrics, and this process's own, at GET /metrics."""

    async def metrics(request: web.Request) -> web.Response:
        body = render([*await collect(request.app), *process_metrics(request.app)])
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
                        'comfyfleet_queue_depth{pool="default"} 0.0\n')},
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
