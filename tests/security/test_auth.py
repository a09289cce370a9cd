"""Finding 8 (part): anonymous OPTIONS listed each route's methods (405 with `Allow`) while
unknown paths answered 401; and wrong passwords were never slowed."""

from __future__ import annotations

import aiohttp
import pytest

from comfyfleet.config import RedisConfig
from comfyfleet.store.logins import FREE_FAILURES, LONGEST_WAIT_MS, source_of
from comfyfleet.web.auth import basic_auth_header
from tests.security.fleet import AUTH, USER, fleet
from tests.support.waiting import until

ROUTES = ["/api/v1/jobs", "/api/v1/jobs/abc", "/api/v1/inputs", "/api/v1/nodes", "/docs",
          "/openapi.json", "/api/v1/apikeys", "/no/such/path"]  # fmt: skip


@pytest.mark.parametrize("path", ROUTES)
async def test_anonymous_options_learns_nothing(redis_config: RedisConfig, path: str) -> None:
    async with fleet(redis_config) as f:
        status, headers, _ = await f.call("OPTIONS", path, auth=False)
        assert status == 401
        assert "Allow" not in headers
        assert headers["WWW-Authenticate"].startswith("Basic")
        authed, _, _ = await f.call("OPTIONS", path)
        assert authed in (404, 405)


async def _status(url: str, auth: str, local: str = "127.0.0.1") -> tuple[int, dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(local, 0))
    headers = {"Authorization": auth}
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(url + "/api/v1/jobs", headers=headers) as r,
    ):
        return r.status, dict(r.headers)


WRONG = basic_auth_header(USER, "wrong")


async def test_wrong_passwords_are_slowed_per_source_across_replicas(
    redis_config: RedisConfig,
) -> None:
    async with fleet(redis_config) as a, fleet(redis_config) as b:
        # b has seen this source clean (and may trust that without asking Redis)...
        assert (await _status(b.url, AUTH["Authorization"]))[0] == 200
        # ...until failures anywhere are published to every process.
        statuses = [(await _status(a.url, WRONG))[0] for _ in range(FREE_FAILURES + 1)]
        assert statuses == [401] * (FREE_FAILURES + 1)
        # Now the source waits, on every replica, whatever it sends, before any check.
        for url, auth in [(a.url, WRONG), (b.url, WRONG), (b.url, AUTH["Authorization"])]:
            status, headers = await _status(url, auth)
            assert status == 429
            assert 1 <= int(headers["Retry-After"]) <= LONGEST_WAIT_MS // 1000
        # Another source is not slowed: its correct login passes, its typo is a plain 401.
        assert (await _status(b.url, AUTH["Authorization"], local="127.0.0.2"))[0] == 200
        assert (await _status(b.url, WRONG, local="127.0.0.2"))[0] == 401
        # Once the wait is over, a correct login passes and clears the record.
        await until(lambda: _status(a.url, AUTH["Authorization"]), lambda r: r[0] == 200,
                    timeout_s=10, what="the backoff to end")  # fmt: skip
        assert (await _status(a.url, WRONG))[0] == 401


async def test_800_wrong_passwords_in_a_row_are_slowed(redis_config: RedisConfig) -> None:
    async with fleet(redis_config) as f:
        answers = [(await _status(f.url, WRONG))[0] for _ in range(3 * FREE_FAILURES)]
        assert answers.count(401) == FREE_FAILURES + 1
        assert set(answers[FREE_FAILURES + 1 :]) == {429}


def test_sources_are_addresses_and_ipv6_64s() -> None:
    assert source_of("203.0.113.7") == "203.0.113.7"
    assert source_of("::ffff:203.0.113.7") == "203.0.113.7"
    assert source_of("2001:db8:1:2:3:4:5:6") == source_of("2001:db8:1:2::9") == "2001:db8:1:2::/64"
    assert source_of(None) == source_of("not an address") == "unknown"
