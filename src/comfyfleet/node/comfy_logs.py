"""ComfyUI's own log lines as the node's log events, and kept per job attempt.

Wherever the lines come from (the child's stdout/stderr when the node runs ComfyUI, see
`node/supervisor.py`; ComfyUI's log stream when it runs elsewhere, see
`node/comfy_stream.py`), each event (`node/comfy_lines.py`) goes through `ComfyLogs.emit`:

- it is redacted (`logs/redact.py`) and logged like every other line of the node, so it
  reaches stdout and Logdy: `event` is ComfyUI's text, `source: comfyui`, `stream`, `level`
  as parsed, and `prompt_id`/`job_id`/`attempt` when it was written while one of this
  node's prompts ran on that ComfyUI;
- such a line is also appended to the attempt's list in Redis (`store/joblogs.py`), which
  `GET /api/v1/jobs/{id}/logs` answers.

Which prompt runs is read from the socket's events (`execution_start` to its end). A line
arriving up to `GRACE_S` after its prompt ended still belongs to it (ComfyUI writes
"Prompt executed in ..." after the end, and a pipe and a socket do not keep each other's
order), unless another prompt started since.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.comfy import Event
from comfyfleet.comfy import events as ev
from comfyfleet.errors import StoreError
from comfyfleet.logs.redact import redact
from comfyfleet.models.retry import Backoff
from comfyfleet.node.comfy_lines import ComfyLine, exception_line
from comfyfleet.store.joblogs import JobLogStore
from comfyfleet.tasks import Pacer

log = structlog.get_logger("comfyui")

GRACE_S = 1.0
# Lines ComfyUI writes for the *next* prompt before it starts: never given to the last one.
NOT_TRAILING = ("got prompt",)
SPANS_KEPT = 32
JOBS_KEPT = 256
# Lines waiting for Redis at most; beyond, the oldest go (counted).
MAX_PENDING = 5_000
WRITE_BACKOFF = Backoff(base_ms=500, cap_ms=10_000, jitter=False)
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
JobOf = Callable[[str], "tuple[str, int] | None"]


@dataclass
class _Span:
    prompt_id: str
    start: float  # monotonic s
    end: float | None = None


class PromptSpans:
    """When each of this node's prompts ran on ComfyUI, from the socket's events."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.spans: deque[_Span] = deque(maxlen=SPANS_KEPT)

    def on_event(self, event: Event) -> None:
        now = self.clock.monotonic()
        if isinstance(event, ev.ExecutionStart) and event.prompt_id:
            self._end_open(now)
            self.spans.append(_Span(event.prompt_id, now))
        elif _is_end(event):
            for span in self.spans:
                if span.prompt_id == event.prompt_id and span.end is None:
                    span.end = now

    def _end_open(self, now: float) -> None:
        for span in self.spans:  # ComfyUI runs one prompt at a time
            if span.end is None:
                span.end = now

    def prompt_at(self, line: ComfyLine) -> str | None:
        """The prompt `line` was written for, or None."""
        if line.replayed:
            return None
        for span in reversed(self.spans):
            if span.start <= line.at and (span.end is None or line.at <= span.end):
                return span.prompt_id
        last = self.spans[-1] if self.spans else None
        if (
            last is not None
            and last.end is not None
            and last.end < line.at <= last.end + GRACE_S
            and not line.text.startswith(NOT_TRAILING)
        ):
            return last.prompt_id
        return None


def _is_end(event: Event) -> bool:
    ends = (ev.ExecutionSuccess, ev.ExecutionError, ev.ExecutionInterrupted)
    if isinstance(event, ends):
        return True
    return isinstance(event, ev.Executing) and event.node is None and event.prompt_id is not None


