"""The native surface's resources: the prompt feed, what each principal deleted from
its /history, an HTTP client for reaching nodes
(`/free`), and the fleet's merged inventory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from comfyfleet.balancer.appkeys import CONFIG, JOBS, REDIS
from comfyfleet.balancer.native.catalog import Inventory
from comfyfleet.store.comfy_history import HistoryVeil
from comfyfleet.store.inventory import InventoryStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.prompt_feed import PromptFeed
from comfyfleet.web.auth import credentials_headers

FEED = web.AppKey("comfy_prompt_feed", PromptFeed)
NODE_HTTP = web.AppKey("comfy_node_http", aiohttp.ClientSession)
INVENTORY = web.AppKey("comfy_inventory", Inventory)
VEIL = web.AppKey("comfy_history_veil", HistoryVeil)
# How long the balancer waits for a node's answer (s).
NODE_TIMEOUT_S = 10.0


async def native_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    keys = Keys(cfg.redis.namespace)
    app[FEED] = PromptFeed(app[REDIS], keys)
    app[VEIL] = HistoryVeil(app[REDIS], keys, app[JOBS].retention_ms)
    password = cfg.server.password.get_secret_value() if cfg.server.password else None
    # Nodes share the fleet's credentials (API_USERNAME / API_PASSWORD on every role).
    session = aiohttp.ClientSession(
        headers=credentials_headers(cfg.server.username, password, None),
        timeout=aiohttp.ClientTimeout(total=NODE_TIMEOUT_S),
    )
    app[NODE_HTTP] = session
    app[INVENTORY] = Inventory(InventoryStore(app[REDIS], keys))
    yield
    await session.close()
