"""Typed application keys of the balancer app: everything handlers reach for."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from comfyfleet.config import BalancerConfig
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.store.results import ResultStore
from comfyfleet.store.userdata import UserDataStore
from comfyfleet.templates.publishing import WorkflowPublisher
from comfyfleet.templates.registry import WorkflowRegistry

CONFIG = web.AppKey("config", BalancerConfig)
REDIS = web.AppKey("redis", aioredis.Redis)
JOBS = web.AppKey("jobs", JobStore)
NODES = web.AppKey("nodes", NodeRegistry)
RESULTS = web.AppKey("results", ResultStore)
WORKFLOWS = web.AppKey("workflows", WorkflowRegistry)
PUBLISHER = web.AppKey("publisher", WorkflowPublisher)
USERDATA = web.AppKey("userdata", UserDataStore)
