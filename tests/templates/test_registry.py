"""Publishing templates to a real Redis and reading them back without the disk."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from comfyfleet.config import RedisConfig
from comfyfleet.errors import UnknownWorkflow
from comfyfleet.store.keys import Keys
from comfyfleet.templates.loader import load_folder
from comfyfleet.templates.publishing import publish
from comfyfleet.templates.registry import WorkflowRegistry
from comfyfleet.templates.render import render, resolve_params, validate_params
from tests.templates.conftest import read_json, write_json


@pytest.fixture
def keys(redis_config: RedisConfig) -> Keys:
    return Keys(redis_config.namespace)


async def test_published_templates_are_read_back_without_the_disk(
    redis_client: aioredis.Redis, keys: Keys, workflows_copy: Path
) -> None:
    loaded = load_folder(workflows_copy)
    results = await publish(redis_client, keys, loaded)
    assert {r.name for r in results} == set(loaded.templates)
    assert all(r.changed for r in results)
    shutil.rmtree(workflows_copy)

    registry = WorkflowRegistry(redis_client, keys)
    for name, original in loaded.templates.items():
        assert await registry.get(name) == original
        assert await registry.get(name, original.version) == original
    assert [t.name for t in await registry.list()] == sorted(loaded.templates)

    template = await registry.get("txt2img")
    params = resolve_params(template, validate_params(template, {"prompt": "x"}), random.Random(1))
    assert render(template, params) == render(loaded.templates["txt2img"], params)


async def test_republishing_the_same_content_is_a_no_op(
    redis_client: aioredis.Redis, keys: Keys, workflows_copy: Path
) -> None:
    await publish(redis_client, keys, load_folder(workflows_copy))
    before = await redis_client.hgetall(keys.workflow("solid"))
    again = await publish(redis_client, keys, load_folder(workflows_copy))
    assert not any(r.changed for r in again)
    assert await redis_client.hgetall(keys.workflow("solid")) == before
    assert len(await WorkflowRegistry(redis_client, keys).versions("solid")) == 1


async def test_a_changed_template_gets_a_new_version_and_the_old_stays(
    redis_client: aioredis.Redis, keys: Keys, workflows_copy: Path
) -> None:
    old = load_folder(workflows_copy).templates["solid"]
    await publish(redis_client, keys, [old])
    reader = WorkflowRegistry(redis_client, keys)
    assert (await reader.get("solid")).version == old.version

    path = workflows_copy / "solid.params.json"
    declaration = read_json(path)
    declaration["params"]["width"]["default"] = 640
    write_json(path, declaration)
    new = load_folder(workflows_copy).templates["solid"]
    (result,) = await publish(redis_client, keys, [new])
    assert result.changed
    assert result.version == new.version != old.version

    # The reader sees the new current version at once; the old one stays readable.
    assert (await reader.get("solid")).version == new.version
    assert await reader.get("solid", old.version) == old
    assert sorted(await reader.versions("solid")) == sorted([old.version, new.version])
    assert validate_params(await reader.get("solid"), {})["width"] == 640

    # Rolling back to the old content makes the old version current again.
    (rollback,) = await publish(redis_client, keys, [old])
    assert rollback.changed
    assert (await reader.get("solid")).version == old.version


async def test_versions_are_cached_in_process(
    redis_client: aioredis.Redis, keys: Keys, workflows_copy: Path
) -> None:
    template = load_folder(workflows_copy).templates["blur"]
    await publish(redis_client, keys, [template])
    registry = WorkflowRegistry(redis_client, keys)
    assert await registry.get("blur", template.version) == template
    # A version is immutable, so a cached one is served without reading its JSON again.
    await redis_client.hdel(keys.workflow("blur"), template.version)
    assert await registry.get("blur", template.version) == template
    with pytest.raises(UnknownWorkflow):
        await WorkflowRegistry(redis_client, keys).get("blur", template.version)


async def test_unknown_workflow_and_version(
    redis_client: aioredis.Redis, keys: Keys, workflows_copy: Path
) -> None:
    await publish(redis_client, keys, load_folder(workflows_copy))
    registry = WorkflowRegistry(redis_client, keys)
    with pytest.raises(UnknownWorkflow, match="'nope'") as caught:
        await registry.get("nope")
    assert caught.value.status == 404
    with pytest.raises(UnknownWorkflow, match="no version 'abcdefabcdef'"):
        await registry.get("solid", "abcdefabcdef")
    with pytest.raises(UnknownWorkflow):
        await registry.get("solid", "current")
    with pytest.raises(UnknownWorkflow):
        await registry.versions("nope")
