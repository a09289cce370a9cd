"""Templates in Redis: publish once at start-up, read on every request without the disk.

Each workflow is one hash (`keys.workflow(name)`): version -> template JSON, plus "current"
-> version; `keys.workflows` maps name -> current version. Versions are content hashes and
never change once written, so readers cache them in process forever (up to a bound) and
only ask Redis which version is current -- every balancer replica sees the same one.
"""

from __future__ import annotations

import builtins
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from comfyfleet.errors import UnknownWorkflow
from comfyfleet.store.keys import Keys
from comfyfleet.templates.model import Template

CURRENT = "current"
# Distinct (name, version) pairs kept parsed in memory per registry.
DEFAULT_CACHE_SIZE = 256
_PUBLISH_LUA = (Path(__file__).parent / "lua" / "publish.lua").read_text()


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    # False when that version was already current: publishing again is a no-op.
    changed: bool


async def publish(
    redis: aioredis.Redis, keys: Keys, templates: Iterable[Template]
) -> list[Published]:
    """Store each template and make it current, one atomic script call per workflow."""
    script = redis.register_script(_PUBLISH_LUA)
    out = []
    for template in templates:
        changed = await script(
            keys=[keys.workflow(template.name), keys.workflows],
            args=[template.name, template.version, template.model_dump_json()],
        )
        out.append(Published(template.name, template.version, bool(changed)))
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
        version = await self.redis.hget(self.keys.workflows, name)
        if version is None:
            raise UnknownWorkflow(f"no workflow named {name!r}", workflow=name)
        return _text(version)

    async def get(self, name: str, version: str | None = None) -> Template:
        """The template at `version` (None: the current one); UnknownWorkflow if absent."""
        if version is None:
            version = await self.current_version(name)
        cached = self._cache.get((name, version))
        if cached is not None:
            self._cache.move_to_end((name, version))
            return cached
        if version == CURRENT:
            raise UnknownWorkflow(f"workflow {name!r} has no version {version!r}", workflow=name)
        raw = await self.redis.hget(self.keys.workflow(name), version)
        if raw is None:
            raise UnknownWorkflow(
                f"workflow {name!r} has no version {version!r}", workflow=name, version=version
            )
        return self._remember(Template.model_validate_json(raw))

    async def list(self) -> builtins.list[Template]:
        """The current version of every published workflow, by name."""
        current = await self.redis.hgetall(self.keys.workflows)
        names = sorted((_text(k), _text(v)) for k, v in current.items())
        return [await self.get(name, version) for name, version in names]

    async def versions(self, name: str) -> builtins.list[str]:
        """Every stored version of a workflow (unordered: versions are hashes, not counters)."""
        fields = await self.redis.hkeys(self.keys.workflow(name))
        versions = sorted(v for v in map(_text, fields) if v != CURRENT)
        if not versions:
            raise UnknownWorkflow(f"no workflow named {name!r}", workflow=name)
        return versions

    def _remember(self, template: Template) -> Template:
        self._cache[(template.name, template.version)] = template
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return template
