"""Who sees what on the native routes: one API key cannot see, view, interrupt or delete
another's prompts (on any route, nor on a socket with the same client id), the admin sees
all, and wrong credentials get 401 on every native route, also from a network served
without credentials."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from comfyfleet.balancer.native import ROUTES
from comfyfleet.cli.fleet import Fleet
from comfyfleet.web.auth import basic_auth_header, bearer_header
from tests.e2e.conftest import PASSWORD, USER
from tests.inputs.samples import png
from tests.native.conftest import workflow
from tests.support.waiting import until

ADMIN = basic_auth_header(USER, PASSWORD)


class Client:
    """One principal's plain HTTP calls to the balancer."""

    def __init__(self, http: aiohttp.ClientSession, base: str, auth: str | None) -> None:
        self.http, self.base = http, base
        self.headers = {"Authorization": auth} if auth else {}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        async with self.http.request(method, self.base + path, data=data,
                                     headers=self.headers) as r:  # fmt: skip
            raw = await r.read()
            try:
                return r.status, json.loads(raw) if raw else None
            except ValueError:
                return r.status, raw

    async def post_prompt(self, client_id: str | None = None) -> str:
        body: dict[str, Any] = {"prompt": workflow("a_empty_save")}
        if client_id:
            body["client_id"] = client_id
        status, answer = await self.call("POST", "/prompt", body)
        assert status == 200, answer
        return str(answer["prompt_id"])

    async def ended(self, prompt_id: str) -> dict[str, Any]:
        async def probe() -> Any:
            return (await self.call("GET", f"/history/{prompt_id}"))[1]

        history = await until(probe, lambda h: prompt_id in h, what=f"{prompt_id} to end")
        entry: dict[str, Any] = history[prompt_id]
        return entry


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _key(admin: Client, name: str) -> str:
    status, created = await admin.call("POST", "/api/v1/apikeys", {"name": name})
    assert status == 201, created
    return str(created["key"])


@contextlib.asynccontextmanager
async def drained(admin: Client) -> AsyncIterator[None]:
    """Every node drained (prompts stay queued), resumed after."""
    _status, nodes = await admin.call("GET", "/api/v1/nodes")
    ids = [n["node_id"] for n in nodes["nodes"]]
    for node_id in ids:
        assert (await admin.call("POST", f"/api/v1/nodes/{node_id}/drain"))[0] == 202
    try:
        await until(lambda: admin.call("GET", "/api/v1/nodes"),
                    lambda r: all(n["state"] == "draining" for n in r[1]["nodes"]),
                    what="nodes to drain")  # fmt: skip
        yield
    finally:
        for node_id in ids:
            await admin.call("POST", f"/api/v1/nodes/{node_id}/resume")


