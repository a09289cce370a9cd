"""The stand-in's aiohttp app: routes (each also under /api), the websocket, the worker."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from comfyfleet.config import SimConfig
from comfyfleet.sim import api, info
from comfyfleet.sim.catalogue import Catalogue
from comfyfleet.sim.executor import Outcome
from comfyfleet.sim.files import Storage
from comfyfleet.sim.hub import MAX_UPLOAD_SIZE, SERVER_FEATURES
from comfyfleet.sim.state import SIM_STATE, SimState, build_state

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@web.middleware
async def origin_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ComfyUI's guard against browsers posting to localhost from another site: with an
    Origin header and a loopback Host, their host:port must match, else 403."""
    host, origin = request.headers.get("Host"), request.headers.get("Origin")
    if host is not None and origin is not None:
        parsed_origin = urlsplit(origin)
        parsed_host = urlsplit("//" + host.lower())
        host_domain: str | None = host.lower()
        origin_domain: str | None = parsed_origin.netloc.lower()
        if parsed_origin.port is None:
            host_domain = parsed_host.hostname
        if parsed_host.port is None:
            origin_domain = parsed_origin.hostname
        loopback = _is_loopback(parsed_host.hostname)
        if loopback and host_domain and origin_domain and host_domain != origin_domain:
            return web.Response(status=403)
    if request.method == "OPTIONS":
        return web.Response()
    return await handler(request)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    state = request.app[SIM_STATE]
    hub = state.hub
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    # Reusing a clientId replaces the old socket: it stays open but gets nothing more.
    sid = request.rel_url.query.get("clientId", "") or uuid.uuid4().hex
    hub.sockets[sid] = ws
    hub.feature_flags[sid] = {}
    try:
        await ws.send_str(_frame("status", {"status": state.queue_info(), "sid": sid}))
        if state.executor.client_id == sid and state.executor.last_node_id is not None:
            await ws.send_str(_frame("executing", {"node": state.executor.last_node_id}))
        first = True
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            with contextlib.suppress(ValueError, AttributeError):
                data = json.loads(msg.data)
                if first and data.get("type") == "feature_flags":
                    flags = data.get("data", {})
                    hub.feature_flags[sid] = flags if isinstance(flags, dict) else {}
                    await ws.send_str(_frame("feature_flags", SERVER_FEATURES))
            first = False
    finally:
        # Unlike ComfyUI, closing a replaced socket does not unregister its successor.
        if hub.sockets.get(sid) is ws:
            del hub.sockets[sid]
            hub.feature_flags.pop(sid, None)
    return ws


def _frame(event: str, data: object) -> str:
    return json.dumps({"type": event, "data": data})


async def not_found(request: web.Request) -> web.Response:
    """What ComfyUI's static-file catch-all answers for unknown paths."""
    if request.method in ("GET", "HEAD"):
        return web.Response(status=404)
    return web.Response(status=405, headers={"Allow": "GET,HEAD"})


async def run_worker(state: SimState) -> None:
    """Run queued jobs one at a time, in queue order, forever."""
    catalogue = Catalogue(state.classes, state.models, ())
    while True:
        got = await state.queue.get()
        if got is not None:
            task_id, job = got
            started = time.perf_counter()
            try:
                outcome = await state.executor.run(job, catalogue)
            except Exception as exc:  # a sim bug must not stop the queue
                state.hub.log(f"!!! Exception during processing !!! {exc!r}")
                outcome = Outcome(False, [], {}, {})
            status = {
                "status_str": "success" if outcome.success else "error",
                "completed": outcome.success,
                "messages": outcome.messages,
            }
            state.queue.task_done(
                task_id, {"outputs": outcome.outputs, "meta": outcome.meta}, status
            )
            if state.executor.client_id is not None:
                state.hub.send(
                    "executing",
                    {"node": None, "prompt_id": job.prompt_id},
                    state.executor.client_id,
                )
            state.hub.log(f"Prompt executed in {time.perf_counter() - started:.2f} seconds")
        if state.queue.take_flags().get("free_memory"):
            state.executor.reset()


async def _background(app: web.Application) -> AsyncIterator[None]:
    state = app[SIM_STATE]
    await asyncio.to_thread(state.storage.prepare)
    state.hub.log(f"ComfyUI version: {info.COMFYUI_VERSION} (comfyfleet sim)")
    state.hub.log("Device: cpu")
    tasks = [
        asyncio.create_task(state.hub.publish_loop(), name="sim-publish"),
        asyncio.create_task(run_worker(state), name="sim-worker"),
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(state.storage.close)


async def _close_sockets(app: web.Application) -> None:
    await app[SIM_STATE].hub.drop_all()


def create_app(config: SimConfig) -> web.Application:
    """The ComfyUI stand-in. Background tasks start and stop with the app (cleanup_ctx)."""
    storage = Storage(Path(config.data_dir) if config.data_dir else None)
    app = web.Application(client_max_size=MAX_UPLOAD_SIZE, middlewares=[origin_only])
    app[SIM_STATE] = build_state(config, storage)
    routes = web.RouteTableDef()
    routes.get("/ws")(websocket)
    api.add_routes(routes)
    info.add_routes(routes)
    # Every route also answers under /api, registered first as ComfyUI does.
    for route in routes:
        if isinstance(route, web.RouteDef):
            app.router.add_route(route.method, "/api" + route.path, route.handler)
    app.router.add_routes(routes)
    info.add_unaliased_routes(app)
    app.router.add_route("*", "/{tail:.*}", not_found)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_sockets)
    return app
