"""Fixtures for the reliability tests: a frozen clock, job stores and node registries on the
suite's Redis (a namespace per test), and small job specs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.clock import FrozenClock
from comfyfleet.config import RedisConfig
from comfyfleet.models.node import NodeInfo, NodeState
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.nodes import NodeRegistry
from tests.reliability.rig import Rig, make_rig
from tests.store.conftest import LEASE_MS, StoreFactory, spec  # noqa: F401 (re-exported)


def node_info(node_id: str, state: NodeState = NodeState.READY, **kw: Any) -> NodeInfo:
    return NodeInfo(node_id=node_id, state=state, comfy_healthy=True, **kw)


@pytest.fixture
def registry(store: JobStore, clock: FrozenClock) -> NodeRegistry:
    return NodeRegistry(store.redis, store.keys, clock)


@pytest.fixture
async def rig(redis_config: RedisConfig, tmp_path: Path) -> AsyncIterator[Rig]:
    async with make_rig(redis_config, tmp_path / "sim") as rig:
        yield rig
