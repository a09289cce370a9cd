"""The Logdy TCP sink against a real line server on loopback."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from datetime import datetime

import orjson
import structlog

from comfyfleet.config import LogConfig
from comfyfleet.logs.logdy import LogdySink
from comfyfleet.logs.setup import bind_job, configure_logging
from tests.logs.conftest import LineServer

LIMIT = 64 * 1024


def fast_sink(port: int, **options: int) -> LogdySink:
    return LogdySink("127.0.0.1", port, backoff_initial_s=0.01, backoff_max_s=0.05, **options)


async def test_lines_carry_role_node_and_job(line_server: LineServer) -> None:
    stdout = io.StringIO()
    sink = configure_logging(
        LogConfig(logdy=f"127.0.0.1:{line_server.port}"),
        role="node",
        node_id="node-1",
        stream=stdout,
    )
    assert sink is not None
    await sink.start()
    log = structlog.get_logger("test")
    log.info("idle")
    with bind_job("job-42"):
        log.info("working", step=3)
        logging.getLogger("aiohttp.access").info("GET /prompt 200")
    log.warning("after")

    lines = [(await line_server.next_line())[1] for _ in range(4)]
    await sink.aclose()

    assert [line["event"] for line in lines] == ["idle", "working", "GET /prompt 200", "after"]
    for line in lines:
        assert line["role"] == "node"
        assert line["node_id"] == "node-1"
        assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None
    assert [line.get("job_id") for line in lines] == [None, "job-42", "job-42", None]
    assert [line["level"] for line in lines] == ["info", "info", "info", "warning"]
    assert lines[1]["step"] == 3
    assert lines[2]["logger"] == "aiohttp.access"
    # stdout got the very same lines.
    assert [orjson.loads(s) for s in stdout.getvalue().splitlines()] == lines


async def test_oversized_message_arrives_as_one_line_under_64k(line_server: LineServer) -> None:
    stdout = io.StringIO()
    sink = configure_logging(
        LogConfig(logdy=f"127.0.0.1:{line_server.port}"), role="balancer", stream=stdout
    )
    assert sink is not None
    await sink.start()
    structlog.get_logger().info("big", payload="x" * 200 * 1024, small="kept")
    structlog.get_logger().info("next")
    _, line = await line_server.next_line()
    _, following = await line_server.next_line()
    await sink.aclose()

    assert line["event"] == "big"
    assert line["truncated"] is True
    assert line["small"] == "kept"
    assert line["payload"].startswith("xxx")
    assert line_server.line_sizes[0] < LIMIT
    assert following["event"] == "next"
    assert "truncated" not in following
    # stdout has no such limit and keeps the whole payload.
    assert len(orjson.loads(stdout.getvalue().splitlines()[0])["payload"]) == 200 * 1024


async def test_logdy_down_then_up_delivers_the_newest_and_reports_drops() -> None:
    placeholder = await LineServer().start()
    port = placeholder.port
    await placeholder.aclose()  # nothing listens on `port` now

    sink = fast_sink(port, max_lines=10)
    configure_logging(LogConfig(), role="node", node_id="n1", stream=io.StringIO(), sink=sink)
    log = structlog.get_logger()
    for i in range(5):
        log.info("line", i=i)  # before the sink starts: buffered
    await sink.start()
    for i in range(5, 25):
        log.info("line", i=i)
    assert sink.dropped == 15
    assert not sink.connected

    server = await LineServer().start(port)
    try:
        received = [(await server.next_line())[1] for _ in range(11)]
    finally:
        await sink.aclose()
        await server.aclose()
    assert [line["i"] for line in received[:10]] == list(range(15, 25))
    notice = received[10]
    assert notice["event"] == "logdy_lines_dropped"
    assert notice["dropped"] == 15
    assert notice["level"] == "warning"
    assert notice["role"] == "node"


async def test_sink_reconnects_when_logdy_hangs_up() -> None:
    server = await LineServer(hang_up_after=2).start()
    sink = fast_sink(server.port)
    configure_logging(LogConfig(), role="node", stream=io.StringIO(), sink=sink)
    log = structlog.get_logger()
    await sink.start()
    try:
        assert await server.next_connection() == 1
        for i in range(5):
            log.info("before", i=i)
        assert (await server.next_line())[0] == 1
        assert (await server.next_line())[0] == 1
        # The server hung up mid-stream; the sink notices and connects again on its own.
        assert await server.next_connection() == 2
        log.info("after")
        number, line = await server.next_event("after")
        assert number == 2
        assert line["role"] == "node"
        assert sink.connects == 2
    finally:
        await sink.aclose()
        await server.aclose()


async def test_lines_from_another_thread_arrive_tagged(line_server: LineServer) -> None:
    sink = fast_sink(line_server.port)
    configure_logging(LogConfig(), role="node", node_id="n7", stream=io.StringIO(), sink=sink)
    await sink.start()
    # A bare thread starts with an empty context; the role still reaches its lines.
    thread = threading.Thread(target=lambda: structlog.get_logger().info("from_thread"))
    thread.start()
    thread.join()
    _, line = await line_server.next_event("from_thread")
    await sink.aclose()
    assert (line["role"], line["node_id"]) == ("node", "n7")


async def test_close_flushes_what_is_buffered(line_server: LineServer) -> None:
    sink = fast_sink(line_server.port)
    configure_logging(LogConfig(), role="node", stream=io.StringIO(), sink=sink)
    await sink.start()
    log = structlog.get_logger()
    for i in range(500):
        log.info("burst", i=i)
    await sink.aclose()
    received = [(await line_server.next_line())[1]["i"] for _ in range(500)]
    assert received == list(range(500))
    assert sink.dropped == 0


async def test_close_gives_up_when_logdy_is_away() -> None:
    placeholder = await LineServer().start()
    port = placeholder.port
    await placeholder.aclose()
    sink = fast_sink(port)
    sink.push({"event": "lost"})
    await sink.start()
    await asyncio.wait_for(sink.aclose(timeout_s=1.0), 5)
    assert sink.pending() == 1
