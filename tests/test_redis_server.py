from __future__ import annotations

from pathlib import Path

import pytest
import redis

from comfyfleet.errors import ConfigError
from comfyfleet.redis_server import RedisServer, find_server_binary


def test_suite_server_answers(redis_server: RedisServer) -> None:
    assert redis.Redis.from_url(redis_server.url).ping()


def test_restart_with_aof_keeps_data(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.close()
        server.restart(kill=False)
        client = redis.Redis.from_url(server.url)
        assert client.get("k") == b"v"
        client.close()
    finally:
        server.stop()


def test_missing_override_binary_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="not found"):
        find_server_binary("/nonexistent/redis-server")
