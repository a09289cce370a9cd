"""Workflow versions over HTTP on two balancer replicas sharing one Redis: publish, pin,
roll back, refuse contract breaks, concurrent publishes, who may publish."""

from __future__ import annotations

import asyncio
import json

from tests.api.conftest import ADMIN_AUTH, Role
from tests.support.png import png_size
from tests.workflows_versions.conftest import NAME, PARAMS, Client, graph


async def _run(client: Client, body: dict[str, object]) -> tuple[dict[str, object], int]:
    """Submit, wait for the end; (the job, the width of its image)."""
    status, job = await client.call("POST", "/api/v1/jobs", body)
    assert status == 202, job
    job = await client.finished(job["id"])
    assert job["status"] == "succeeded", job
    status, _, data = await client.role.call("GET", f"/api/v1/jobs/{job['id']}/outputs/0",
                                             auth=client.auth)  # fmt: skip
    assert status == 200
    return job, png_size(data)[0]


async def test_publish_pin_and_roll_back_on_every_replica(replicas: list[Role], node: Role) -> None:
    a, b = Client(replicas[0]), Client(replicas[1])
    status, v1 = await a.publish({"graph": graph(32), "params": PARAMS, "note": "first"})
    assert status == 201, v1
    assert (v1["outcome"], v1["previous"]) == ("published", None)
    assert await b.active() == v1["version"]  # live on the other replica at once

    # v2 carries v1's params over (no "params" sent) and draws wider.
    status, v2 = await b.publish({"graph": graph(48), "note": "wider"})
    assert status == 201, v2
    assert v2["previous"] == v1["version"] != v2["version"]
    assert await a.active() == v2["version"]
    _, detail = await a.call("GET", f"/api/v1/workflows/{NAME}/versions/{v2['version']}")
    assert detail["declaration"] == PARAMS
    assert (detail["author"], detail["note"], detail["active"]) == ("admin", "wider", True)

    # Unpinned jobs run the active version and record it; a pinned job runs its version.
    job, width = await _run(a, {"workflow": NAME, "params": {"height": 8}})
    assert (job["workflow_version"], width) == (v2["version"], 48)
    job, width = await _run(b, {"workflow": NAME, "version": v1["version"]})
    assert (job["workflow_version"], width) == (v1["version"], 32)

    # Roll back through one replica: both serve v1 from the next request on.
    status, back = await a.call("POST", f"/api/v1/workflows/{NAME}/rollback",
                                {"version": v1["version"], "note": "too wide"})  # fmt: skip
    assert status == 200, back
    assert (back["outcome"], back["previous"]) == ("rolled_back", v2["version"])
    assert await a.active() == await b.active() == v1["version"]
    job, width = await _run(b, {"workflow": NAME})
    assert (job["workflow_version"], width) == (v1["version"], 32)

    _, history = await b.call("GET", f"/api/v1/workflows/{NAME}/versions")
    assert history["active"] == v1["version"]
    assert [v["version"] for v in history["versions"]] == [v2["version"], v1["version"]]
    assert [v["active"] for v in history["versions"]] == [False, True]
    assert [(e["action"], e["version"]) for e in history["log"]] == [
        ("rollback", v1["version"]), ("publish", v2["version"]), ("publish", v1["version"])
    ]  # fmt: skip
    assert history["log"][0]["at_ms"] >= history["log"][1]["at_ms"] > 0


async def test_a_contract_breaking_version_is_refused_unless_forced(replicas: list[Role]) -> None:
    a, b = Client(replicas[0]), Client(replicas[1])
    status, v1 = await a.publish({"graph": graph(32), "params": PARAMS})
    assert status == 201, v1
    retyped = json.loads(json.dumps(PARAMS))
    retyped["params"]["color"] = {"type": "string", "bind": [{"node": "Canvas", "input": "color"}]}
    status, problem = await b.publish({"graph": graph(32), "params": retyped})
    assert status == 422, problem
    assert (problem["code"], problem["param"]) == ("workflow-contract", "color")
    assert "changed type from integer to string" in problem["detail"]

    # Carried-over params whose node title is gone from the new graph: refused, naming it.
    status, problem = await b.publish({"graph": graph(32, title="Renamed")})
    assert status == 422, problem
    assert (problem["code"], problem["param"]) == ("workflow-contract", "color")
    assert "'Canvas'" in problem["detail"]
    dropped = {k: v for k, v in PARAMS["params"].items() if k != "height"}
    status, problem = await a.publish({"graph": graph(32), "params": {"params": dropped}})
    assert (status, problem["param"]) == (422, "height")
    assert await a.active() == await b.active() == v1["version"]  # nothing changed

    status, forced = await a.publish({"graph": graph(32, title="Renamed"), "force": True})
    assert status == 201, forced
    assert sorted(forced["dropped_params"]) == ["color", "height"]
    assert await b.active() == forced["version"]
    status, problem = await b.call("POST", "/api/v1/jobs", {"workflow": NAME,
                                                             "params": {"color": 1}})  # fmt: skip
    assert (status, problem["code"], problem["param"]) == (422, "param-invalid", "color")


