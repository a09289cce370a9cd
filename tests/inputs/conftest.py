"""The input upload tests use a real fleet (processes) like tests/e2e's, once with each
blob store: inputs in Redis, and in S3 on the suite's S3-protocol server."""

from collections.abc import Iterator

import pytest

from comfyfleet.cli.fleet import Fleet
from comfyfleet.redis_server import RedisServer
from tests.e2e.conftest import api, fleet_spec, http  # noqa: F401 -- fixtures, used by name
from tests.support.s3 import S3Server


@pytest.fixture(scope="module", params=["redis", "s3"])
def fleet(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    env: dict[str, str] = {}
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        env = s3.env(s3.config())
    with Fleet(fleet_spec(redis_server, tmp_path_factory, extra_env=env)) as fleet:
        yield fleet
