"""How blobs are named: pure functions, shared by the writers and the sweeper.

    outputs/<pool>/<job id>/a<attempt>-<claim ms>/<index>-<file name>   an output
    inputs/<input id>                                                   an uploaded input

The pool leads so that an operator's lifecycle rule per prefix (`outputs/<pool>/`) is a
retention per pool. The attempt tag keeps each attempt's outputs apart: a stale node that
lost its lease can never overwrite the outputs of the attempt that finished the job, and
the sweeper can tell a live attempt's objects from a dead one's.
"""

from __future__ import annotations

from dataclasses import dataclass

OUTPUTS = "outputs/"
INPUTS = "inputs/"


@dataclass(frozen=True)
class OutputKey:
    pool: str
    job_id: str
    tag: str


def attempt_tag(attempts: int, started_ms: int | None) -> str:
    """One claim of a job: its attempt number and claim time (ms)."""
    return f"a{attempts}-{started_ms or 0}"


def output_key(pool: str, job_id: str, tag: str, index: int, filename: str) -> str:
    """`filename` must already be safe (no '/'); see web.responses.safe_filename."""
    return f"{OUTPUTS}{pool}/{job_id}/{tag}/{index}-{filename}"


def parse_output_key(key: str) -> OutputKey | None:
    parts = key.removeprefix(OUTPUTS).split("/") if key.startswith(OUTPUTS) else []
    if len(parts) != 4 or not all(parts):
        return None
    return OutputKey(pool=parts[0], job_id=parts[1], tag=parts[2])


def input_key(input_id: str) -> str:
    return f"{INPUTS}{input_id}"


def input_id_of_key(key: str) -> str | None:
    rest = key.removeprefix(INPUTS) if key.startswith(INPUTS) else ""
    return rest if rest and "/" not in rest else None
