"""Helpers for the job store tests; the clock and store fixtures are in tests/conftest.py."""

from __future__ import annotations

from typing import Any

import pytest

from comfyfleet.config import RedisConfig
from comfyfleet.models.job import JobSpec
from comfyfleet.store.keys import Keys
from tests.conftest import StoreFactory  # noqa: F401 (re-exported for these tests)

LEASE_MS = 30_000


def spec(**kw: Any) -> JobSpec:
    """A small job spec; the graph content does not matter to the store."""
    return JobSpec(graph={"1": {"class_type": "EmptyImage", "inputs": {}}}, **kw)


@pytest.fixture
def keys(redis_config: RedisConfig) -> Keys:
    return Keys(redis_config.namespace)
