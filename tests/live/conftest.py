"""The live-progress tests use the suite's real fleet (processes) from tests/e2e, or one
balancer app in-process (`bal`)."""

from collections.abc import AsyncIterator

import pytest

from comfyfleet.config import RedisConfig
from tests.e2e.conftest import api, fleet, http  # noqa: F401 -- fixtures, used by name
from tests.live.inprocess import Balancer, balancer


@pytest.fixture
async def bal(redis_config: RedisConfig) -> AsyncIterator[Balancer]:
    async with balancer(redis_config) as b:
        yield b
