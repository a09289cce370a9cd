"""Logging setup without Logdy: JSON lines to stdout, the stdlib routed the same way."""

from __future__ import annotations

import io
import logging
from datetime import datetime
from typing import Any

import orjson
import pytest
import structlog

from comfyfleet.config import LogConfig
from comfyfleet.errors import ConfigError
from comfyfleet.logs.logdy import MAX_LINE_BYTES, encode, fit_line
from comfyfleet.logs.setup import bind_job, bind_role, configure_logging


def lines_of(stdout: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stdout.getvalue().splitlines()]


def test_stdout_only_when_no_logdy_is_configured() -> None:
    stdout = io.StringIO()
    assert configure_logging(LogConfig(), role="balancer", stream=stdout) is None
    structlog.get_logger().info("hello", n=1)
    (line,) = lines_of(stdout)
    assert line["event"] == "hello"
    assert line["n"] == 1
    assert line["role"] == "balancer"
    assert "node_id" not in line
    assert line["level"] == "info"
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() is not None


def test_stdlib_records_share_the_shape_and_keep_tracebacks() -> None:
    stdout = io.StringIO()
    configure_logging(LogConfig(), role="node", node_id="n1", stream=stdout)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("aiohttp.server").exception("handler failed")
    (line,) = lines_of(stdout)
    assert line["event"] == "handler failed"
    assert line["level"] == "error"
    assert line["logger"] == "aiohttp.server"
    assert (line["role"], line["node_id"]) == ("node", "n1")
    assert "RuntimeError: boom" in line["exception"]


def test_level_filters_both_structlog_and_stdlib() -> None:
    stdout = io.StringIO()
    configure_logging(LogConfig(level="warning"), role="node", stream=stdout)
    structlog.get_logger().info("quiet")
    logging.getLogger("x").info("quiet too")
    structlog.get_logger().warning("loud")
    logging.getLogger("x").error("louder")
    assert [line["event"] for line in lines_of(stdout)] == ["loud", "louder"]


def test_unknown_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="log level 'chatty'"):
        configure_logging(LogConfig(level="chatty"), role="node")


def test_reconfiguring_replaces_the_previous_setup() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(LogConfig(), role="node", node_id="a", stream=first)
    configure_logging(LogConfig(), role="balancer", stream=second)
    module_logger = structlog.get_logger("some.module")
    module_logger.info("one")
    logging.getLogger("lib").warning("two")
    assert first.getvalue() == ""
    assert [(x["event"], x["role"], x.get("node_id")) for x in lines_of(second)] == [
        ("one", "balancer", None),
        ("two", "balancer", None),
    ]


def test_bind_job_and_role_are_scoped() -> None:
    stdout = io.StringIO()
    configure_logging(LogConfig(), role="up", stream=stdout)
    log = structlog.get_logger()
    bind_role("node", "node-2")
    with bind_job("j1"):
        log.info("inside")
    log.info("outside")
    inside, outside = lines_of(stdout)
    assert (inside["role"], inside["node_id"], inside["job_id"]) == ("node", "node-2", "j1")
    assert "job_id" not in outside


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({"event": "x" * 200_000}, id="huge-event"),
        pytest.param({"event": "e", "q": '"\\' * 100_000}, id="escaping-doubles-size"),
        pytest.param({"event": "e", "c": "\x01" * 30_000}, id="control-chars-grow-6x"),
        pytest.param({"event": "e", "u": "é水🦊" * 30_000}, id="multibyte"),
        pytest.param({"event": "e", "l": list(range(40_000))}, id="big-list"),
        pytest.param({f"k{i}": "v" * 10 for i in range(20_000)} | {"event": "e"}, id="many-keys"),
    ],
)
def test_fit_line_keeps_any_event_under_the_limit_as_valid_json(event: dict[str, Any]) -> None:
    line = fit_line(event)
    assert len(line) <= MAX_LINE_BYTES
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    parsed = orjson.loads(line)
    assert parsed["truncated"] is True
    assert parsed["event"].startswith(event["event"][:10])


def test_fit_line_leaves_small_lines_alone() -> None:
    assert fit_line({"event": "ok", "n": 1}) == b'{"event":"ok","n":1}\n'


def test_encode_survives_what_orjson_refuses() -> None:
    assert orjson.loads(encode({"big": 2**70, "obj": object()}))["big"] == 2**70
    assert orjson.loads(encode({1: "non-str key"})) == {"1": "non-str key"}
