"""The chaos suite's size: short by default (part of `make test`), full with `--chaos-full`
or CHAOS_FULL=1 (`make chaos`). CHAOS_SEED picks the random plan (default 5)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class ChaosSize:
    name: str
    jobs: int
    nodes: int
    faults_per_kind: int
    spread_s: float  # how long submitting takes (s): the faults land among running jobs
    deadline_s: float  # how long the jobs may take to end after submitting (s)
    seed: int


SHORT = dict(name="short", jobs=120, nodes=3, faults_per_kind=2, spread_s=25.0, deadline_s=120.0)
FULL = dict(name="full", jobs=1000, nodes=4, faults_per_kind=6, spread_s=140.0, deadline_s=600.0)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-full", action="store_true", default=False,
        help="run the full chaos suite (>= 1,000 jobs, 4 nodes) instead of the short one",
    )  # fmt: skip


@pytest.fixture(scope="session")
def chaos_size(request: pytest.FixtureRequest) -> ChaosSize:
    full = request.config.getoption("--chaos-full") or os.environ.get("CHAOS_FULL") == "1"
    seed = int(os.environ.get("CHAOS_SEED", "5"))
    return ChaosSize(**(FULL if full else SHORT), seed=seed)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def chaos_store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """CHAOS_STORE=s3: outputs and inputs in S3 (the suite's S3-protocol server), with the
    sweeper running often, so that it works among the faults; else in Redis."""
    if os.environ.get("CHAOS_STORE", "redis") != "s3":
        return {}
    s3 = request.getfixturevalue("s3_server")
    return {**s3.env(s3.config()), "BALANCER_SWEEP_INTERVAL": "2", "BALANCER_SWEEP_GRACE": "2"}
