"""Finding 7: a malformed header next to valid credentials got a 400 echoing the header, and
the balancer's log kept the raw `Basic ...` value at error level."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
import structlog

from comfyfleet.config import LogConfig, RedisConfig
from comfyfleet.logs.setup import configure_logging
from tests.security.fleet import AUTH, fleet
from tests.security.rawhttp import exchange, split

TOKEN = AUTH["Authorization"].removeprefix("Basic ")
BEARER = "cfk_0123456789abcdef_" + "s" * 40
MALFORMED = {
    "space before colon": f"Authorization : Basic {TOKEN}\r\n",
    "folded header": f"Authorization: Basic {TOKEN}\r\n X-Folded: yes\r\n",
    "header over 8190 bytes": f"Authorization: Basic {TOKEN}\r\nX-Big: {'a' * 9000}\r\n",
    "huge authorization": f"Authorization: Basic {TOKEN}{'A' * 9000}\r\n",
    "bearer, bad name": f"X-Bad Name: 1\r\nAuthorization: Bearer {BEARER}\r\n",
    "control character": f"Authorization: Basic {TOKEN}\x01\r\n",
}


@pytest.fixture
def log_lines() -> io.StringIO:
    """The process's log lines, as `comfyfleet balancer` writes them."""
    out = io.StringIO()
    configure_logging(LogConfig(level="debug"), role="balancer", stream=out)
    yield out
    structlog.reset_defaults()
    for handler in list(logging.getLogger().handlers):
        if handler.__class__.__name__ == "_OurHandler":
            logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("name", MALFORMED)
async def test_a_parser_error_echoes_no_header_and_logs_no_secret(
    redis_config: RedisConfig, log_lines: io.StringIO, name: str
) -> None:
    async with fleet(redis_config) as f:
        head = f"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n{MALFORMED[name]}\r\n".encode()
        status, raw_head, body = split(await exchange(f.url, head))
    assert status in (400, 431)
    for secret in (TOKEN[:16], BEARER[4:20], "aaaaaaaaaa", "X-Bad", "Folded"):
        assert secret.encode() not in raw_head + body
    problem = orjson.loads(body)
    assert problem["status"] == status
    assert problem["code"] in ("bad-request", "request-header-fields-too-large")
    logged = log_lines.getvalue()
    assert "bad_http_request" in logged
    assert TOKEN[:16] not in logged
    assert BEARER[4:20] not in logged


def test_credentials_in_any_log_line_are_redacted(log_lines: io.StringIO) -> None:
    log = structlog.get_logger("anywhere")
    log.error("boom", header=f"Authorization: Basic {TOKEN}", key=f"Bearer {BEARER}")
    logging.getLogger("aiohttp.server").error("raw %s", f"b'Authorization: basic {TOKEN}'")
    try:
        raise ValueError(f"bad header b'Authorization: Bearer {BEARER}'")
    except ValueError:
        log.exception("failed")
    logged = log_lines.getvalue()
    assert logged.count("***") >= 4
    assert TOKEN[:16] not in logged
    assert BEARER[4:20] not in logged