async def test_concurrent_publishes_all_land_with_one_active_pointer(
    replicas: list[Role],
) -> None:
    clients = [Client(replicas[i % 2]) for i in range(8)]
    await clients[0].publish({"graph": graph(8), "params": PARAMS})
    answers = await asyncio.gather(
        *(c.publish({"graph": graph(100 + i), "note": f"n{i}"}) for i, c in enumerate(clients))
    )
    assert [s for s, _ in answers] == [201] * 8, answers
    versions = {body["version"] for _, body in answers}
    assert len(versions) == 8
    _, history = await clients[1].call("GET", f"/api/v1/workflows/{NAME}/versions")
    publishes = [e for e in history["log"] if e["action"] == "publish"]
    assert len(publishes) == 9
    assert versions <= {e["version"] for e in publishes}
    # The pointer names the last publish, each publish names the one before it (no lost
    # update), and both replicas agree.
    assert history["active"] == history["log"][0]["version"]
    chain = [e["previous"] for e in history["log"]][:-1]
    assert chain == [e["version"] for e in history["log"]][1:]
    assert await clients[0].active() == await clients[1].active() == history["active"]


async def test_who_may_change_workflows(replicas: list[Role]) -> None:
    admin = Client(replicas[0])
    made = {}
    for name, scopes in (("runner", []), ("publisher", ["workflows"])):
        status, made[name] = await admin.call("POST", "/api/v1/apikeys",
                                              {"name": name, "scopes": scopes})  # fmt: skip
        assert status == 201
        assert made[name]["scopes"] == scopes
    runner = Client(replicas[1], f"Bearer {made['runner']['key']}")
    publisher = Client(replicas[1], f"Bearer {made['publisher']['key']}")

    status, problem = await runner.publish({"graph": graph(32), "params": PARAMS})
    assert (status, problem["code"]) == (403, "forbidden")
    status, v1 = await publisher.publish({"graph": graph(32), "params": PARAMS})
    assert status == 201, v1
    _, history = await runner.call("GET", f"/api/v1/workflows/{NAME}/versions")  # reads: all
    assert history["versions"][0]["author"] == f"apikey:{made['publisher']['id']}"
    assert (await runner.call("DELETE", f"/api/v1/workflows/{NAME}"))[0] == 403
    assert (await runner.call("POST", f"/api/v1/workflows/{NAME}/rollback",
                              {"version": v1["version"]}))[0] == 403  # fmt: skip

    assert (await publisher.call("DELETE", f"/api/v1/workflows/{NAME}"))[0] == 204
    assert await admin.active() is None
    _, listing = await admin.call("GET", "/api/v1/workflows")
    assert NAME not in {w["name"] for w in listing["workflows"]}
    status, problem = await admin.call("POST", "/api/v1/jobs", {"workflow": NAME})
    assert (status, problem["code"]) == (404, "workflow-unknown")
    assert (await publisher.call("DELETE", f"/api/v1/workflows/{NAME}"))[0] == 404
    # The history stays, and a rollback brings the workflow back.
    status, back = await publisher.call("POST", f"/api/v1/workflows/{NAME}/rollback",
                                        {"version": v1["version"]})  # fmt: skip
    assert status == 200, back
    assert await admin.active() == v1["version"]


async def test_bad_requests_are_clear_4xx(replicas: list[Role]) -> None:
    admin = Client(replicas[0])
    status, problem = await admin.publish({"graph": {"1": {"inputs": {}}}})
    assert (status, problem["code"]) == (422, "workflow-invalid")
    assert "class_type" in problem["detail"]
    status, problem = await admin.publish({"graph": graph(8)}, name="bad:name")
    assert status == 400, problem
    await admin.publish({"graph": graph(8), "params": PARAMS})
    for path, body in (
        (f"/api/v1/workflows/{NAME}/rollback", {"version": "0" * 12}),
        (f"/api/v1/workflows/{NAME}/rollback", {"version": "current"}),
        ("/api/v1/workflows/nope/rollback", {"version": "0" * 12}),
    ):
        status, problem = await admin.call("POST", path, body)
        assert status in (404, 422), (path, body, problem)
    for path in (f"/api/v1/workflows/{NAME}/versions/0123456789ab",
                 f"/api/v1/workflows/{NAME}/versions/current",
                 "/api/v1/workflows/nope/versions", "/api/v1/workflows/a:b/versions"):  # fmt: skip
        status, problem = await admin.call("GET", path)
        assert (status, problem["code"]) == (404, "workflow-unknown"), path
    status, problem = await admin.call("POST", "/api/v1/jobs",
                                       {"workflow": NAME, "version": "0123456789ab"})  # fmt: skip
    assert (status, problem["code"]) == (404, "workflow-unknown")


async def test_the_listing_etag_follows_changes(replicas: list[Role]) -> None:
    a = replicas[0]
    status, headers, _ = await a.call("GET", "/api/v1/workflows", auth=ADMIN_AUTH)
    etag = headers["Etag"]  # (aiohttp spells it so on the wire; header names are caseless)
    status, headers, body = await a.call("GET", "/api/v1/workflows", auth=ADMIN_AUTH,
                                         headers={"If-None-Match": etag})  # fmt: skip
    assert (status, body) == (304, b"")
    await Client(replicas[1]).publish({"graph": graph(8), "params": PARAMS})
    status, headers, body = await a.call("GET", "/api/v1/workflows", auth=ADMIN_AUTH,
                                         headers={"If-None-Match": etag})  # fmt: skip
    assert status == 200
    assert headers["Etag"] != etag
    assert NAME in {w["name"] for w in json.loads(body)["workflows"]}


async def test_publish_fields_are_not_coerced(replicas: list[Role]) -> None:
    admin = Client(replicas[0])
    for body in ({"graph": graph(8), "force": 1}, {"graph": graph(8), "note": 5}):
        status, problem = await admin.publish(body)
        assert status == 422, body
        assert problem["code"] == "validation"
    status, problem = await admin.call("POST", f"/api/v1/workflows/{NAME}/rollback",
                                       {"version": 123456789012})  # fmt: skip
    assert status == 422
