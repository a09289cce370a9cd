"""Configure logging once per process: structlog JSON lines (orjson) to stdout and, when
`--logdy HOST:PORT` is set, to Logdy. The stdlib's loggers (aiohttp's access log, redis,
asyncio) go through the same processors, so every line has one shape:
`{"event", "level", "timestamp" (ISO 8601, UTC), "role", "node_id"?, "job_id"?, ...}`,
with secrets redacted (`logs/redact.py`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, unbind_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

from comfyfleet.config import LogConfig, parse_host_port
from comfyfleet.errors import ConfigError
from comfyfleet.logs.logdy import LogdySink, encode
from comfyfleet.logs.redact import redact_event

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class JsonLineRenderer:
    """The last processor: one JSON line for stdout, and the same event handed to the sink."""

    def __init__(self, sink: LogdySink | None) -> None:
        self.sink = sink

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        line = encode(event_dict)
        if self.sink is not None:
            self.sink.push(event_dict, line)
        return line.decode()


class _Identity:
    """Fills `role`/`node_id` when the contextvars lack them: threads (executors, the stdlib
    logging of libraries) start with an empty context but still belong to this process."""

    def __init__(self, role: str, node_id: str | None) -> None:
        self.fields = {"role": role} | ({"node_id": node_id} if node_id else {})

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        for key, value in self.fields.items():
            event_dict.setdefault(key, value)
        return event_dict


class _OurHandler(logging.StreamHandler[TextIO]):
    """Marks the root handler configure_logging installed, so a second call replaces it."""


def parse_level(name: str) -> int:
    try:
        return LEVELS[name.strip().lower()]
    except KeyError:
        raise ConfigError(f"unknown log level {name!r}; one of {', '.join(LEVELS)}") from None


def configure_logging(
    cfg: LogConfig,
    *,
    role: str,
    node_id: str | None = None,
    stream: TextIO | None = None,
    sink: LogdySink | None = None,
) -> LogdySink | None:
    """Set up structlog and the stdlib root logger for this process and bind `role` (and
    `node_id`) in the current context. Returns the Logdy sink when `cfg.logdy` is set (or the
    `sink` given): the caller runs `await sink.start()` inside its loop and
    `await sink.aclose()` on the way out. Lines logged before start() wait in its buffer.
    `stream` defaults to sys.stdout."""
    level = parse_level(cfg.level)
    if sink is None and cfg.logdy:
        host, port = parse_host_port(cfg.logdy)
        sink = LogdySink(host, port)
    out = stream if stream is not None else sys.stdout
    renderer = JsonLineRenderer(sink)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _Identity(role, node_id),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_event,  # last: it sees the rendered traceback too
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        context_class=dict,
        # Not cached: a later configure_logging (tests, `up`) must reach module-level loggers.
        cache_logger_on_first_use=False,
    )
    handler = _OurHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                *shared,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    bind_role(role, node_id)
    return sink


def bind_role(role: str, node_id: str | None = None) -> None:
    """Tag every later line of this context (and the tasks it creates) with role/node_id;
    `comfyfleet up` runs several roles in one process, each in its own task."""
    bind_contextvars(role=role)
    if node_id:
        bind_contextvars(node_id=node_id)
    else:
        unbind_contextvars("node_id")


@contextlib.contextmanager
def bind_job(job_id: str, **more: Any) -> Iterator[None]:
    """Tag every line logged inside the block (and in tasks created there) with `job_id`."""
    with bound_contextvars(job_id=job_id, **more):
        yield
