"""A real fleet for the native-API tests: the suite's Redis, a balancer serving
credential-less loopback requests as `anonymous` (`--anonymous-from 127.0.0.0/8`, as
`comfyfleet up` passes it on), two nodes and two ComfyUI stand-ins, each a process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from comfyfleet.cli.fleet import Fleet
from comfyfleet.redis_server import RedisServer
from tests.conftest import SHARED_WORKFLOWS
from tests.e2e.conftest import fleet_spec

ANONYMOUS_FROM = ["--anonymous-from", "127.0.0.0/8"]


def workflow(name: str) -> dict[str, Any]:
    """One of the recorded API-format workflows (tests/data/comfyui/workflows)."""
    graph: dict[str, Any] = json.loads((SHARED_WORKFLOWS / f"{name}.json").read_text())
    return graph


@pytest.fixture(scope="package")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    spec = fleet_spec(redis_server, tmp_path_factory, balancer_args=ANONYMOUS_FROM)
    with Fleet(spec) as fleet:
        fleet.wait_ready()
        yield fleet
