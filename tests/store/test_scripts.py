from __future__ import annotations

import re

import pytest
import redis.asyncio as aioredis

from comfyfleet.store.scripts import SCRIPT_NAMES, ScriptName, source


@pytest.mark.parametrize("name", SCRIPT_NAMES)
async def test_script_loads_and_documents_its_keys(
    name: ScriptName, redis_client: aioredis.Redis
) -> None:
    text = source(name)
    body = text.split("\n-- " + name + ":", 1)
    assert len(body) == 2, f"{name}.lua must start with a '-- {name}:' header"
    header = body[1].split("\n\n", 1)[0]
    used_keys = set(re.findall(r"KEYS\[(\d+)\]", body[1]))
    used_args = set(re.findall(r"ARGV\[(\d+)\]", body[1]))
    documented = header + " ".join(f"KEYS[{i}]" for i in range(1, 6))  # the shared five
    for index in used_keys:
        assert f"KEYS[{index}]" in documented or f"KEYS[{index}.." in header, (name, index)
    for index in used_args:
        assert f"ARGV[{index}]" in header or f"ARGV[{index}.." in header, (name, index)
    # SCRIPT LOAD compiles the script: a syntax error fails here, not on first use.
    assert await redis_client.script_load(text)
