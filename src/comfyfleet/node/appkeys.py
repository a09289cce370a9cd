"""Typed application keys of the node app."""

from __future__ import annotations

from aiohttp import web

from comfyfleet.comfy import ComfyClient
from comfyfleet.config import NodeConfig
from comfyfleet.node.state import NodeStatus
from comfyfleet.node.worker import Worker

CONFIG = web.AppKey("config", NodeConfig)
COMFY = web.AppKey("comfy", ComfyClient)
STATE = web.AppKey("state", NodeStatus)
WORKER = web.AppKey("worker", Worker)
