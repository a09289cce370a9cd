"""`comfyfleet workflow ...` as a real process against a balancer on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

from comfyfleet.templates.builtin import builtin_folder
from tests.api.conftest import PASSWORD, USER, Role
from tests.templates.conftest import write_json
from tests.workflows_versions.conftest import PARAMS, Client, graph


async def _cli(role: Role, *args: str, key: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "COMFYFLEET_"))}
    env.update(COMFYFLEET_URL=role.url, API_USERNAME=USER, API_PASSWORD=PASSWORD)
    if key:
        env["COMFYFLEET_API_KEY"] = key
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "comfyfleet", "workflow", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_publish_list_versions_rollback_from_a_shell(
    replicas: list[Role], tmp_path: Path
) -> None:
    role = replicas[0]
    write_json(tmp_path / "vtest-api.json", graph(32))
    write_json(tmp_path / "vtest.params.json", PARAMS)
    api, params = str(tmp_path / "vtest-api.json"), str(tmp_path / "vtest.params.json")
    code, out, err = await _cli(role, "publish", "vtest", "--api", api, "--params", params,
                                "--note", "one")  # fmt: skip
    assert code == 0, err
    v1 = out.split()[1]
    write_json(tmp_path / "vtest-api.json", graph(48))
    code, out, err = await _cli(role, "publish", "vtest", "--api", api)
    assert code == 0, err
    v2 = out.split()[1]
    assert v1 != v2
    assert out.split()[2] == "published"

    code, out, _ = await _cli(role, "versions", "vtest")
    lines = out.splitlines()
    assert lines[0].startswith(f"* {v2}")
    assert lines[1].startswith(f"  {v1}")
    assert "one" in lines[1]

    code, out, err = await _cli(role, "rollback", "vtest", v1)
    assert code == 0, err
    assert f"rolled_back (was {v2})" in out
    assert await Client(replicas[1]).active("vtest") == v1
    code, out, _ = await _cli(role, "list")
    assert "vtest" in out
    assert any(line.split()[:2] == ["vtest", v1] for line in out.splitlines())

    # A refusal is a clear message and exit 1.
    code, _, err = await _cli(role, "rollback", "vtest", "0" * 12)
    assert code == 1
    assert "HTTP 404" in err
    assert "no version" in err


async def test_publish_a_folder_and_refuse_without_scope(
    replicas: list[Role], tmp_path: Path
) -> None:
    folder = tmp_path / "workflows"
    shutil.copytree(builtin_folder(), folder)
    (folder / "solid-api.json").rename(folder / "solid2-api.json")
    code, out, err = await _cli(replicas[1], "publish", "--dir", str(folder))
    assert code == 0, err
    names = [line.split()[0] for line in out.splitlines()]
    assert "solid2" in names
    assert "txt2img" in names
    # Unchanged built-ins were active already: nothing new.
    assert all(line.split()[2] == "unchanged" for line in out.splitlines() if "solid2" not in line)

    admin = Client(replicas[0])
    _, made = await admin.call("POST", "/api/v1/apikeys", {"name": "ci"})
    code, _, err = await _cli(replicas[0], "retire", "solid2", key=made["key"])
    assert code == 1
    assert "HTTP 403" in err
    code, _, err = await _cli(replicas[0], "retire", "solid2")
    assert code == 0, err
    assert await admin.active("solid2") is None
