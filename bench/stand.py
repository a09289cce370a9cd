"""The processes a benchmark runs against: ComfyUI stand-ins, a fleet over them, a bare
aiohttp server. All on loopback, on free ports, logging into one scratch folder."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from comfyfleet.cli.fleet import Fleet, FleetSpec, Proc, wait_all_healthy
from comfyfleet.redis_server import free_port

USER = "bench"
PASSWORD = "bench-" + uuid.uuid4().hex
HOST = "127.0.0.1"
BARE_SERVER = Path(__file__).with_name("bare_server.py")


def _proc(name: str, argv: list[str], port: int, health: str, logs: Path) -> Proc:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "REDIS_"))}
    return Proc(name=name, argv=argv, env=env, log_path=logs / f"{name}.log",
                health_url=f"http://{HOST}:{port}{health}")  # fmt: skip


@contextmanager
def stand_ins(count: int, job_ms: float, logs: Path) -> Iterator[list[str]]:
    """`count` ComfyUI stand-ins whose two-node job takes `job_ms` ms; their base URLs."""
    procs = []
    for i in range(count):
        port = free_port(HOST)
        argv = [sys.executable, "-m", "comfyfleet", "sim", "--host", HOST, "--port", str(port),
                "--node-ms", str(job_ms / 2), "--step-ms", "0",
                "--data-dir", str(logs / f"sim-{i}-{port}")]  # fmt: skip
        procs.append(_proc(f"sim-{i}-{port}", argv, port, "/system_stats", logs))
    try:
        for proc in procs:
            proc.start()
        wait_all_healthy(procs)
        yield [p.health_url.removesuffix("/system_stats") for p in procs]
    finally:
        for proc in procs:
            proc.stop()


@contextmanager
def fleet(comfy_urls: list[str], logs: Path, *, workers: int | None) -> Iterator[Fleet]:
    """Redis of its own, one node per stand-in (prefetch 1) and a balancer with `workers`
    processes (None: the balancer's own default, no --workers flag)."""
    args = ["--workers", str(workers)] if workers is not None else []
    spec = FleetSpec(
        nodes=len(comfy_urls), balancer_port=0, first_node_port=0, comfy_urls=comfy_urls,
        namespace=f"bench{uuid.uuid4().hex[:6]}", username=USER, password=PASSWORD,
        data_dir=logs / f"fleet-{uuid.uuid4().hex[:6]}", balancer_args=args,
    )  # fmt: skip
    with Fleet(spec) as running:
        yield running


@contextmanager
def bare_server(logs: Path) -> Iterator[str]:
    """The baseline web server (bare_server.py); its base URL."""
    port = free_port(HOST)
    proc = _proc("bare", [sys.executable, str(BARE_SERVER), str(port)], port, "/healthz", logs)
    proc.start()
    try:
        wait_all_healthy([proc])
        yield f"http://{HOST}:{port}"
    finally:
        proc.stop()
