"""The input upload tests use a real fleet (processes) like tests/e2e's, once with each
blob store: inputs in Redis, and in S3 on the suite's S3-protocol server."""

from collections.abc import Iterator

import pytest

from comfyfleet.cli.fleet import Fleet
from comfyfleet.redis_server import RedisServer
from tests.e2e.conftest import api, fleet_spec, http, store_env  # noqa: F401 -- fixtures, used by name


@pytest.fixture(scope="module", params=["redis", "s3"])
def fleet(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    with Fleet(fleet_spec(redis_server, tmp_path_factory, extra_env=store_env(request))) as fleet:
        yield fleet
