"""The node's aiohttp app factory. Resources and loops live in cleanup_ctx (started in order,
stopped in reverse): store, ComfyUI client, worker + its loops. On shutdown the worker
drains first: stop claiming, let running jobs finish for a grace period, hand back the rest;
then a ComfyUI the node runs itself (`--comfy-cmd`) is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from comfyfleet.blobs import BlobStore, open_blob_store
from comfyfleet.clock import SYSTEM_CLOCK
from comfyfleet.comfy import ComfyClient, ComfyOptions
from comfyfleet.config import NodeConfig, redact_url
from comfyfleet.errors import StoreError
from comfyfleet.models.job import Job, JobError
from comfyfleet.models.retry import Backoff
from comfyfleet.node import api, metrics, openapi_ops
from comfyfleet.node.appkeys import COMFY, CONFIG, STATE, WORKER
from comfyfleet.node.comfy_logs import ComfyLogs, JobLogWriter, JobOf
from comfyfleet.node.comfy_stream import LogStreamFollower
from comfyfleet.node.monitor import (
    beat_once,
    cancel_listener,
    check_health,
    health_loop,
    heartbeat_loop,
)
from comfyfleet.node.runner import ComfyRunner
from comfyfleet.node.state import NodeStatus
from comfyfleet.node.supervisor import HOST as CHILD_HOST
from comfyfleet.node.supervisor import ComfySupervisor
from comfyfleet.node.watchdog import HangWatch
from comfyfleet.node.worker import JobControl, Worker
from comfyfleet.redis_server import free_port
from comfyfleet.store.apikeys import ApiKeyStore
from comfyfleet.store.connect import connect
from comfyfleet.store.joblogs import JobLogStore
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.logins import LoginThrottle
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.store.results import ResultStore
from comfyfleet.tasks import Pacer, stop
from comfyfleet.web.auth import API_KEYS, LOGIN_THROTTLE, auth_middlewares
from comfyfleet.web.metrics import add_metrics_route
from comfyfleet.web.openapi import add_docs_routes
from comfyfleet.web.problems import problem_middleware
from comfyfleet.web.query_guard import query_guard
from comfyfleet.web.responses import add_security_headers

log = structlog.get_logger(__name__)

DRAIN_GRACE_S = 20.0
# The client's own cross-check of a quiet prompt (s): often enough to notice a prompt that
# vanished, never more often than the hang bound needs.
SILENCE_CAP_S = 30.0
RECOVER_BACKOFF = Backoff(base_ms=250, cap_ms=5_000, jitter=False)


def default_node_id(port: int) -> str:
    return f"{socket.gethostname()}-{port}"


def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(coro, name=name)


@dataclass
class _Parts:
    """What one node life holds, built once by `_build`."""

    redis: aioredis.Redis
    store: JobStore
    registry: NodeRegistry
    comfy: ComfyClient
    status: NodeStatus
    worker: Worker
    writer: JobLogWriter
    comfy_logs: ComfyLogs
    blobs: BlobStore
    supervisor: ComfySupervisor | None
    probe_now: asyncio.Event = field(default_factory=asyncio.Event)


async def _build(cfg: NodeConfig, node_id: str) -> _Parts:
    redis = connect(cfg.redis)
    keys = Keys(cfg.redis.namespace)
    store = JobStore(redis, keys, events_grace_ms=cfg.redis.events_grace_ms)
    blobs = await open_blob_store(cfg.blobs, redis, keys)
    # A ComfyUI run by the node listens on a loopback port chosen once per node life.
    child_port = free_port(CHILD_HOST) if cfg.comfy_cmd else None
    comfy_url = f"http://{CHILD_HOST}:{child_port}" if child_port else cfg.comfy_url
    # A stable client id: after a restart, ComfyUI sends the events of the prompts the
    # previous life queued to this one. Unreachable for the hang bound: prompts are lost.
    options = ComfyOptions(silence_s=min(SILENCE_CAP_S, cfg.hang_s / 2), unreachable_s=cfg.hang_s)
    comfy = ComfyClient(comfy_url, client_id=f"comfyfleet-{node_id}", options=options)
    status = NodeStatus(node_id=node_id, comfy_url=comfy_url,
                        url=f"http://{cfg.server.host}:{cfg.server.port}",
                        started_ms=SYSTEM_CLOCK.now_ms())  # fmt: skip
    writer = JobLogWriter(JobLogStore(redis, keys))
    comfy_logs = ComfyLogs(job_of=_job_of(lambda: worker.controls), writer=writer)
    comfy.add_listener(comfy_logs.on_event)
    runner = ComfyRunner(
        node_id=node_id, store=store, results=ResultStore(blobs, cfg.blobs), comfy=comfy,
        backoff=Backoff(base_ms=cfg.retry_base_ms, jitter=cfg.retry_jitter),
        explain=_explainer(comfy_logs),
    )  # fmt: skip
    worker = Worker(node_id=node_id, store=store, runner=runner, capacity=1 + cfg.prefetch,
                    can_claim=lambda: status.can_claim, lease_ms=cfg.lease_ms)  # fmt: skip
    parts = _Parts(redis, store, NodeRegistry(redis, keys), comfy, status, worker, writer,
                   comfy_logs, blobs=blobs, supervisor=None)  # fmt: skip
    parts.supervisor = _supervisor(cfg, child_port, parts)
    return parts


def _start_loops(cfg: NodeConfig, parts: _Parts) -> list[asyncio.Task[None]]:
    comfy, status, worker, supervisor = parts.comfy, parts.status, parts.worker, parts.supervisor
    watch = HangWatch(comfy, status, worker, hang_s=cfg.hang_s,
                      on_hang=supervisor.restart_hung if supervisor else None)  # fmt: skip
    keys = parts.store.keys
    return [
        _spawn(health_loop(comfy, status, worker, parts.probe_now), "health"),
        _spawn(_recover_then_claim(parts.registry, parts.store, status, worker), "claim"),
        _spawn(cancel_listener(parts.store, keys, worker), "cancels"),
        _spawn(watch.run(), "hang-watch"),
        _spawn(parts.writer.run(), "comfy-log-writer"),
        _spawn(supervisor.run() if supervisor else _follow_logs(comfy, parts.comfy_logs), "comfy"),
    ]


async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    node_id = cfg.node_id or default_node_id(cfg.server.port)
    structlog.contextvars.bind_contextvars(node_id=node_id)
    parts = await _build(cfg, node_id)
    app[COMFY], app[STATE], app[WORKER] = parts.comfy, parts.status, parts.worker
    app[API_KEYS] = ApiKeyStore(parts.redis, parts.store.keys)  # shared with the balancer
    app[LOGIN_THROTTLE] = LoginThrottle(parts.redis, parts.store.keys)  # counted fleet-wide
    if parts.supervisor is None:  # a ComfyUI of its own is not started yet
        await check_health(parts.comfy, parts.status, parts.worker)
    loops = _start_loops(cfg, parts)
    log.info("node_started", comfy_url=redact_url(parts.status.comfy_url),
             capacity=parts.worker.capacity, comfy_cmd=parts.supervisor is not None)  # fmt: skip
    yield
    await parts.worker.drain(DRAIN_GRACE_S)
    await stop(*loops)
    if parts.supervisor is not None:
        await parts.supervisor.stop()
    with contextlib.suppress(StoreError):
        await parts.writer.write_once()  # the last lines of the last jobs
    with contextlib.suppress(Exception):
        await parts.registry.deregister(node_id, parts.worker.pools)
    await parts.comfy.close()
    await parts.blobs.close()
    await parts.store.close()  # its wake-up listener
    await app[LOGIN_THROTTLE].close()  # its failure-channel listener
    await parts.redis.aclose()


def _job_of(controls: Callable[[], dict[str, JobControl]]) -> JobOf:
    """Which job (and attempt) of this node a ComfyUI prompt id belongs to."""

    def job_of(prompt_id: str) -> tuple[str, int] | None:
        for job_id, control in list(controls().items()):
            if control.prompt_id == prompt_id:
                return job_id, control.attempt
        return None

    return job_of


def _explainer(comfy_logs: ComfyLogs) -> Callable[[Job, JobError], JobError]:
    """A failed attempt's error gains the exception line ComfyUI wrote during it (when the
    error does not already say it), e.g. what a crashed ComfyUI printed before dying."""

    def explain(job: Job, error: JobError) -> JobError:
        line = comfy_logs.exception_of(job.id, job.attempts)
        if line is None or line in error.message:
            return error
        return error.model_copy(update={"details": {**error.details, "comfy_exception": line}})

    return explain


def _supervisor(cfg: NodeConfig, port: int | None, parts: _Parts) -> ComfySupervisor | None:
    """The supervisor of the ComfyUI this node runs itself, if it runs one."""
    if cfg.comfy_cmd is None or port is None:
        return None
    status, worker = parts.status, parts.worker

    def on_health(answering: bool) -> None:
        if answering:
            parts.probe_now.set()  # read its inventory now
        elif status.comfy_healthy:
            status.comfy_healthy = False
            worker.poke()

    return ComfySupervisor(
        command=cfg.comfy_cmd, port=port, comfy=parts.comfy, status=status,
        sink=parts.comfy_logs.emit, on_health=on_health, cwd=cfg.comfy_dir,
        start_timeout_s=cfg.comfy_start_timeout_s, stop_grace_s=cfg.comfy_stop_grace_s,
        backoff_s=(cfg.comfy_restart_s, 60.0), hang_s=cfg.hang_s,
    )  # fmt: skip


async def _follow_logs(comfy: ComfyClient, comfy_logs: ComfyLogs) -> None:
    """An external ComfyUI: its log stream (backlog, then the socket's `logs` frames)."""
    await LogStreamFollower(comfy, comfy_logs.emit).run()


async def _recover_then_claim(
    registry: NodeRegistry, store: JobStore, status: NodeStatus, worker: Worker
) -> None:
    """Beat once (so no reaper takes this node for lost while it recovers), adopt what the
    previous life held, then heartbeat and claim. Retried with backoff while Redis is down,
    so a node can start before its Redis does."""
    pacer = Pacer(RECOVER_BACKOFF)
    while True:
        try:
            await beat_once(registry, store, status, worker)
            await _recover(store, worker)
            break
        except StoreError as exc:  # Redis unreachable: try again
            log.warning("node_recovery_failed", error=exc.detail, retry_in_s=pacer.delay_s)
            await pacer.sleep()
    beats = _spawn(heartbeat_loop(registry, store, status, worker), "heartbeat")
    try:
        await worker.run()
    finally:
        await stop(beats)


async def _recover(store: JobStore, worker: Worker) -> None:
    """A node restarted with the same id takes over the jobs its last life still holds:
    their prompts may be queued, running or finished in ComfyUI (prompt ids are derived from
    job and attempt, and the socket's client id is stable), so each is followed to its end
    instead of being run again. A prompt ComfyUI no longer has ends the attempt."""
    for job_id in await store.jobs_of(worker.node_id):
        job = await store.get(job_id)
        if job is not None and job.node_id == worker.node_id and not job.is_terminal:
            worker.adopt(job)


def create_app(cfg: NodeConfig) -> web.Application:
    app = web.Application(
        middlewares=[
            problem_middleware,
            *auth_middlewares(cfg.server),
            query_guard(openapi_ops.OPERATIONS),
        ]
    )
    app[CONFIG] = cfg
    app.cleanup_ctx.append(_node_ctx)
    app.add_routes(api.routes)
    add_docs_routes(app, openapi_ops.document, title="comfyfleet node")
    add_security_headers(app)
    if cfg.server.metrics:
        add_metrics_route(app, metrics.collect)
    return app
