"""`comfyfleet up` as a user runs it: its children die with it however it dies, and a fleet
that cannot start says why at once."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from pathlib import Path

import pytest

from comfyfleet.cli.fleet import Fleet, FleetSpec
from comfyfleet.errors import ConfigError
from comfyfleet.redis_server import RedisServer
from tests.support.procs import alive, children_of
from tests.support.waiting import until

START_DEADLINE_S = 90.0
# The bound: none of the children alive this long after `up` was killed.
ORPHAN_DEADLINE_S = 2.0


async def read_until(stream: asyncio.StreamReader, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        line = await stream.readline()
        if not line:
            raise AssertionError(f"`up` ended its output before {marker!r}:\n{seen.decode()}")
        seen += line
    return seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
async def test_sigkilled_up_leaves_no_child_alive(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "REDIS_"))}
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "comfyfleet", "up", "--port", "0", "--node-port", "0",
        "--nodes", "1", "--data-dir", str(tmp_path), "--namespace", f"up{uuid.uuid4().hex[:8]}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        await asyncio.wait_for(read_until(up.stdout, b"Press Ctrl-C"), START_DEADLINE_S)
        children = children_of(up.pid)
        # redis, one stand-in, one node, the balancer
        assert len(children) == 4, children
        up.kill()
        await up.wait()
        left = await until(
            lambda: asyncio.sleep(0, [pid for pid in children if alive(pid)]),
            lambda pids: not pids,
            timeout_s=ORPHAN_DEADLINE_S,
            what="every child of the killed `up` to be gone",
        )
        assert left == []
    finally:
        if up.returncode is None:
            up.kill()
            await up.wait()


def test_a_port_in_use_is_refused_before_anything_starts(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        spec = FleetSpec(nodes=1, balancer_port=0, first_node_port=port,
                         redis_url=redis_server.url, data_dir=tmp_path)  # fmt: skip
        fleet = Fleet(spec)
        with pytest.raises(ConfigError, match=f"port {port} .* in use"):
            fleet.__enter__()
        assert not list(tmp_path.glob("*.log"))  # refused before any child was started


def test_a_child_that_exits_during_start_is_reported_with_its_log(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # The stand-in starts and stays up; the node refuses its option at once.
    spec = FleetSpec(nodes=1, balancer_port=0, first_node_port=0, redis_url=redis_server.url,
                     data_dir=tmp_path, node_args=["--prefetch", "999"])  # fmt: skip
    fleet = Fleet(spec)
    with pytest.raises(ConfigError) as caught:
        fleet.__enter__()
    message = caught.value.detail
    assert "node-1 exited during start-up (code 2)" in message
    assert "prefetch" in message  # the node's own words, from the end of its log
    assert not any(proc.alive for proc in fleet.procs)  # the others were stopped
