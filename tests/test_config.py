from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from comfyfleet.config import (
    DEFAULT_REDIS_URL,
    LogConfig,
    ServerConfig,
    parse_host_port,
    parse_models,
    redact_url,
    redis_url_from_parts,
)
from comfyfleet.errors import ConfigError
from comfyfleet.web.auth import auth_middlewares


def test_redis_url_wins_over_seed_parts() -> None:
    assert redis_url_from_parts("redis://x:1/2", "h", 3, "p", 4) == "redis://x:1/2"


def test_seed_parts_build_a_url_with_an_escaped_password() -> None:
    url = redis_url_from_parts(None, "redis", 6380, "p@ss/word", 2)
    assert url == "redis://:p%40ss%2Fword@redis:6380/2"
    assert redis_url_from_parts(None) == DEFAULT_REDIS_URL


def test_redacted_url_hides_the_password() -> None:
    assert redact_url("redis://:secret@h:6379/0") == "redis://:***@h:6379/0"
    assert "secret" not in redact_url("redis://user:secret@h/0")


def test_host_port_and_models_parse_or_fail_clearly() -> None:
    assert parse_host_port("logdy:8081") == ("logdy", 8081)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_host_port("logdy")
    assert parse_models(["checkpoints=a.safetensors,b.safetensors", "loras=x"]) == {
        "checkpoints": ("a.safetensors", "b.safetensors"),
        "loras": ("x",),
    }
    with pytest.raises(ConfigError, match="FOLDER=FILE"):
        parse_models(["nonsense"])
    with pytest.raises(ValidationError):
        LogConfig(logdy="no-port")


def test_config_is_frozen() -> None:
    cfg = ServerConfig(port=1)
    with pytest.raises(ValidationError):
        cfg.port = 2  # type: ignore[misc]


def test_beyond_loopback_needs_credentials_or_insecure() -> None:
    with pytest.raises(ConfigError, match="without credentials"):
        auth_middlewares(ServerConfig(host="0.0.0.0"))
    assert auth_middlewares(ServerConfig(host="0.0.0.0", insecure=True)) == []
    assert auth_middlewares(ServerConfig(host="127.0.0.1")) == []
    secured = ServerConfig(host="0.0.0.0", username="u", password=SecretStr("p"))
    assert len(auth_middlewares(secured)) == 1
