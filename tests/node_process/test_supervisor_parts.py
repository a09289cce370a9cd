"""The supervisor's parts on their own: the command line it builds, a child that ignores
SIGTERM (SIGKILL after the grace), and a port someone else holds (no start, reported)."""

from __future__ import annotations

import asyncio
import shlex
import socket
import sys

import pytest

from comfyfleet.comfy import ComfyClient, ComfyOptions
from comfyfleet.errors import ConfigError
from comfyfleet.node.comfy_lines import ComfyLine
from comfyfleet.node.state import NodeStatus
from comfyfleet.node.supervisor import ComfySupervisor, build_argv, describe_exit
from comfyfleet.redis_server import free_port
from comfyfleet.tasks import stop
from tests.node_process.conftest import process_state
from tests.support.waiting import until

STUBBORN = shlex.join([sys.executable, "-c", "import signal, time; "
                       "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                       "print('ignoring SIGTERM', flush=True); time.sleep(120)"])  # fmt: skip


def test_the_command_line_gets_listen_and_port_unless_it_places_them() -> None:
    assert build_argv("python main.py --cpu", 4000) == [
        "python", "main.py", "--cpu", "--listen", "127.0.0.1", "--port", "4000"]  # fmt: skip
    assert build_argv("run.sh 'my dir' --bind {host}:{port}", 4000) == [
        "run.sh", "my dir", "--bind", "127.0.0.1:4000"]  # fmt: skip
    with pytest.raises(ConfigError, match="empty"):
        build_argv("  ", 1)
    with pytest.raises(ConfigError, match="split"):
        build_argv("python 'unclosed", 1)
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"


def _supervisor(command: str, port: int, lines: list[ComfyLine]) -> ComfySupervisor:
    comfy = ComfyClient(f"http://127.0.0.1:{port}", options=ComfyOptions(connect_timeout_s=0.5))
    status = NodeStatus(node_id="unit", comfy_url=comfy.base_url, url="", started_ms=0)
    return ComfySupervisor(command=command, port=port, comfy=comfy, status=status,
                           sink=lines.append, on_health=lambda _ok: None, stop_grace_s=0.3,
                           backoff_s=(0.05, 0.05))  # fmt: skip


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    lines: list[ComfyLine] = []
    supervisor = _supervisor(STUBBORN, free_port(), lines)
    task = asyncio.create_task(supervisor.run())
    try:

        async def said() -> list[str]:
            return [line.text for line in lines]

        await until(said, lambda t: "ignoring SIGTERM" in t, what="the child to start")
        pid = supervisor.info.pid
        assert pid is not None
        assert supervisor.info.state == "starting"  # it never answers HTTP
    finally:
        await stop(task)
        await supervisor.stop()
        await supervisor.comfy.close()
    assert process_state(pid) is None  # killed and reaped
    assert supervisor.info.state == "stopped"
    assert lines[0].stream == "stdout"


async def test_a_port_held_by_another_process_is_reported_not_fought_over() -> None:
    lines: list[ComfyLine] = []
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        supervisor = _supervisor(STUBBORN, port, lines)
        task = asyncio.create_task(supervisor.run())
        try:

            async def info() -> object:
                return supervisor.info

            await until(info, lambda i: getattr(i, "last_exit", None) == "port taken",
                        what="the port to be reported")  # fmt: skip
            assert supervisor.info.starts == 0  # nothing was started on it
            assert f"port {port} is taken by another process" in supervisor.info.last_lines
        finally:
            await stop(task)
            await supervisor.stop()
            await supervisor.comfy.close()


async def test_the_child_gets_the_environment_without_the_fleets_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_PASSWORD", "pw-must-not-leak")
    monkeypatch.setenv("REDIS_URL", "redis://:pw-must-not-leak@127.0.0.1:1/0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-key-must-not-leak")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    probe = shlex.join([sys.executable, "-c", "import os, time; print(sorted(k for k in "
                        "('API_PASSWORD', 'REDIS_URL', 'AWS_SECRET_ACCESS_KEY', "
                        "'CUDA_VISIBLE_DEVICES') if k in "
                        "os.environ), flush=True); time.sleep(60)"])  # fmt: skip
    lines: list[ComfyLine] = []
    supervisor = _supervisor(probe, free_port(), lines)
    task = asyncio.create_task(supervisor.run())
    try:

        async def said() -> list[str]:
            return [line.text for line in lines]

        printed = await until(said, bool, what="the child's answer")
    finally:
        await stop(task)
        await supervisor.stop()
        await supervisor.comfy.close()
    assert printed[0] == "['CUDA_VISIBLE_DEVICES']"
