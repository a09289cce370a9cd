"""Queue-facing routes: /prompt, /queue, /interrupt, /free, /history (ComfyUI server.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web

from comfyfleet.comfy.validation import Validation, validate_prompt
from comfyfleet.sim.catalogue import Catalogue
from comfyfleet.sim.queue import Job
from comfyfleet.sim.state import SIM_STATE, SimState

# aiohttp's own body for an unhandled exception, which is what ComfyUI answers with.
SERVER_TROUBLE = "500 Internal Server Error\n\nServer got itself in trouble"


class BodyError(Exception):
    """The request body could not be used; answered like ComfyUI's unhandled exception."""


def server_trouble() -> web.Response:
    return web.Response(status=500, text=SERVER_TROUBLE, headers={"Connection": "close"})


async def json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise BodyError(str(exc)) from exc


def _state(request: web.Request) -> SimState:
    return request.app[SIM_STATE]


def _no_prompt() -> web.Response:
    error = {
        "type": "no_prompt",
        "message": "No prompt provided",
        "details": "No prompt provided",
        "extra_info": {},
    }
    return web.json_response({"error": error, "node_errors": {}}, status=400)


async def post_prompt(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    state.hub.log("got prompt")
    if state.faults.take_prompt_rejection():
        return server_trouble()
    try:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise BodyError("body is not an object")
        # Every parsed request without "number" takes a number, even one rejected below.
        number = float(body["number"]) if "number" in body else None
        if number is None:
            number = state.queue.next_number(bool(body.get("front")))
        if "prompt" not in body:
            return _no_prompt()
        return await _queue_prompt(state, body, number)
    except (BodyError, TypeError, ValueError, AttributeError):
        return server_trouble()


async def _queue_prompt(state: SimState, body: dict[str, Any], number: float) -> web.Response:
    prompt = body["prompt"]
    if not isinstance(prompt, dict):
        raise BodyError("prompt is not an object")
    prompt_id = str(body.get("prompt_id", uuid.uuid4()))
    targets = body.get("partial_execution_targets")
    catalogue = Catalogue(
        state.classes, state.models, await asyncio.to_thread(state.storage.input_images)
    )
    result: Validation = await asyncio.to_thread(
        validate_prompt, prompt, catalogue, state.storage.input_exists, targets
    )
    extra_data = body.get("extra_data", {})
    if "client_id" in body:
        extra_data["client_id"] = body["client_id"]
    if not result.ok:
        state.hub.log(f"invalid prompt: {result.error}")
        return web.json_response(
            {"error": result.error, "node_errors": result.node_errors}, status=400
        )
    state.queue.put(Job(number, prompt_id, prompt, extra_data, result.outputs))
    return web.json_response(
        {"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors}
    )


async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response(_state(request).queue_info())


async def get_queue(request: web.Request) -> web.Response:
    running, pending = _state(request).queue.snapshot()
    return web.json_response({"queue_running": running, "queue_pending": pending})


async def post_queue(request: web.Request) -> web.StreamResponse:
    queue = _state(request).queue
    try:
        body = await json_body(request)
        if body.get("clear"):
            queue.wipe()
        for prompt_id in body.get("delete", []):
            queue.delete(prompt_id)
    except (BodyError, TypeError, AttributeError):
        return server_trouble()
    return web.Response()


async def post_interrupt(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        body = await json_body(request)
    except BodyError:
        body = {}
    target = body.get("prompt_id") if isinstance(body, dict) else None
    if target:
        # Only a running job can be interrupted by id; anything else is ignored.
        running = [job.prompt_id for job in state.queue.running.values()]
        if target in running:
            state.executor.interrupted = True
        else:
            state.hub.log(f"Prompt {target} is not currently running, skipping interrupt")
    else:
        state.executor.interrupted = True
    return web.Response()


async def post_free(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    try:
        body = await json_body(request)
        unload, free = body.get("unload_models", False), body.get("free_memory", False)
    except (BodyError, AttributeError):
        return server_trouble()
    if unload:
        state.queue.set_flag("unload_models", unload)
    if free:
        state.queue.set_flag("free_memory", free)
    return web.Response()


async def get_history(request: web.Request) -> web.StreamResponse:
    query = request.rel_url.query
    try:
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
    except ValueError:
        return server_trouble()
    history = _state(request).queue.get_history(max_items=max_items, offset=offset)
    return web.json_response(history)


async def get_history_item(request: web.Request) -> web.Response:
    prompt_id = request.match_info["prompt_id"]
    return web.json_response(_state(request).queue.get_history(prompt_id=prompt_id))


async def post_history(request: web.Request) -> web.StreamResponse:
    queue = _state(request).queue
    try:
        body = await json_body(request)
        if body.get("clear"):
            queue.history.clear()
        for prompt_id in body.get("delete", []):
            queue.history.pop(prompt_id, None)
    except (BodyError, TypeError, AttributeError):
        return server_trouble()
    return web.Response()


def add_routes(routes: web.RouteTableDef) -> None:
    routes.post("/prompt")(post_prompt)
    routes.get("/prompt")(get_prompt)
    routes.get("/queue")(get_queue)
    routes.post("/queue")(post_queue)
    routes.post("/interrupt")(post_interrupt)
    routes.post("/free")(post_free)
    routes.get("/history")(get_history)
    routes.get("/history/{prompt_id}")(get_history_item)
    routes.post("/history")(post_history)
