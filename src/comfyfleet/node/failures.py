"""What a ComfyUI outcome or error means for the job: its error code, and whether another
attempt (maybe on another node) could succeed.

Retryable: the node or its ComfyUI failed (unreachable, restarted, out of GPU memory, 5xx,
timeouts). Permanent: the job itself is wrong (validation, missing model or node class, an
exception inside the graph).
"""

from __future__ import annotations

from comfyfleet.comfy import ExecutionFailed, Rejected
from comfyfleet.models.job import JobError, JobErrorCode

OOM_MARKERS = ("outofmemory", "out of memory", "cuda error: out of memory")
TRACEBACK_LINES_KEPT = 20


def rejected_error(node_id: str, outcome: Rejected) -> JobError:
    """ComfyUI refused the graph (HTTP 400): the job is wrong, not the node."""
    per_node = {
        nid: [f"{issue.type}: {issue.message} {issue.details}".strip() for issue in err.errors]
        for nid, err in outcome.node_errors.items()
    }
    first = next(iter(per_node.items()), None)
    summary = f"node {first[0]}: {first[1][0]}" if first and first[1] else outcome.message
    return JobError(
        code=JobErrorCode.COMFY_VALIDATION,
        message=f"ComfyUI rejected the graph ({outcome.error_type}): {summary}",
        retryable=False,
        node_id=node_id,
        comfy_node_id=first[0] if first else None,
        details={"error_type": outcome.error_type, "node_errors": per_node},
    )


def execution_error(node_id: str, outcome: ExecutionFailed) -> JobError:
    text = f"{outcome.exception_type} {outcome.exception_message}".lower()
    oom = any(marker in text for marker in OOM_MARKERS)
    return JobError(
        code=JobErrorCode.COMFY_OOM if oom else JobErrorCode.EXECUTION_ERROR,
        message=(
            f"node {outcome.node_id} ({outcome.node_type}) raised "
            f"{outcome.exception_type}: {outcome.exception_message}"
        ).strip(),
        retryable=oom,
        node_id=node_id,
        comfy_node_id=outcome.node_id,
        comfy_node_type=outcome.node_type,
        details={"traceback": outcome.traceback[-TRACEBACK_LINES_KEPT:]},
    )


def node_fault(node_id: str, code: JobErrorCode, message: str) -> JobError:
    """Something went wrong on this node's side; another attempt may well succeed."""
    return JobError(code=code, message=message, retryable=True, node_id=node_id)
