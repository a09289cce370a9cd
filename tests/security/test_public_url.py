"""Finding 2: Host header injection. Every URL the balancer hands out (outputs in answers,
in a job's webhook and in the fleet-wide webhook, previews) comes from `--public-url` or
the listen address, never from the `Host` a client sends."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from comfyfleet.config import BalancerConfig, RedisConfig, WebhookConfig
from tests.security.fleet import Fleet, fleet
from tests.security.graphs import solid
from tests.support.waiting import until

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef-host").decode()
HOSTILE = {"Host": "attacker.example:443"}


class Hooks:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append({"path": request.path, "body": orjson.loads(await request.read())})
        return web.Response(status=204)


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    app, rec = web.Application(), Hooks()
    app.router.add_post("/{which}", rec.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    await runner.cleanup()


def _urls(data: Any) -> list[str]:
    return [o["url"] for o in data["outputs"]]


async def _run_with_hostile_host(f: Fleet, hooks: Hooks) -> dict[str, Any]:
    body = {"graph": solid(), "webhook_url": f"{hooks.url}/job"}
    status, _, raw = await f.call("POST", "/api/v1/jobs?wait=20", json=body, headers=HOSTILE)
    job: dict[str, Any] = orjson.loads(raw)
    assert status == 200, job
    assert job["status"] == "succeeded", job
    await until(lambda: _async(len(hooks.got)), lambda n: n >= 2, what="both webhooks")
    return job


async def _async(value: Any) -> Any:
    return value


async def test_urls_come_from_the_listen_address_not_from_host(
    redis_config: RedisConfig, hooks: Hooks
) -> None:
    cfg = WebhookConfig(secret=SecretStr(SECRET), url=f"{hooks.url}/fleet",
                        allow=("127.0.0.1/32",), poll_ms=20)  # fmt: skip
    async with fleet(redis_config, node=True, webhooks=cfg) as f:
        job = await _run_with_hostile_host(f, hooks)
        _, listed = await f.json("GET", "/api/v1/jobs", headers=HOSTILE)
        _, fetched = await f.json("GET", f"/api/v1/jobs/{job['id']}", headers=HOSTILE)
        payloads = {g["path"]: g["body"]["data"] for g in hooks.got}
        expected = f"{f.url}/api/v1/jobs/{job['id']}/outputs/0"
        for where, urls in [("submit answer", _urls(job)), ("get", _urls(fetched)),
                            ("list", _urls(listed["jobs"][0])),
                            ("job webhook", _urls(payloads["/job"])),
                            ("fleet webhook", _urls(payloads["/fleet"]))]:  # fmt: skip
            assert urls == [expected], where
        status, _, png = await f.call("GET", expected.removeprefix(f.url))
        assert status == 200
        assert png.startswith(b"\x89PNG")


async def test_public_url_is_the_base_of_every_url(redis_config: RedisConfig, hooks: Hooks) -> None:
    cfg = WebhookConfig(secret=SecretStr(SECRET), url=f"{hooks.url}/fleet",
                        allow=("127.0.0.1/32",), poll_ms=20)  # fmt: skip
    public = "https://fleet.example.com/comfy"
    async with fleet(redis_config, node=True, webhooks=cfg, public_url=public + "/") as f:
        job = await _run_with_hostile_host(f, hooks)
        expected = [f"{public}/api/v1/jobs/{job['id']}/outputs/0"]
        assert _urls(job) == expected
        assert all(_urls(g["body"]["data"]) == expected for g in hooks.got)


@pytest.mark.parametrize("bad", ["ftp://x.example", "https://u:p@x.example", "x.example",
                                 "https://x.example/?a=1", "https://"])  # fmt: skip
def test_a_public_url_that_is_no_base_url_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        BalancerConfig(public_url=bad)
