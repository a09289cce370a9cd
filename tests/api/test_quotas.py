"""Tenant quotas, each limit across two balancer replicas sharing one Redis: set on one
replica (or with `comfyfleet apikey`), enforced on the other at once. Over a limit: 429
`quota-exceeded` with Retry-After and `limit` naming it (max_queued, rate), or 403
`not-allowed` for what the limits do not grant (workflows, pools, max_priority); the
scripts hold the record, so no replica can overshoot. The fleet's clock is frozen, so the
submit rate's bucket refills only when the test steps it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from typer.testing import CliRunner

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.cli import app as cli
from comfyfleet.config import BalancerConfig, RedisConfig
from comfyfleet.errors import QuotaExceeded
from comfyfleet.models.job import JobSpec
from comfyfleet.store.jobs import JobStore
from tests.api.conftest import ADMIN_AUTH, Role, server
from tests.api.test_isolation import Tenant, make_key
from tests.support.clock import SteppedClock

SOLID = {"workflow": "solid", "params": {"width": 8, "height": 8}}


@pytest.fixture
async def replicas(
    redis_config: RedisConfig, clock: SteppedClock, session: aiohttp.ClientSession
) -> AsyncIterator[tuple[Role, Role]]:
    """Two balancers on one Redis (no node: jobs stay queued)."""
    async with (
        TestServer(balancer_app(BalancerConfig(server=server(), redis=redis_config)),
                   host="127.0.0.1") as one,
        TestServer(balancer_app(BalancerConfig(server=server(), redis=redis_config)),
                   host="127.0.0.1") as two,
    ):  # fmt: skip
        yield (Role(one.app, str(one.make_url("")).rstrip("/"), session),
               Role(two.app, str(two.make_url("")).rstrip("/"), session))  # fmt: skip


async def limit(role: Role, owner: str, **limits: Any) -> dict[str, Any]:
    status, _, body = await role.call("PATCH", f"/api/v1/tenants/{owner}", auth=ADMIN_AUTH,
                                      json=limits)  # fmt: skip
    assert status == 200, body
    view: dict[str, Any] = json.loads(body)
    return view


async def submit(role: Role, auth: str, job: dict[str, Any] | None = None,
                 **headers: str) -> tuple[int, dict[str, str], dict[str, Any]]:  # fmt: skip
    status, answer_headers, body = await role.call(
        "POST", "/api/v1/jobs", auth=auth, json=job or SOLID, headers=headers
    )
    return status, answer_headers, json.loads(body)


def refused(answer: tuple[int, dict[str, str], dict[str, Any]], status: int, code: str,
            which: str) -> dict[str, Any]:  # fmt: skip
    got, headers, problem = answer
    assert (got, problem["code"], problem["limit"]) == (status, code, which), problem
    assert headers["Content-Type"] == "application/problem+json"
    if status == 429:
        assert int(headers["Retry-After"]) >= 1
    return problem


async def test_max_queued_holds_across_replicas(replicas: tuple[Role, Role]) -> None:
    one, two = replicas
    a, b = await make_key(one, "a"), await make_key(one, "b")
    await limit(one, a.owner, max_queued=2)
    assert (await submit(one, a.auth))[0] == 202
    assert (await submit(two, a.auth))[0] == 202
    problem = refused(await submit(two, a.auth), 429, "quota-exceeded", "max_queued")
    assert problem["bound"] == 2
    assert (await submit(one, b.auth))[0] == 202  # another tenant is not held back
    # Cleared on one replica: the other takes the job.
    assert (await limit(one, a.owner, max_queued=None))["limits"]["max_queued"] is None
    assert (await submit(two, a.auth))[0] == 202


async def test_the_submit_rate_is_one_bucket_for_every_replica(
    replicas: tuple[Role, Role], clock: SteppedClock
) -> None:
    one, two = replicas
    a = await make_key(one, "a")
    await limit(one, a.owner, rate=0.5, burst=2)  # a submit every 2 s, 2 at once
    first = await submit(one, a.auth, **{"Idempotency-Key": "first"})
    assert first[0] == 202
    assert (await submit(two, a.auth))[0] == 202
    problem = refused(await submit(one, a.auth), 429, "quota-exceeded", "rate")
    assert "rate of 0.5/s" in problem["detail"]
    # A replay of an accepted submit costs no token.
    replay = await submit(two, a.auth, **{"Idempotency-Key": "first"})
    assert (replay[0], replay[2]["id"]) == (202, first[2]["id"])
    assert replay[1]["Idempotent-Replayed"] == "true"
    await clock.step(1_000)
    refused(await submit(two, a.auth), 429, "quota-exceeded", "rate")  # half a token
    await clock.step(1_000)
    assert (await submit(two, a.auth))[0] == 202  # one token back after 2 s
    refused(await submit(one, a.auth), 429, "quota-exceeded", "rate")


async def test_what_the_limits_do_not_grant_is_refused_with_403(
    replicas: tuple[Role, Role],
) -> None:
    one, two = replicas
    a = await make_key(one, "a")
    await limit(one, a.owner, workflows=["solid"], pools=["default", "gpu"], max_priority=5)
    refused(await submit(two, a.auth, {**SOLID, "pool": "other"}), 403, "not-allowed", "pools")
    refused(await submit(two, a.auth, {**SOLID, "priority": 6}), 403, "not-allowed",
            "max_priority")  # fmt: skip
    graph = {"graph": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8,
                                                                   "batch_size": 1,
                                                                   "color": 0}}}}  # fmt: skip
    refused(await submit(two, a.auth, graph), 403, "not-allowed", "workflows")
    assert (await submit(two, a.auth, {**SOLID, "priority": 5, "pool": "gpu"}))[0] == 202


async def test_max_running_set_over_http_is_what_nodes_honour(
    replicas: tuple[Role, Role], make_store: Any
) -> None:
    one, two = replicas
    a = await make_key(one, "a")
    await limit(one, a.owner, max_running=1, weight=3)
    for _ in range(2):
        assert (await submit(two, a.auth))[0] == 202
    store: JobStore = await make_store()
    claimed = await store.claim("gpu-1", capacity=2, lease_ms=30_000)
    assert len(claimed) == 1
    status, _, body = await two.call("GET", f"/api/v1/tenants/{a.owner}", auth=ADMIN_AUTH)
    assert status == 200
    view = json.loads(body)
    assert (view["queued"], view["running"], view["limits"]["weight"]) == (1, 1, 3)


async def test_the_anonymous_principal_and_every_key_are_tenants(
    replicas: tuple[Role, Role], make_store: Any
) -> None:
    one, two = replicas
    a = await make_key(one, "a")
    await limit(one, "anonymous", max_queued=0)
    store: JobStore = await make_store()
    with pytest.raises(QuotaExceeded):
        await store.enqueue(JobSpec(graph={"1": {"class_type": "X", "inputs": {}}},
                                    owner="anonymous"))  # fmt: skip
    status, _, body = await two.call("GET", "/api/v1/tenants", auth=ADMIN_AUTH)
    assert status == 200
    owners = {t["owner"]: t["limits"] for t in json.loads(body)["tenants"]}
    assert set(owners) == {"admin", "anonymous", a.owner}
    assert owners["anonymous"]["max_queued"] == 0
    # The admin's alone; a bad owner or limit is a clear 4xx.
    for method, path, body_json, want in (
        ("GET", "/api/v1/tenants", None, 403),
        ("PATCH", f"/api/v1/tenants/{a.owner}", {"rate": 1}, 403),
    ):
        assert (await one.call(method, path, auth=a.auth, json=body_json))[0] == want
    for path, body_json, want in (
        ("/api/v1/tenants/bob", {}, 404),
        ("/api/v1/tenants/apikey:000000000000", {}, 404),
        (f"/api/v1/tenants/{a.owner}", {"max_queued": -1}, 422),
        (f"/api/v1/tenants/{a.owner}", {"max_queueud": 1}, 422),
        (f"/api/v1/tenants/{a.owner}", {"rate": "fast"}, 422),
        (f"/api/v1/tenants/{a.owner}", {"pools": ["a,b"]}, 400),
    ):
        status, _, answer = await one.call("PATCH", path, auth=ADMIN_AUTH, json=body_json)
        assert status == want, (path, body_json, answer)


async def test_keys_made_with_limits_over_http_and_the_cli(
    replicas: tuple[Role, Role], redis_config: RedisConfig
) -> None:
    one, two = replicas
    status, _, body = await one.call("POST", "/api/v1/apikeys", auth=ADMIN_AUTH, json={
        "name": "limited", "limits": {"max_queued": 1, "pools": ["default"]}})  # fmt: skip
    assert status == 201, body
    key = json.loads(body)
    a = Tenant(one, key)
    assert (await submit(two, a.auth))[0] == 202
    refused(await submit(two, a.auth), 429, "quota-exceeded", "max_queued")
    # The CLI runs its own event loop: in a thread, beside the test's.
    where = ["--redis-url", redis_config.url, "--namespace", redis_config.namespace]

    async def run(*args: str) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, cli, ["apikey", *args, *where])

    result = await run("update", key["id"], "--rate", "30/m", "--burst", "5",
                       "--clear", "max_queued")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "rate 0.5" in result.output
    assert "max_queued" not in result.output
    assert (await submit(one, a.auth))[0] == 202
    result = await run("update", "anonymous", "--rate", "fast")
    assert result.exit_code == 2
    assert "rate must look like" in result.output
    result = await run("create", "cli-made", "--max-running", "2", "--workflows", "solid,invert")
    assert result.exit_code == 0, result.output
    status, _, body = await one.call("GET", "/api/v1/tenants", auth=ADMIN_AUTH)
    made = [t for t in json.loads(body)["tenants"] if t["limits"]["max_running"] == 2]
    assert [t["limits"]["workflows"] for t in made] == [["solid", "invert"]]
