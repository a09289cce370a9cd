"""The error hierarchy. Each error knows whether it is worth retrying, which HTTP status it
maps to and its stable problem `type` (RFC 9457); one middleware in `web` renders them."""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://comfyfleet.dev/problems/"


class ComfyfleetError(Exception):
    """Base of every error comfyfleet raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.code

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        body.update(self.extra)
        return body


class ConfigError(ComfyfleetError):
    code = "config"
    title = "Invalid configuration"


class ValidationFailed(ComfyfleetError):
    status = 422
    code = "validation"
    title = "Invalid request"


class BadRequest(ComfyfleetError):
    status = 400
    code = "bad-request"
    title = "Bad request"


class NotFound(ComfyfleetError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(ComfyfleetError):
    status = 409
    code = "conflict"
    title = "Conflict"


class WorkflowError(ComfyfleetError):
    """A workflow template is broken: names the file and the node."""

    status = 422
    code = "workflow-invalid"
    title = "Invalid workflow"


class UnknownWorkflow(NotFound):
    code = "workflow-unknown"
    title = "Unknown workflow"


class ParamError(ValidationFailed):
    code = "param-invalid"
    title = "Invalid workflow parameter"


class StoreError(ComfyfleetError):
    """Redis is unreachable or answered something unexpected; the caller may retry."""

    status = 503
    code = "store-unavailable"
    title = "State store unavailable"
    retryable = True


class StoreFull(StoreError):
    """Redis refused a write because it is at its memory limit (maxmemory, noeviction):
    nothing was written; the same request succeeds once memory frees."""

    status = 507
    code = "store-full"
    title = "State store full"


class NotOwner(Conflict):
    """A write to a job by someone who does not hold its lease (a stale owner)."""

    code = "not-owner"
    title = "Not the job's owner"


class InvalidTransition(Conflict):
    code = "invalid-transition"
    title = "Job is not in a state that allows this"


class ComfyError(ComfyfleetError):
    """ComfyUI misbehaved or is unreachable; worth trying again elsewhere."""

    status = 502
    code = "comfy-unavailable"
    title = "ComfyUI unavailable"
    retryable = True


class QuotaExceeded(ComfyfleetError):
    """A tenant (the job's owner) is at one of its limits: nothing was accepted. `limit`
    names it (`max_queued`, ...); the answer carries `Retry-After: retry_after_s`. Any
    limit of a tenant uses this error, whoever checks it."""

    status = 429
    code = "quota-exceeded"
    title = "Quota exceeded"
    retryable = True

    def __init__(self, detail: str, *, limit: str, retry_after_s: int = 5, **extra: Any) -> None:
        super().__init__(detail, limit=limit, **extra)
        self.limit = limit
        self.retry_after_s = retry_after_s


class NotAllowed(ComfyfleetError):
    """A tenant's limits do not allow what a job asks for (a workflow, pool or priority it
    was not granted): 403, since waiting will not help. `limit` names it, `allowed` says
    what is."""

    status = 403
    code = "not-allowed"
    title = "Not allowed by the tenant's limits"


class NoCapableNode(ComfyfleetError):
    """No registered node has what a job needs (node classes, model files): it would wait
    forever, so it is refused at submit. Extras name what is missing."""

    status = 400
    code = "no-capable-node"
    title = "No node can run this job"
