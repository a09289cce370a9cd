"""Finding 8 (part): anonymous OPTIONS listed each route's methods (405 with `Allow`) while
unknown paths answered 401; and wrong passwords were never slowed."""

from __future__ import annotations

import pytest

from comfyfleet.config import RedisConfig
from tests.security.fleet import fleet

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
