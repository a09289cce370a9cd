"""What can go wrong talking to ComfyUI, split by whether trying again can help.

- `ComfyError` subclasses (from `comfyfleet.errors`, retryable): ComfyUI is unreachable,
  timed out, answered 5xx, or answered something this client cannot parse.
- `ComfyRefused` subclasses (not retryable): ComfyUI understood the request and said no
  (a 4xx). Sending the same request again gets the same answer.
"""

from __future__ import annotations

from typing import Any

import orjson

from comfyfleet.comfy.models import NodeError
from comfyfleet.errors import ComfyError, ComfyfleetError


class ComfyUnavailable(ComfyError):
    """No answer: connection refused or reset, or the request timed out."""

    code = "comfy-unreachable"
    title = "ComfyUI unreachable"


class ComfyServerError(ComfyError):
    """ComfyUI answered 5xx. It does so (text/plain) for a body that is not JSON, or a
    `prompt` that is not an object; an overloaded or crashing server looks the same."""

    code = "comfy-server-error"
    title = "ComfyUI server error"

    def __init__(self, detail: str, *, http_status: int, body: str = "") -> None:
        super().__init__(detail, http_status=http_status)
        self.http_status = http_status
        self.body = body


class ComfyProtocolError(ComfyError):
    """ComfyUI answered 2xx with something that does not match its protocol."""

    code = "comfy-protocol"
    title = "Unexpected answer from ComfyUI"


class WaitTimeout(ComfyError, TimeoutError):
    """`wait()` gave up before the prompt reached an outcome. The prompt may still run."""

    code = "comfy-wait-timeout"
    title = "Timed out waiting for ComfyUI"


class ComfyRefused(ComfyfleetError):
    """ComfyUI answered 4xx: the request itself is wrong, so retrying cannot help."""

    status = 502
    code = "comfy-refused"
    title = "ComfyUI refused the request"
    retryable = False

    def __init__(self, detail: str, *, http_status: int, **extra: Any) -> None:
        super().__init__(detail, http_status=http_status, **extra)
        self.http_status = http_status


class ComfyBadRequest(ComfyRefused):
    """400 with an empty body (an upload without `image`, `..` in a /view filename...)."""

    code = "comfy-bad-request"


class ComfyForbidden(ComfyRefused):
    """403: ComfyUI's origin check refused the request (Origin does not match Host)."""

    code = "comfy-forbidden"


class ComfyNotFound(ComfyRefused):
    """404: no such file (/view), model folder (/models/x) or route."""

    status = 404
    code = "comfy-not-found"
    title = "Not found on ComfyUI"


class PromptRejected(ComfyRefused):
    """POST /prompt answered 400: the graph failed validation and nothing was queued.

    `error_type` is ComfyUI's `error.type` (`invalid_prompt`, `prompt_no_outputs`,
    `no_prompt`, `prompt_outputs_failed_validation`); `node_errors` names each bad node
    and its errors (empty for the first three types).
    """

    status = 422
    code = "comfy-prompt-rejected"
    title = "ComfyUI rejected the workflow"

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        details: str = "",
        node_errors: dict[str, NodeError] | None = None,
    ) -> None:
        errors = node_errors or {}
        super().__init__(
            message,
            http_status=400,
            error_type=error_type,
            node_errors={k: v.model_dump(mode="json") for k, v in errors.items()},
        )
        self.error_type = error_type
        self.message = message
        self.details = details
        self.node_errors = errors


def error_for_status(method: str, path: str, status: int, raw: bytes) -> ComfyfleetError:
    """The typed error for an HTTP answer >= 400 (`raw` is its body)."""
    what = f"{method} {path} answered {status}"
    if status >= 500:
        text = raw.decode("utf-8", errors="replace")
        return ComfyServerError(what, http_status=status, body=text)
    if status == 400 and path == "/prompt" and raw:
        return _rejection(raw)
    kinds: dict[int, type[ComfyRefused]] = {
        400: ComfyBadRequest,
        403: ComfyForbidden,
        404: ComfyNotFound,
    }
    return kinds.get(status, ComfyRefused)(what, http_status=status)


def _rejection(raw: bytes) -> PromptRejected | ComfyProtocolError:
    """The typed error for POST /prompt's 400 body `{"error": {...}, "node_errors": {...}}`."""
    try:
        body = orjson.loads(raw)
        error = body["error"]
        node_errors = {k: NodeError.model_validate(v) for k, v in body["node_errors"].items()}
        return PromptRejected(
            str(error.get("message", "")),
            error_type=str(error["type"]),
            details=str(error.get("details", "")),
            node_errors=node_errors,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        return ComfyProtocolError(f"POST /prompt 400 with an unexpected body: {exc!r}")
