"""Reading templates from Redis on every request, without the disk.

Each workflow is one hash (`keys.workflow(name)`): version -> template JSON, plus "current"
-> the active version; `keys.workflows` maps name -> active version (writes: publishing.py).
Versions are content hashes and never change once written, so readers cache them in process
(up to a bound) and ask Redis only which version is active, once per request: a publish or
rollback is live on every balancer replica with the next request, never stale.
"""

from __future__ import annotations

import builtins
import hashlib
import re
from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis

from comfyfleet.errors import ComfyfleetError, UnknownWorkflow
from comfyfleet.models.job import Job
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import text
from comfyfleet.templates.model import WORKFLOW_NAME_PATTERN, Template
from comfyfleet.templates.render import render

CURRENT = "current"
# Fields of a workflow hash that are not versions.
POINTERS = frozenset({CURRENT, "seeded"})
_NAME = re.compile(WORKFLOW_NAME_PATTERN)
# Distinct (name, version) pairs kept parsed in memory per registry.
DEFAULT_CACHE_SIZE = 256


class WorkflowRegistry:
    """Reads published templates; safe to share across a process's requests."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], Template] = OrderedDict()

    async def current_version(self, name: str) -> str:
        """The active version; UnknownWorkflow when `name` is not published (or retired)."""
        version = await self.redis.hget(self.keys.workflows, name)
        if version is None:
            raise UnknownWorkflow(f"no workflow named {name!r}", workflow=name)
        return text(version)

    async def get(self, name: str, version: str | None = None) -> Template:
        """The template at `version` (None: the current one); UnknownWorkflow if absent."""
        if not _NAME.fullmatch(name):  # names no workflow, and must not reach a key
            raise UnknownWorkflow(f"no workflow named {name!r}", workflow=name)
        if version is None:
            version = await self.current_version(name)
        cached = self._cache.get((name, version))
        if cached is not None:
            self._cache.move_to_end((name, version))
            return cached
        if version in POINTERS:
            raise UnknownWorkflow(f"workflow {name!r} has no version {version!r}", workflow=name)
        raw = await self.redis.hget(self.keys.workflow(name), version)
        if raw is None:
            raise UnknownWorkflow(
                f"workflow {name!r} has no version {version!r}", workflow=name, version=version
            )
        return self._remember(Template.model_validate_json(raw))

    async def index(self) -> dict[str, str]:
        """Name -> active version of every published workflow, sorted by name."""
        current = await self.redis.hgetall(self.keys.workflows)
        return dict(sorted((text(k), text(v)) for k, v in current.items()))

    async def list(self, index: dict[str, str] | None = None) -> builtins.list[Template]:
        """The active version of every published workflow, by name (of `index` if given)."""
        index = await self.index() if index is None else index
        return [await self.get(name, version) for name, version in index.items()]

    async def versions(self, name: str) -> builtins.list[str]:
        """Every stored version of a workflow (unordered: versions are hashes, not counters)."""
        if not _NAME.fullmatch(name):
            raise UnknownWorkflow(f"no workflow named {name!r}", workflow=name)
        fields = await self.redis.hkeys(self.keys.workflow(name))
        versions = sorted(v for v in map(text, fields) if v not in POINTERS)
        if not versions:
            raise UnknownWorkflow(f"no workflow named {name!r}", workflow=name)
        return versions

    async def job_graph(self, job: Job) -> dict[str, Any]:
        """The graph `job` ran: its own, or, for a finished job of a published workflow,
        which keeps none (drop_rendered_graph in store/lua/_lib.lua), its template at its
        version rendered again with its params -- the same graph, as rendering is pure and
        versions never change. {} when that version is not in Redis."""
        if job.graph or not (job.workflow and job.workflow_version):
            return job.graph
        try:
            return render(await self.get(job.workflow, job.workflow_version), job.params)
        except ComfyfleetError:
            return {}

    def _remember(self, template: Template) -> Template:
        self._cache[(template.name, template.version)] = template
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return template


def index_etag(index: dict[str, str]) -> str:
    """A strong ETag of the set of active versions: it changes with every publish, rollback
    or retire, so a watcher polls the listing with If-None-Match for almost nothing."""
    canonical = "\n".join(f"{name} {version}" for name, version in index.items())
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:16] + '"'
