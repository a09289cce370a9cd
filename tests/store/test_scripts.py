"""Every Lua script: compiles, documents each key it touches, and reads exactly the named
arguments of its dataclass (a name the Python side does not send would be nil in Lua)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from comfyfleet.alerts import store as alert_store
from comfyfleet.store import (
    apikeys,
    input_names,
    inputs,
    inventory,
    joblogs,
    leader,
    logins,
    nodes,
    routing,
    userdata,
    webhooks,
)
from comfyfleet.store.scripts import (
    ARGS_PRELUDE,
    JOB_SCRIPT_ARGS,
    Namespace,
    NoArgs,
    read_lua,
    source,
)
from comfyfleet.templates import publishing

LUA = Path(__file__).parents[2] / "src" / "comfyfleet" / "store" / "lua"
FENCED_ARGS: dict[str, type] = {"alerts_commit": alert_store.CommitArgs}
TEMPLATES_LUA = LUA.parents[1] / "templates" / "lua"
TEMPLATE_ARGS: dict[str, type] = {
    "publish": publishing.PublishArgs,
    "rollback": publishing.RollbackArgs,
    "retire": publishing.RetireArgs,
}
STANDALONE_ARGS: dict[str, type] = {
    "apikey_create": apikeys.CreateArgs,
    "class_register": routing.RegisterArgs,
    "cover": routing.CoverArgs,
    "inventory_drop": inventory.DropArgs,
    "input_name": input_names.NameArgs,
    "apikey_revoke": apikeys.RevokeArgs,
    "apikey_touch": apikeys.TouchArgs,
    "joblog_append": joblogs.AppendArgs,
    "input_put": inputs.PutArgs,
    "input_hold": inputs.HoldArgs,
    "leader_acquire": leader.AcquireArgs,
    "heartbeat": nodes.HeartbeatArgs,
    "clock_now": NoArgs,
    "leader_renew": leader.RenewArgs,
    "login_failed": logins.FailedArgs,
    "login_wait": logins.WaitArgs,
    "webhook_claim": webhooks.ClaimArgs,
    "webhook_collect": webhooks.CollectArgs,
    "webhook_lease": webhooks.LeaseArgs,
    "webhook_settle": webhooks.SettleArgs,
    "userdata_put": userdata.PutArgs,
    "userdata_move": userdata.MoveArgs,
    "userdata_delete": userdata.DeleteArgs,
}


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_script_file_has_its_arguments_listed() -> None:
    files = {path.stem for path in LUA.glob("*.lua") if not path.stem.startswith("_")}
    assert files == set(JOB_SCRIPT_ARGS) | set(STANDALONE_ARGS) | set(FENCED_ARGS)
    assert {path.stem for path in TEMPLATES_LUA.glob("*.lua")} == set(TEMPLATE_ARGS)


@pytest.mark.parametrize("name", sorted(JOB_SCRIPT_ARGS))
async def test_job_script_loads_and_documents_its_keys_and_arguments(
    name: str, redis_client: aioredis.Redis
) -> None:
    text = source(name)
    body = text.split("\n-- " + name + ":", 1)
    assert len(body) == 2, f"{name}.lua must start with a '-- {name}:' header"
    header = body[1].split("\n\n", 1)[0]
    documented = header + " ".join(f"KEYS[{i}]" for i in range(1, 6))  # the shared five
    for index in set(re.findall(r"KEYS\[(\d+)\]", body[1])):
        assert f"KEYS[{index}]" in documented or f"KEYS[{index}.." in header, (name, index)
    assert "ARGV" not in body[1], f"{name}.lua reads ARGV by position"
    args = JOB_SCRIPT_ARGS[name]
    assert f"A ({args.__name__})" in header, name
    assert set(re.findall(r"\bA\.(\w+)", body[1])) == _names(args), name
    lib_and_script = read_lua("_lib") + body[1]
    assert set(re.findall(r"\bNS\.(\w+)", lib_and_script)) <= _names(Namespace)
    # SCRIPT LOAD compiles the script: a syntax error fails here, not on first use.
    assert await redis_client.script_load(text)


def test_the_prelude_uses_every_namespace_field() -> None:
    used = set(re.findall(r"\bNS\.(\w+)", "".join(source(n) for n in JOB_SCRIPT_ARGS)))
    assert used == _names(Namespace)


@pytest.mark.parametrize("name", sorted(STANDALONE_ARGS))
async def test_standalone_script_reads_exactly_its_named_arguments(
    name: str, redis_client: aioredis.Redis
) -> None:
    text = read_lua(name)
    assert text.startswith(f"-- {name}:"), name
    assert f"A ({STANDALONE_ARGS[name].__module__.rsplit('.', 1)[1]}." in text, name
    assert set(re.findall(r"\bA\.(\w+)", text)) == _names(STANDALONE_ARGS[name]), name
    assert not re.search(r"ARGV\[1\]", text), f"{name}.lua reads its arguments by position"
    assert await redis_client.script_load(ARGS_PRELUDE + text)


@pytest.mark.parametrize("name", sorted(FENCED_ARGS))
async def test_fenced_script_reads_exactly_its_named_arguments(
    name: str, redis_client: aioredis.Redis
) -> None:
    text = read_lua(name)
    assert text.startswith(f"-- {name}:"), name
    assert set(re.findall(r"\bA\.(\w+)", text)) == _names(FENCED_ARGS[name]), name
    code = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    assert "ARGV" not in "\n".join(code), f"{name}.lua reads ARGV by position"
    assert await redis_client.script_load(read_lua("_fence") + "\n" + text)


@pytest.mark.parametrize("name", sorted(TEMPLATE_ARGS))
async def test_workflow_script_reads_exactly_its_named_arguments(
    name: str, redis_client: aioredis.Redis
) -> None:
    text = (TEMPLATES_LUA / f"{name}.lua").read_text()
    assert text.startswith(f"-- {name}:"), name
    assert set(re.findall(r"\bA\.(\w+)", text)) == _names(TEMPLATE_ARGS[name]), name
    assert "ARGV" not in text, f"{name}.lua reads its arguments by position"
    assert await redis_client.script_load(ARGS_PRELUDE + text)


def test_no_script_builds_a_key_name_from_another() -> None:
    # The namespace comes from keys.py (NS prefixes), never from cutting up a key string.
    for path in LUA.glob("*.lua"):
        assert "string.sub(job_key" not in path.read_text(), path.name
