"""Admin handlers of /api/v1/apikeys: create (the key is shown once), list, revoke.

Only the admin (basic auth) may call these: a bearer key cannot mint or revoke keys, so a
leaked key cannot entrench itself.
"""

from __future__ import annotations

import re

import structlog
from aiohttp import web

from comfyfleet.errors import NotFound
from comfyfleet.store.apikeys import KEY_ID_PATTERN, ApiKeyList, NewApiKeyRequest
from comfyfleet.store.limits import LimitStore
from comfyfleet.web.auth import API_KEYS, require_admin
from comfyfleet.web.responses import json_response, read_json

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)
_KEY_ID = re.compile(KEY_ID_PATTERN)


@routes.post("/api/v1/apikeys")
async def create_key(request: web.Request) -> web.Response:
    require_admin(request)
    body = NewApiKeyRequest.model_validate(await read_json(request))
    store = request.app[API_KEYS]
    created = await store.create(body.name, body.scopes)
    if body.limits is not None:
        await LimitStore(store.redis, store.keys).update(f"apikey:{created.id}", body.limits)
    log.info("apikey_created", key_id=created.id, name=created.name)  # never the key
    return json_response(created, status=201, headers={"Cache-Control": "no-store"})


@routes.get("/api/v1/apikeys")
async def list_keys(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response(ApiKeyList(keys=await request.app[API_KEYS].all()))


@routes.delete("/api/v1/apikeys/{key_id}")
async def revoke_key(request: web.Request) -> web.Response:
    require_admin(request)
    key_id = request.match_info["key_id"]
    if not _KEY_ID.fullmatch(key_id) or not await request.app[API_KEYS].revoke(key_id):
        raise NotFound(f"no API key {key_id!r}", key_id=key_id)
    log.info("apikey_revoked", key_id=key_id)
    return web.Response(status=204)
