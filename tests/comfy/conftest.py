"""Fixtures for the ComfyUI client tests: a replay server on loopback, and clients with
small time bounds (silence, backoff) so fault paths resolve in milliseconds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from comfyfleet.comfy import ComfyClient, ComfyOptions
from tests.support.replay import ReplayServer

FAST = ComfyOptions(
    request_timeout_s=5.0,
    connect_timeout_s=2.0,
    silence_s=0.05,
    reconnect_initial_s=0.01,
    reconnect_max_s=0.05,
    ws_heartbeat_s=None,
)
DEADLINE_S = 10.0  # every wait in these tests ends by then, or the test fails

MakeClient = Callable[..., ComfyClient]


@pytest.fixture
async def replay() -> AsyncIterator[ReplayServer]:
    server = ReplayServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def make_client(replay: ReplayServer) -> AsyncIterator[MakeClient]:
    """`make_client(client_id=None, **ComfyOptions fields)`; all closed at teardown."""
    clients: list[ComfyClient] = []

    def make(client_id: str | None = None, **options: Any) -> ComfyClient:
        client = ComfyClient(replay.url, client_id=client_id, options=replace(FAST, **options))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
