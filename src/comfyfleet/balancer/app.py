"""The balancer's aiohttp app factory. Every resource and background loop lives in a
cleanup_ctx: started in order, stopped in reverse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from comfyfleet.balancer import (
    alerts_api,
    apikeys_api,
    events_api,
    fleet_api,
    inputs_api,
    jobs_api,
    logs_api,
    metrics,
    openapi_ops,
    outputs_api,
    tenants_api,
    workflows_api,
)
from comfyfleet.balancer.admission import admission_middleware
from comfyfleet.balancer.appkeys import (
    CONFIG,
    JOBS,
    NODES,
    PUBLISHER,
    REDIS,
    RESULTS,
    USERDATA,
    WORKFLOWS,
)
from comfyfleet.balancer.native import add_native_routes
from comfyfleet.balancer.reaper import Reaper
from comfyfleet.balancer.webhooks import webhooks_ctx
from comfyfleet.blobs import open_blob_store
from comfyfleet.blobs.sweeper import Sweeper
from comfyfleet.config import BalancerConfig
from comfyfleet.editor import api as editor_api
from comfyfleet.editor.extensions import add_extension_routes
from comfyfleet.editor.frontend import add_frontend_routes, frontend_root
from comfyfleet.store.apikeys import ApiKeyStore
from comfyfleet.store.connect import connect
from comfyfleet.store.inputs import InputStore
from comfyfleet.store.inventory import InventoryStore
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.leader import LeaderLease, Leadership, Lease, Work
from comfyfleet.store.logins import LoginThrottle
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.store.results import ResultStore
from comfyfleet.store.routing import CapabilityStore, Router
from comfyfleet.store.userdata import UserDataStore
from comfyfleet.tasks import stop
from comfyfleet.templates.builtin import builtin_folder
from comfyfleet.templates.loader import load_folders
from comfyfleet.templates.publishing import WorkflowPublisher
from comfyfleet.templates.registry import WorkflowRegistry
from comfyfleet.web.auth import API_KEYS, LOGIN_THROTTLE, auth_middlewares
from comfyfleet.web.metrics import add_metrics_route
from comfyfleet.web.openapi import add_docs_routes
from comfyfleet.web.problems import problem_middleware
from comfyfleet.web.query_guard import query_guard
from comfyfleet.web.responses import add_security_headers

log = structlog.get_logger(__name__)

# The leadership lease of each fleet-wide singleton (ms): a dead leader's work resumes in
# another process within about this long.
SINGLETON_LEASE_MS = 5_000


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    redis = connect(cfg.redis)
    keys = Keys(cfg.redis.namespace)
    app[REDIS] = redis
    app[JOBS] = JobStore(redis, keys, events_grace_ms=cfg.redis.events_grace_ms)
    app[NODES] = NodeRegistry(redis, keys)
    inventories = InventoryStore(redis, keys)
    app[JOBS].router = Router(app[NODES], CapabilityStore(redis, keys, inventories))
    app[WORKFLOWS] = WorkflowRegistry(redis, keys)
    app[PUBLISHER] = WorkflowPublisher(redis, keys)
    app[API_KEYS] = ApiKeyStore(redis, keys)
    blobs = await open_blob_store(cfg.blobs, redis, keys)
    app[RESULTS] = ResultStore(blobs, cfg.blobs)
    app[LOGIN_THROTTLE] = LoginThrottle(redis, keys)
    app[USERDATA] = UserDataStore(redis, keys)
    yield
    await blobs.close()
    await app[JOBS].close()  # its wake-up listener, if anything subscribed
    await app[LOGIN_THROTTLE].close()  # its failure-channel listener
    await redis.aclose()


async def _publish_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the workflow folders once and seed the registry with them (a version the folders
    held at an earlier start is not made active again: see `WorkflowPublisher.seed`)."""
    cfg = app[CONFIG]
    folders = [builtin_folder()]
    if cfg.workflows_dir:
        folders.append(Path(cfg.workflows_dir))
    loaded = load_folders(folders)
    for warning in loaded.warnings:
        log.warning("workflow_warning", detail=warning)
    published = await app[PUBLISHER].seed(list(loaded))
    log.info(
        "workflows_published",
        workflows={p.name: p.version for p in published},
        changed=[p.name for p in published if p.changed],
    )
    yield


def singleton(app: web.Application, name: str, work: Work) -> Leadership:
    """`work` run by one process of the whole fleet at a time (every worker of every
    replica contends for the lease `name`; store/leader.py)."""
    lease = LeaderLease(app[REDIS], Keys(app[CONFIG].redis.namespace), name,
                        ttl_ms=SINGLETON_LEASE_MS)  # fmt: skip
    return Leadership(lease, work)


async def _reaper_ctx(app: web.Application) -> AsyncIterator[None]:
    reaper = Reaper(app[JOBS], app[NODES])
    terms = 0

    async def reap(_lease: Lease) -> None:
        nonlocal terms
        if terms:
            # Leading again after losing the lease (Redis unreachable, or another process
            # led meanwhile): node heartbeats may be stale through no fault of theirs.
            reaper.outage_seen()
        terms += 1
        await reaper.run()

    task = asyncio.create_task(singleton(app, "reaper", reap).run(), name="reaper")
    yield
    await stop(task)


async def _sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    """Orphaned objects and dead multipart uploads in an object store (blobs/sweeper.py);
    Redis blobs expire by TTL, so there is nothing to sweep there."""
    cfg = app[CONFIG].blobs
    task = None
    if app[RESULTS].blobs.kind != "redis" and cfg.sweep_interval_s > 0:
        jobs = app[JOBS]
        inputs = InputStore(jobs.redis, jobs.keys, blobs=app[RESULTS].blobs)
        sweeper = Sweeper(app[RESULTS], jobs, inputs, grace_ms=int(cfg.sweep_grace_s * 1000))

        async def sweep(_lease: Lease) -> None:
            await sweeper.run(cfg.sweep_interval_s)

        task = asyncio.create_task(singleton(app, "sweeper", sweep).run(), name="sweeper")
    yield
    await stop(task)


def create_app(cfg: BalancerConfig) -> web.Application:
    app = web.Application(
        middlewares=[
            problem_middleware,
            *auth_middlewares(cfg.server),
            query_guard(openapi_ops.OPERATIONS),
            admission_middleware,
        ],
        client_max_size=jobs_api.JSON_BODY_LIMIT,
    )
    app[CONFIG] = cfg
    app.cleanup_ctx.extend([_store_ctx, _publish_ctx, _reaper_ctx, _sweeper_ctx])
    app.cleanup_ctx.extend([events_api.live_ctx, inputs_api.inputs_ctx, webhooks_ctx])
    app.cleanup_ctx.append(alerts_api.alerts_ctx)
    app.add_routes(jobs_api.routes)
    app.add_routes(outputs_api.routes)
    app.add_routes(events_api.routes)
    app.add_routes(inputs_api.routes)
    app.add_routes(logs_api.routes)
    app.add_routes(fleet_api.routes)
    app.add_routes(workflows_api.routes)
    app.add_routes(apikeys_api.routes)
    app.add_routes(alerts_api.routes)
    app.add_routes(tenants_api.routes)
    add_native_routes(app)
    add_docs_routes(app, openapi_ops.document, title="comfyfleet balancer")
    # ComfyUI's editor at / (editor/): its pages, user data, and the fleet's extension.
    app.add_routes(editor_api.routes)
    add_extension_routes(app)
    add_frontend_routes(app, frontend_root())
    add_security_headers(app)
    if cfg.server.metrics:
        add_metrics_route(app, metrics.collect)
    return app
