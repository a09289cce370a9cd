"""The registry's writes against the suite's real Redis: the start-up seed respects what the
API did, the contract rules, and racing publishers on separate connections."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from comfyfleet.clock import FrozenClock
from comfyfleet.config import RedisConfig
from comfyfleet.store.keys import Keys
from comfyfleet.templates.contract import contract_breaks
from comfyfleet.templates.loader import build_template, load_folder
from comfyfleet.templates.publishing import BODY_FILES, ContractBroken, Draft, WorkflowPublisher
from comfyfleet.templates.registry import WorkflowRegistry
from tests.templates.conftest import read_json, workflows_copy, write_json  # noqa: F401
from tests.workflows_versions.conftest import PARAMS, graph


@pytest.fixture
def keys(redis_config: RedisConfig) -> Keys:
    return Keys(redis_config.namespace)


async def test_a_restart_keeps_what_the_api_did_and_takes_changed_files(
    redis_client: aioredis.Redis,
    keys: Keys,
    workflows_copy: Path,  # noqa: F811
) -> None:
    publisher = WorkflowPublisher(redis_client, keys)
    registry = WorkflowRegistry(redis_client, keys)
    first = load_folder(workflows_copy)
    await publisher.seed(first)
    solid = first.templates["solid"]
    changed = solid.declaration | {"description": "edited through the API"}
    mine = await publisher.publish("solid", Draft(solid.graph, declaration=changed), author="me")
    await publisher.retire("blur", author="me")

    again = await publisher.seed(load_folder(workflows_copy))  # a restart, same files
    assert {p.outcome for p in again} == {"seen"}
    assert (await registry.get("solid")).version == mine.version
    assert "blur" not in await registry.index()

    # Files that changed since the last start land as the active version.
    path = workflows_copy / "solid.params.json"
    declaration = read_json(path)
    declaration["params"]["width"]["default"] = 64
    write_json(path, declaration)
    (seeded,) = [p for p in await publisher.seed(load_folder(workflows_copy)) if p.name == "solid"]
    assert seeded.outcome == "published"
    assert (await registry.get("solid")).params["width"].default == 64
    entries = await publisher.log("solid")
    assert [e.author for e in entries[:2]] == ["balancer (workflow folders)", "me"]


async def test_log_times_come_from_the_publishers_clock(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    clock = FrozenClock(1_800_000_000_000)
    publisher = WorkflowPublisher(redis_client, keys, clock)
    await publisher.publish("t", Draft(graph(8), declaration=PARAMS), author="a", note="one")
    clock.advance(5_000)
    await publisher.publish("t", Draft(graph(9)), author="b")
    assert [(e.at_ms, e.author, e.note) for e in await publisher.log("t")] == [
        (1_800_000_005_000, "b", ""),
        (1_800_000_000_000, "a", "one"),
    ]


def test_contract_rules() -> None:
    base, _ = build_template("t", graph(8), PARAMS, None, BODY_FILES)

    def variant(change: str) -> list[str]:
        declaration = copy.deepcopy(PARAMS)
        params = declaration["params"]
        if change == "widen":
            params["color"]["maximum"] = 2**30
            params["extra"] = {"type": "boolean", "bind": [{"node": "Canvas", "input": "width"}]}
        elif change == "required":
            params["height"] = {**params["height"], "required": True}
            del params["height"]["default"]
        elif change == "enum":
            params["color"] = {"type": "enum", "choices": [1, 2],
                               "bind": [{"node": "Canvas", "input": "color"}]}  # fmt: skip
        new, _ = build_template("t", graph(8), declaration, None, BODY_FILES)
        return [f"{b.param}: {b.reason}" for b in contract_breaks(base, new)]

    assert variant("widen") == []
    assert variant("required") == ["height: became required"]
    assert variant("enum") == ["color: changed type from integer to enum"]
    enum_params = copy.deepcopy(PARAMS)
    enum_params["params"]["color"] = {"type": "enum", "choices": [1, 2, 3],
                                      "bind": [{"node": "Canvas", "input": "color"}]}  # fmt: skip
    old, _ = build_template("t", graph(8), enum_params, None, BODY_FILES)
    enum_params["params"]["color"]["choices"] = [1, 2]
    new, _ = build_template("t", graph(8), enum_params, None, BODY_FILES)
    assert [b.reason for b in contract_breaks(old, new)] == ["lost choices ['3']"]


async def test_racing_publishers_each_land_once(
    redis_config: RedisConfig, keys: Keys, redis_client: aioredis.Redis
) -> None:
    clients = [aioredis.Redis.from_url(redis_config.url) for _ in range(6)]
    try:
        publishers = [WorkflowPublisher(c, keys) for c in clients]
        await publishers[0].publish("race", Draft(graph(1), declaration=PARAMS), author="p0")
        done = await asyncio.gather(
            *(
                p.publish("race", Draft(graph(10 * i + j)), author=f"p{i}")
                for i, p in enumerate(publishers)
                for j in range(3)
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    assert len({p.version for p in done}) == 18
    entries = await WorkflowPublisher(redis_client, keys).log("race")
    assert len(entries) == 19
    assert [e.previous for e in entries[:-1]] == [e.version for e in entries[1:]]
    assert (await WorkflowRegistry(redis_client, keys).index())["race"] == entries[0].version
    fields = await redis_client.hget(keys.workflow("race"), "current")
    assert fields == entries[0].version.encode()


async def test_a_refused_publish_names_the_param_and_writes_nothing(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    publisher = WorkflowPublisher(redis_client, keys)
    await publisher.publish("t", Draft(graph(8), declaration=PARAMS), author="a")
    before = await redis_client.hgetall(keys.workflow("t"))
    with pytest.raises(ContractBroken) as refused:
        await publisher.publish("t", Draft(graph(8, title="Other")), author="a")
    assert refused.value.status == 422
    assert refused.value.extra["param"] == "color"
    assert {b["param"] for b in refused.value.extra["breaks"]} == {"color", "height"}
    assert await redis_client.hgetall(keys.workflow("t")) == before
    assert len(await publisher.log("t")) == 1
