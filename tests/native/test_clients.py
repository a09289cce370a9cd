"""Real ComfyUI clients against the fleet, end to end over real processes:

- comfy-cli 1.23 `comfy run --workflow F --host H --port P --wait` (it cannot send
  credentials) through `comfyfleet up --anonymous-from 127.0.0.0/8`, fetching the PNG from
  the `/view` URL it prints;
- ComfyScript 0.6: `load()` the fleet's /object_info with basic-auth credentials, then a
  model-free graph whose images it fetches itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import aiohttp

from comfyfleet.cli.fleet import Fleet
from comfyfleet.redis_server import RedisServer
from tests.conftest import SHARED_WORKFLOWS
from tests.e2e.conftest import PASSWORD, USER
from tests.reliability.test_up import read_until
from tests.support.waiting import until

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
START_DEADLINE_S = 90.0
CLIENT_DEADLINE_S = 90.0
BIN = Path(sys.executable).parent


def _env(home: Path) -> dict[str, str]:
    """The environment of a client or `up`: no fleet credentials, a HOME of its own (the
    clients write their config there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "REDIS_"))}
    return {**env, "HOME": str(home)}


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_comfy_cli_run_through_comfyfleet_up(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "comfyfleet", "up", "--port", "0", "--node-port", "0",
        "--nodes", "1", "--data-dir", str(tmp_path / "fleet"), "--redis-url", redis_server.url,
        "--namespace", f"cli{uuid.uuid4().hex[:8]}", "--anonymous-from", "127.0.0.0/8",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=_env(tmp_path),
    )  # fmt: skip
    try:
        assert up.stdout is not None
        banner = await asyncio.wait_for(read_until(up.stdout, b"Press Ctrl-C"), START_DEADLINE_S)
        base = next(line.split()[1] for line in banner.decode().splitlines()
                    if line.strip().startswith("balancer"))  # fmt: skip
        host, port = base.removeprefix("http://").split(":")
        async with aiohttp.ClientSession() as http:

            async def ready() -> int:
                async with http.get(f"{base}/readyz") as r:
                    return r.status

            await until(ready, lambda status: status == 200, timeout_s=START_DEADLINE_S,
                        what="a ready node")  # fmt: skip
        comfy = await asyncio.create_subprocess_exec(
            str(BIN / "comfy"), "--skip-prompt", "--no-enable-telemetry", "run",
            "--workflow", str(SHARED_WORKFLOWS / "a_empty_save.json"),
            "--host", host, "--port", port, "--wait",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=_env(tmp_path), cwd=tmp_path,
        )  # fmt: skip
        out, err = await asyncio.wait_for(comfy.communicate(), CLIENT_DEADLINE_S)
        assert comfy.returncode == 0, err.decode()[-2000:]
        envelope = json.loads(out.decode().strip().splitlines()[-1])
        assert envelope["ok"] is True, envelope
        assert envelope["data"]["status"] == "completed"
        prompt_id = envelope["data"]["prompt_id"]
        [url] = envelope["data"]["outputs"]
        assert f"subfolder={prompt_id}" in url
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert r.status == 200
            assert (await r.read()).startswith(PNG_MAGIC)
    finally:
        await _stop(up)


async def test_comfyscript_with_basic_auth(fleet: Fleet, tmp_path: Path) -> None:
    script = Path(__file__).with_name("comfyscript_run.py")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "ignore", str(script), f"{fleet.balancer_url}/", USER, PASSWORD,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), CLIENT_DEADLINE_S)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result == {"sizes": [[64, 48]]}
