"""The node's aiohttp app factory. Resources and loops live in cleanup_ctx (started in order,
stopped in reverse): store, ComfyUI client, worker + its loops. On shutdown the worker
drains first: stop claiming, let running jobs finish for a grace period, hand back the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import structlog
from aiohttp import web

from comfyfleet.clock import SYSTEM_CLOCK
from comfyfleet.comfy import ComfyClient
from comfyfleet.config import NodeConfig
from comfyfleet.node import api
from comfyfleet.node.appkeys import COMFY, CONFIG, STATE, WORKER
from comfyfleet.node.monitor import cancel_listener, check_health, health_loop, heartbeat_loop
from comfyfleet.node.runner import ComfyRunner
from comfyfleet.node.state import NodeStatus
from comfyfleet.node.worker import Worker
from comfyfleet.store.connect import connect
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.store.results import RedisResultStore
from comfyfleet.web.auth import auth_middlewares
from comfyfleet.web.problems import problem_middleware

log = structlog.get_logger(__name__)

DRAIN_GRACE_S = 20.0


def default_node_id(port: int) -> str:
    return f"{socket.gethostname()}-{port}"


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(coro, name=name)


async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    node_id = cfg.node_id or default_node_id(cfg.server.port)
    structlog.contextvars.bind_contextvars(node_id=node_id)
    redis = connect(cfg.redis)
    keys = Keys(cfg.redis.namespace)
    store = JobStore(redis, keys)
    registry = NodeRegistry(redis, keys)
    comfy = ComfyClient(cfg.comfy_url, client_id=f"comfyfleet-{node_id}")
    status = NodeStatus(
        node_id=node_id,
        comfy_url=cfg.comfy_url,
        url=f"http://{cfg.server.host}:{cfg.server.port}",
        started_ms=SYSTEM_CLOCK.now_ms(),
    )
    runner = ComfyRunner(
        node_id=node_id, store=store, results=RedisResultStore(redis, keys), comfy=comfy
    )
    worker = Worker(
        node_id=node_id,
        store=store,
        runner=runner,
        capacity=1 + cfg.prefetch,
        can_claim=lambda: status.comfy_healthy,
    )
    app[COMFY], app[STATE], app[WORKER] = comfy, status, worker
    await check_health(comfy, status, worker)
    await _recover(store, node_id)
    loops = [
        _spawn(health_loop(comfy, status, worker), "health"),
        _spawn(heartbeat_loop(registry, store, status, worker), "heartbeat"),
        _spawn(cancel_listener(store, keys, worker), "cancels"),
        _spawn(worker.run(), "claim"),
    ]
    log.info("node_started", comfy_url=cfg.comfy_url, capacity=worker.capacity)
    yield
    await worker.drain(DRAIN_GRACE_S)
    await _stop(loops)
    with contextlib.suppress(Exception):
        await registry.deregister(node_id)
    await comfy.close()
    await redis.aclose()


async def _recover(store: JobStore, node_id: str) -> None:
    """A node restarted with the same id hands back whatever its last life still held:
    the old process's prompts cannot be followed from here with certainty."""
    for job_id in await store.jobs_of(node_id):
        with contextlib.suppress(Exception):
            await store.release(job_id, node_id)
            log.warning("job_handed_back_after_restart", job_id=job_id)


def create_app(cfg: NodeConfig) -> web.Application:
    app = web.Application(middlewares=[problem_middleware, *auth_middlewares(cfg.server)])
    app[CONFIG] = cfg
    app.cleanup_ctx.append(_node_ctx)
    app.add_routes(api.routes)
    return app