class JobLogWriter:
    """Appends lines to their attempt's list in Redis without ever making the caller wait:
    lines queue in memory (bounded, oldest dropped first and counted) and one task writes
    them in batches, backing off while Redis is down."""

    def __init__(self, store: JobLogStore, max_pending: int = MAX_PENDING) -> None:
        self.store = store
        self.pending: deque[tuple[str, int, dict[str, Any]]] = deque()
        self.max_pending = max_pending
        self.dropped = 0
        self._wake = asyncio.Event()

    def add(self, job_id: str, attempt: int, line: dict[str, Any]) -> None:
        if len(self.pending) >= self.max_pending:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append((job_id, attempt, line))
        self._wake.set()

    async def write_once(self) -> None:
        """Write everything queued now, one round trip per attempt. For tests, one step."""
        batch: OrderedDict[tuple[str, int], list[dict[str, Any]]] = OrderedDict()
        while self.pending:
            job_id, attempt, line = self.pending.popleft()
            batch.setdefault((job_id, attempt), []).append(line)
        for number, ((job_id, attempt), lines) in enumerate(batch.items()):
            try:
                await self.store.append(job_id, attempt, lines)
            except StoreError:
                rest = [(j, a, ln) for (j, a), lns in list(batch.items())[number:] for ln in lns]
                self.pending.extendleft(reversed(rest))  # in order, before what came since
                raise

    async def run(self) -> None:
        pacer = Pacer(WRITE_BACKOFF)
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.write_once()
                pacer.reset()
            except StoreError as exc:
                log.warning("comfy_log_write_failed", error=exc.detail, retry_in_s=pacer.delay_s)
                self._wake.set()
                await pacer.sleep()


class ComfyLogs:
    """Where every ComfyUI line of this node goes: the node's log, and its job's attempt."""

    def __init__(
        self, *, job_of: JobOf, writer: JobLogWriter | None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.spans = PromptSpans(clock)
        self.clock = clock
        self.writer = writer
        self._job_of = job_of
        # prompt id -> (job id, attempt), noted when the prompt starts: a line may come
        # after the runner has already let go of the job.
        self._jobs: OrderedDict[str, tuple[str, int]] = OrderedDict()
        # (job id, attempt) -> its latest exception line, for the job's error.
        self._exceptions: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._numbers: OrderedDict[tuple[str, int], int] = OrderedDict()

    def on_event(self, event: Event) -> None:
        """A ComfyClient listener: follow which prompt runs."""
        self.spans.on_event(event)
        if isinstance(event, ev.ExecutionStart) and event.prompt_id:
            self._job_for(event.prompt_id)

    def _job_for(self, prompt_id: str) -> tuple[str, int] | None:
        job = self._jobs.get(prompt_id) or self._job_of(prompt_id)
        if job is not None:
            _remember(self._jobs, prompt_id, job)
        return job

    def emit(self, line: ComfyLine) -> None:
        text = redact(line.text)
        prompt_id = self.spans.prompt_at(line)
        job = self._job_for(prompt_id) if prompt_id else None
        fields: dict[str, Any] = {"source": "comfyui", "stream": line.stream}
        if line.comfy_t:
            fields["comfy_t"] = line.comfy_t
        if prompt_id:
            fields["prompt_id"] = prompt_id
        if job is not None:
            fields["job_id"], fields["attempt"] = job
        log.log(LEVELS.get(line.level, logging.INFO), text, **fields)
        if job is not None:
            self._keep(job, text, line, prompt_id)

    def _keep(
        self, job: tuple[str, int], text: str, line: ComfyLine, prompt_id: str | None
    ) -> None:
        number = self._numbers.get(job, 0) + 1
        _remember(self._numbers, job, number)
        if (exc := exception_line(text)) is not None:
            _remember(self._exceptions, job, exc)
        if self.writer is not None:
            entry: dict[str, Any] = {
                "n": number, "t": self.clock.now_ms(), "level": line.level,
                "stream": line.stream, "text": text, "prompt_id": prompt_id,
            }  # fmt: skip
            if line.comfy_t:
                entry["comfy_t"] = line.comfy_t
            self.writer.add(job[0], job[1], entry)

    def exception_of(self, job_id: str, attempt: int) -> str | None:
        """The last exception line ComfyUI wrote during that attempt, if any."""
        return self._exceptions.get((job_id, attempt))


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > JOBS_KEPT:
        cache.popitem(last=False)
