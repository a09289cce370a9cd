"""How every role is served: aiohttp's runner, with what a port open to the network needs.

- A header-read timeout (`HEADER_TIMEOUT_S`): a connection must deliver a complete request
  head within it after it opens or after its previous response, else it is closed. A
  slowloris client trickling header bytes used to hold its socket for good. (aiohttp closes
  a connection whose keep-alive timer fires while it still waits for a request head; the
  timer starts when the connection opens and after each response, so it is exactly a
  header-read timeout. Requests being handled -- SSE, long-polls, uploads -- are not cut.)
- Errors aiohttp's own HTTP parser answers (a malformed request line or header, a folded
  header, a line over 8190 bytes) come back as problem+json naming only the kind of
  problem: aiohttp's text quotes the offending bytes, which may be someone's credentials.
  They are logged at info as `bad_http_request`, also without the bytes.
- The access log is one structured line per request (`AccessLog`), logged straight through
  structlog: aiohttp's own formats a text line through the stdlib's logging, which cost
  about a fifth of the balancer's CPU under submit load.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, InvalidHeader, LineTooLong
from aiohttp.web_protocol import RequestHandler

from comfyfleet.errors import PROBLEM_BASE
from comfyfleet.web.problems import HTTP_CODES, REQUEST_ID_HEADER, problem_response

log = structlog.get_logger(__name__)
access_log = structlog.get_logger("aiohttp.access")

# Seconds a connection has to deliver a complete request head (see the module docstring).
HEADER_TIMEOUT_S = 20.0
SHUTDOWN_TIMEOUT_S = 30.0


def _what_was_wrong(exc: BaseException | None) -> str:
    if isinstance(exc, LineTooLong):
        return "a request line or header is longer than the server accepts (8190 bytes)"
    if isinstance(exc, InvalidHeader):
        return "a header is malformed (name, value or line folding)"
    if isinstance(exc, BadStatusLine):
        return "the request line is malformed"
    if isinstance(exc, BadHttpMessage):
        return "the request is not valid HTTP/1.1"
    return "the request could not be read"


class _Handler(RequestHandler):
    """aiohttp's connection handler, answering its own errors without echoing the request."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        if status >= 500:
            log.error("server_error", status=status, request_id=request_id, exc_info=exc)
            detail = "the server failed to handle this request; see its log"
        else:
            detail = _what_was_wrong(exc)
            log.info("bad_http_request", status=status, detail=detail,
                     error=type(exc).__name__, remote=request.remote)  # fmt: skip
        code = HTTP_CODES.get(status, f"http-{status}") if status < 500 else "internal"
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        body = {"type": PROBLEM_BASE + code, "title": phrase, "status": status,
                "detail": detail, "code": code}  # fmt: skip
        response = problem_response(body, request_id)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp's own message and the exception, through the redacting log pipeline.
        text = str(args[0]) % args[1:] if len(args) > 1 else str(args[0]) if args else ""
        log.error("server_exception", detail=text, exc_info=kw.get("exc_info", True))


class AccessLog(AbstractAccessLogger):
    """One `request` line per answered request: method, path with query (redacted like every
    line), status, bytes sent (headers included), duration (ms), the peer and the request
    id (X-Request-ID). Referer and User-Agent are left out (aiohttp's line had them)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        access_log.info("request", method=request.method, path=request.path_qs,
                        status=response.status, bytes=response.body_length,
                        ms=round(time * 1000, 2), remote=request.remote,
                        request_id=response.headers.get(REQUEST_ID_HEADER))  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class HardenedRunner(web.AppRunner):
    """An AppRunner whose connections are handled by `_Handler`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )


def make_runner(
    app: web.Application,
    *,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
) -> web.AppRunner:
    """The runner every role is served with (see the module docstring). Times in s."""
    return HardenedRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout_s,
        keepalive_timeout=header_timeout_s,
        access_log_class=AccessLog,
    )