async def test_one_key_cannot_touch_anothers_prompts(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    base = fleet.balancer_url
    admin = Client(http, base, ADMIN)
    alice = Client(http, base, bearer_header(await _key(admin, "alice")))
    bob = Client(http, base, bearer_header(await _key(admin, "bob")))

    done = await alice.post_prompt()
    entry = await alice.ended(done)
    image = entry["outputs"]["2"]["images"][0]
    view = f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type=output"
    assert (await alice.call("GET", view))[0] == 200
    assert (await bob.call("GET", view))[0] == 404
    assert (await bob.call("GET", f"/history/{done}")) == (200, {})
    assert done not in (await bob.call("GET", "/history"))[1]
    assert done in (await alice.call("GET", "/history"))[1]
    assert done in (await admin.call("GET", "/api/history"))[1]

    async with drained(admin):
        waiting = await alice.post_prompt()
        queue = (await alice.call("GET", "/queue"))[1]
        assert [item[1] for item in queue["queue_pending"]] == [waiting]
        assert (await bob.call("GET", "/queue"))[1] == {"queue_running": [], "queue_pending": []}
        assert (await bob.call("GET", "/prompt"))[1]["exec_info"]["queue_remaining"] == 0
        assert (await alice.call("GET", "/prompt"))[1]["exec_info"]["queue_remaining"] == 1
        # Bob deletes, clears and interrupts: nothing of Alice's moves.
        assert (await bob.call("POST", "/queue", {"delete": [waiting]}))[0] == 200
        assert (await bob.call("POST", "/queue", {"clear": True}))[0] == 200
        assert (await bob.call("POST", "/interrupt", {"prompt_id": waiting}))[0] == 200
        job = (await admin.call("GET", f"/api/v1/jobs/{waiting}"))[1]
        assert job["status"] == "queued"
        # Alice can.
        assert (await alice.call("POST", "/api/queue", {"delete": [waiting]}))[0] == 200
        job = (await admin.call("GET", f"/api/v1/jobs/{waiting}"))[1]
        assert job["status"] == "cancelled"


async def test_history_delete_and_clear_prune_only_the_callers_own_history(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    base = fleet.balancer_url
    admin = Client(http, base, ADMIN)
    alice = Client(http, base, bearer_header(await _key(admin, "alice-history")))
    bob = Client(http, base, bearer_header(await _key(admin, "bob-history")))
    first, second = await alice.post_prompt(), await alice.post_prompt()
    await alice.ended(first)
    await alice.ended(second)

    # Bob naming Alice's prompts prunes nothing of hers.
    assert (await bob.call("POST", "/history", {"delete": [first]}))[0] == 200
    assert (await bob.call("POST", "/history", {"clear": True}))[0] == 200
    assert first in (await alice.call("GET", "/history"))[1]

    assert (await alice.call("POST", "/history", {"delete": [first]}))[0] == 200
    assert (await alice.call("GET", f"/history/{first}")) == (200, {})
    listed = (await alice.call("GET", "/history"))[1]
    assert first not in listed
    assert second in listed
    assert (await alice.call("POST", "/api/history", {"clear": True}))[0] == 200
    assert second not in (await alice.call("GET", "/history"))[1]
    assert (await alice.call("GET", f"/history/{second}")) == (200, {})
    # The jobs stay the fleet's record, for their owner and the admin (and the admin's
    # own ComfyUI history is its own to prune).
    for prompt_id in (first, second):
        status, job = await alice.call("GET", f"/api/v1/jobs/{prompt_id}")
        assert (status, job["status"]) == (200, "succeeded")
        assert prompt_id in (await admin.call("GET", f"/history/{prompt_id}"))[1]
    # A prompt ended after the clear is listed again.
    third = await alice.post_prompt()
    await alice.ended(third)
    assert third in (await alice.call("GET", "/history"))[1]
    assert (await alice.call("POST", "/history", {"delete": "all"}))[0] == 400


async def test_a_socket_sees_only_its_principals_prompts(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    base = fleet.balancer_url
    admin = Client(http, base, ADMIN)
    key = await _key(admin, "carol")
    shared_client_id = str(uuid.uuid4())
    carol = Client(http, base, bearer_header(key))
    ws_url = f"{base.replace('http', 'ws', 1)}/ws?clientId={shared_client_id}"
    # The anonymous principal (loopback, no credentials) listens with Carol's client id.
    async with http.ws_connect(ws_url) as snoop:
        first = await snoop.receive_json()
        assert first["type"] == "status"
        theirs = await carol.post_prompt(shared_client_id)
        await carol.ended(theirs)
        # The snooper's own prompt, same client id: its frames come, Carol's never.
        mine = await Client(http, base, None).post_prompt(shared_client_id)
        seen = []
        while True:
            message = await snoop.receive_json(timeout=60)
            seen.append(message)
            data = message["data"]
            if message["type"] == "executing" and data.get("node") is None:
                break
        assert data["prompt_id"] == mine
        assert "execution_success" in [m["type"] for m in seen]
        assert theirs not in json.dumps(seen)


async def test_wrong_credentials_get_401_on_every_native_route(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    wrong = [
        basic_auth_header(USER, PASSWORD + "x"),
        bearer_header("cfk_" + "0" * 12 + "_" + "A" * 43),
    ]
    for prefix in ("", "/api"):
        for method, path, _handler in ROUTES:
            concrete = path.replace("{prompt_id}", "x").replace("{node_class}", "EmptyImage")
            concrete = concrete.replace("{folder}", "checkpoints")
            for auth in wrong:
                status, _ = await Client(http, fleet.balancer_url, auth).call(
                    method, prefix + concrete, {} if method == "POST" else None
                )
                assert status == 401, f"{method} {prefix}{path}"
            # A right login clears this source's failures, which would otherwise slow it
            # down (429) after ten (store/logins.py).
            assert (await Client(http, fleet.balancer_url, ADMIN).call("GET", "/features"))[
                0
            ] == 200


async def test_anonymous_is_not_the_admin(fleet: Fleet, http: aiohttp.ClientSession) -> None:
    anonymous = Client(http, fleet.balancer_url, None)
    assert (await anonymous.call("POST", "/free", {"unload_models": True}))[0] == 403
    assert (await anonymous.call("GET", "/api/v1/apikeys"))[0] == 403
    assert (await Client(http, fleet.balancer_url, ADMIN).call("POST", "/free", {}))[0] == 200


async def test_the_names_a_key_gave_its_uploads_are_its_own(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    """Alice's `clipspace/mine.png` resolves for her only: Bob's /view, original_ref and
    LoadImage of that name find nothing of hers (his prompt keeps the name as he wrote it)."""
    base = fleet.balancer_url
    admin = Client(http, base, ADMIN)
    alice = Client(http, base, bearer_header(await _key(admin, "alice-names")))
    bob = Client(http, base, bearer_header(await _key(admin, "bob-names")))
    form = aiohttp.FormData()
    form.add_field("image", png(8, 6), filename="mine.png", content_type="image/png")
    form.add_field("subfolder", "clipspace")
    async with http.post(f"{base}/upload/image", data=form, headers=alice.headers) as r:
        assert r.status == 200, await r.text()
    view = "/view?filename=mine.png&subfolder=clipspace&type=input"
    assert (await alice.call("GET", view))[0] == 200
    assert (await bob.call("GET", view))[0] == 404

    form = aiohttp.FormData()
    form.add_field("image", png(8, 6), filename="m.png", content_type="image/png")
    ref = {"filename": "mine.png", "subfolder": "clipspace", "type": "input"}
    form.add_field("original_ref", json.dumps(ref))
    async with http.post(f"{base}/upload/mask", data=form, headers=bob.headers) as r:
        assert r.status == 404

    graph = workflow("c_load_invert_save")
    graph["1"]["inputs"]["image"] = "clipspace/mine.png [input]"
    async with drained(admin):
        for who, expected in ((alice, "cfin_"), (bob, "clipspace/mine.png [input]")):
            status, answer = await who.call("POST", "/prompt", {"prompt": graph})
            assert status == 200, answer
            queued = (await who.call("GET", "/queue"))[1]["queue_pending"]
            named = [item[2]["1"]["inputs"]["image"] for item in queued
                     if item[1] == answer["prompt_id"]]  # fmt: skip
            assert named[0].startswith(expected), named
            assert (await who.call("POST", "/queue", {"delete": [answer["prompt_id"]]}))[0] == 200
