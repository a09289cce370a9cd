"""Running one claimed job on this node's ComfyUI, from submit to a stored outcome.

Every claim has its own prompt id (see `prompt_id_for`), submitted at most once, so
each execution inside ComfyUI belongs to exactly one counted attempt. A prompt that must
stop (cancel, lost lease, hand-back, time limit, hang) is deleted if still pending, else
interrupted, and its end is confirmed from /queue + /history within `stop_confirm_s`: a
prompt that never started is handed back without spending an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.comfy import (
    ComfyClient,
    ComfyRefused,
    Deleted,
    ExecutionFailed,
    Interrupted,
    Lost,
    PromptOutcome,
    PromptRejected,
    Rejected,
    Success,
    outcome_from_history,
)
from comfyfleet.errors import ComfyfleetError, InvalidTransition, NotOwner, StoreError
from comfyfleet.models.job import Job, JobError, JobErrorCode, OutputRef
from comfyfleet.models.retry import Backoff
from comfyfleet.node.failures import execution_error, node_fault, rejected_error
from comfyfleet.node.inputs import input_error, stage_inputs
from comfyfleet.node.job_events import JobEventWriter
from comfyfleet.node.outputs import collect_outputs
from comfyfleet.node.progress import ProgressForwarder
from comfyfleet.node.worker import JobControl
from comfyfleet.store.inputs import InputStore
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.results import OutputTooLarge, ResultStore
from comfyfleet.tasks import Pacer, stop

log = structlog.get_logger(__name__)
T = TypeVar("T")

# prompt ids are derived from (job, attempt, claim time): after a node restart the same
# claim's prompt is found in ComfyUI's queue or history instead of being run twice, and a
# job handed back untried (same attempt number) gets a fresh id when claimed again.
PROMPT_NAMESPACE = uuid.UUID("5b0c3f0e-8f4e-4d8e-9a57-0c6f1e0f7a11")
# How long a stopped prompt may take to leave ComfyUI's queue before the attempt is given up
# on anyway (s), and how often /queue + /history are read meanwhile (s).
STOP_CONFIRM_S = 10.0
HUNG_CONFIRM_S = 1.0
# Longest wait (s) for the progress forwarder to take a finished prompt's last events, and
# then for the attempt's events to be written.
FORWARD_DRAIN_S = 2.0
STOP_POLL_S = 0.2
# How long the final write of an attempt is retried while Redis is unreachable (s): past two
# default leases the reaper has taken the job back and the write would be refused anyway.
WRITE_PATIENCE_S = 60.0
WRITE_BACKOFF = Backoff(base_ms=100, cap_ms=2_000, jitter=False)


def prompt_id_for(job: Job) -> str:
    return str(uuid.uuid5(PROMPT_NAMESPACE, f"{job.id}:{job.attempts}:{job.started_ms}"))


class ComfyRunner:
    """Runs jobs on one ComfyUI. One instance per node, called once per claimed job."""

    def __init__(
        self,
        *,
        node_id: str,
        store: JobStore,
        results: ResultStore,
        comfy: ComfyClient,
        backoff: Backoff | None = None,
        clock: Clock = SYSTEM_CLOCK,
        stop_confirm_s: float = STOP_CONFIRM_S,
        explain: Callable[[Job, JobError], JobError] | None = None,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.results = results
        self.comfy = comfy
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.stop_confirm_s = stop_confirm_s
        # Adds what else is known about a failed attempt (ComfyUI's exception line).
        self.explain = explain
        self.rng = random.Random()
        # Uploaded input images (store/inputs.py): metadata beside the jobs, bytes in the
        # same blob store as the outputs.
        self.inputs = InputStore(store.redis, store.keys, blobs=results.blobs)

    async def __call__(self, job: Job, control: JobControl) -> None:
        prompt_id = prompt_id_for(job)
        control.prompt_id = prompt_id
        control.attempt = job.attempts
        events = JobEventWriter(self.store, job.id)
        try:
            started = await (self._resume(job, prompt_id, events) if control.adopted else
                             self._submit(job, prompt_id, events))  # fmt: skip
            if started:
                outcome = await self._follow(job, prompt_id, control, events)
                # The attempt's events precede its end in the log.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FORWARD_DRAIN_S):
                        await events.flush()
                await self._settle(job, outcome, control)
        finally:
            await events.close()

    async def _submit(self, job: Job, prompt_id: str, events: JobEventWriter) -> bool:
        """Queue the attempt's prompt. False when that failed (the attempt is settled)."""
        try:
            graph = await stage_inputs(job.graph, self.inputs, self.comfy)
        except ComfyfleetError as exc:
            await self._fail(job, input_error(self.node_id, exc))
            return False
        try:
            # The client's own extra_data (a native prompt's extra_pnginfo) rides along.
            extra = {**(job.extra_data or {}), "comfyfleet_job_id": job.id}
            await self.comfy.submit(graph, prompt_id=prompt_id, extra_data=extra)
        except PromptRejected as exc:
            rejected = Rejected(
                prompt_id=prompt_id, error_type=exc.error_type, message=exc.message,
                details=exc.details, node_errors=exc.node_errors,
            )  # fmt: skip
            await self._fail(job, rejected_error(self.node_id, rejected))
            return False
        except ComfyRefused as exc:
            await self._fail(job, JobError(code=JobErrorCode.COMFY_REFUSED, message=str(exc)))
            return False
        except ComfyfleetError as exc:
            # The POST may have reached ComfyUI before the error: take the prompt out again
            # (best effort) so the attempt does not run behind the node's back.
            with contextlib.suppress(ComfyfleetError):
                await self.comfy.delete_from_queue([prompt_id])
            unavailable = node_fault(self.node_id, JobErrorCode.COMFY_UNAVAILABLE, str(exc))
            await self._fail(job, unavailable)
            return False
        events.add("submitted", {"prompt_id": prompt_id})
        return True

    async def _resume(self, job: Job, prompt_id: str, events: JobEventWriter) -> bool:
        """An adopted job: follow its prompt if ComfyUI still has it (queued, running or in
        history). If not, the attempt is over: it may have run on a ComfyUI that restarted
        since, so it is counted, and the job goes back to the queue."""
        try:
            queue = await self.comfy.queue()
            found = queue.contains(prompt_id) or await self.comfy.history(prompt_id) is not None
        except ComfyfleetError as exc:
            unavailable = node_fault(self.node_id, JobErrorCode.COMFY_UNAVAILABLE, str(exc))
            await self._fail(job, unavailable)
            return False
        if not found:
            message = "the node restarted and its ComfyUI no longer has the attempt's prompt"
            await self._fail(job, node_fault(self.node_id, JobErrorCode.NODE_RESTARTED, message))
            return False
        log.info("job_resumed", job_id=job.id, prompt_id=prompt_id)
        events.add("resumed", {"prompt_id": prompt_id})
        return True

    async def _follow(
        self, job: Job, prompt_id: str, control: JobControl, events: JobEventWriter
    ) -> PromptOutcome | None:
        """Forward progress until the outcome is known or the prompt had to be stopped.
        None: stopped, and ComfyUI did not confirm how it ended within `stop_confirm_s`."""
        forwarder = ProgressForwarder(events, self.comfy, prompt_id, self.clock)
        forward = asyncio.create_task(forwarder.run())
        waiter = asyncio.create_task(self.comfy.wait(prompt_id))
        stopper = asyncio.create_task(self._stop_when_told(job, prompt_id, control))
        try:
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                # The forwarder's events end with the outcome: let it take the last of
                # them (`executed`, ComfyUI's error), which __call__ flushes before the end.
                await asyncio.wait({forward}, timeout=FORWARD_DRAIN_S)
            for task in (waiter, stopper):
                if task.done() and not task.cancelled() and task.exception() is None:
                    return task.result()
            return None
        finally:
            # Not `suppress(CancelledError): await task`, which would also swallow a cancel
            # of this runner; the helpers' own errors were handled above or do not matter.
            await stop(waiter, stopper, forward, report=False)

    async def _stop_when_told(
        self, job: Job, prompt_id: str, control: JobControl
    ) -> PromptOutcome | None:
        """Wait for a reason to stop (or the job's time limit), stop the prompt, and return
        how it ended as ComfyUI confirms it."""
        timeout_s = job.timeout_ms / 1000 if job.timeout_ms else None
        waits = [asyncio.create_task(event.wait()) for event in control.stop_events()]
        try:
            done, _ = await asyncio.wait(
                waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in waits:
                task.cancel()
        if not done:
            control.timed_out.set()
        await self._stop_prompt(prompt_id)
        # A hung ComfyUI will not confirm anything soon: look once more, then give up (the
        # attempt is counted either way, so a late run of the prompt stays accounted for).
        hung = control.hung.is_set()
        return await self._confirm_stopped(prompt_id, HUNG_CONFIRM_S if hung else None)

    async def _stop_prompt(self, prompt_id: str) -> None:
        """Take the prompt out of ComfyUI: delete it if still pending, else interrupt it.
        Delete first, so a prompt that starts in between is still caught by the interrupt."""
        try:
            await self.comfy.delete_from_queue([prompt_id])
            await self.comfy.interrupt(prompt_id)
        except ComfyfleetError as exc:
            log.warning("stop_prompt_failed", prompt_id=prompt_id, error=str(exc))

    async def _confirm_stopped(
        self, prompt_id: str, within_s: float | None = None
    ) -> PromptOutcome | None:
        """Poll /queue then /history: an entry in history is how it ended; absent from both
        means it was deleted before it started. None after `within_s` s (default
        `stop_confirm_s`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.stop_confirm_s if within_s is None else within_s)
        while True:
            try:
                queue = await self.comfy.queue()
                entry = await self.comfy.history(prompt_id)
            except ComfyfleetError as exc:
                log.warning("stop_confirm_failed", prompt_id=prompt_id, error=str(exc))
            else:
                if entry is not None:
                    return outcome_from_history(entry)
                if not queue.contains(prompt_id):
                    return Deleted(prompt_id=prompt_id, source="history")
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(STOP_POLL_S)

    async def _settle(self, job: Job, outcome: PromptOutcome | None, control: JobControl) -> None:
        """Write the attempt's end. Success wins over every stop reason but a cancel."""
        if control.lease_lost.is_set():
            log.warning("job_abandoned_lease_lost", job_id=job.id)
        elif isinstance(outcome, Success) and not control.cancelled.is_set():
            await self._complete(job, outcome)
        elif control.cancelled.is_set():
            await self._write(
                lambda: self.store.finish_cancelled(job.id, self.node_id, attempt=job.attempts)
            )
        elif control.handback.is_set() and isinstance(outcome, Deleted):
            # Never started inside ComfyUI: hand it back without spending an attempt.
            await self._write(
                lambda: self.store.release(job.id, self.node_id, attempt=job.attempts)
            )
        else:
            await self._fail(job, self._error_of(job, outcome, control))

    def _error_of(self, job: Job, outcome: PromptOutcome | None, control: JobControl) -> JobError:
        fault, code = node_fault, JobErrorCode
        if control.handback.is_set():
            return fault(self.node_id, code.HANDED_BACK, "stopped while running: node draining")
        if control.fenced.is_set():
            message = "Redis did not confirm the lease for half of it: the prompt was stopped"
            return fault(self.node_id, code.FENCED, message)
        if control.timed_out.is_set():
            return fault(self.node_id, code.TIMEOUT, f"job ran past its {job.timeout_ms} ms limit")
        if control.hung.is_set():
            return fault(self.node_id, code.COMFY_HUNG, "ComfyUI stopped executing the prompt")
        if isinstance(outcome, ExecutionFailed):
            return execution_error(self.node_id, outcome)
        if isinstance(outcome, Rejected):
            return rejected_error(self.node_id, outcome)
        if isinstance(outcome, Interrupted | Deleted):
            message = f"ComfyUI {outcome.kind} the prompt outside comfyfleet"
            return fault(self.node_id, code(f"comfy_{outcome.kind}"), message)
        if isinstance(outcome, Lost):
            message = f"ComfyUI lost the prompt (restarted?): {outcome.reason}"
            return fault(self.node_id, code.COMFY_LOST, message)
        return fault(self.node_id, code.COMFY_UNAVAILABLE, "the prompt's outcome is unknown")

    async def _complete(self, job: Job, outcome: Success) -> None:
        async def collect() -> list[OutputRef]:
            return await collect_outputs(self.comfy, self.results, job, outcome.outputs)

        try:
            # Redis or the object store unreachable while storing the images: store them
            # again once it is back rather than spend an attempt (ComfyUI still has the files).
            refs = await _patiently(collect)
        except ComfyfleetError as exc:
            too_large = isinstance(exc, OutputTooLarge)
            code = JobErrorCode.OUTPUT_TOO_LARGE if too_large else JobErrorCode.OUTPUT_UNAVAILABLE
            error = JobError(
                code=code, message=exc.detail, retryable=exc.retryable, node_id=self.node_id
            )
            await self._fail(job, error)
            return
        await self._write(
            lambda: self.store.complete(job.id, self.node_id, refs, attempt=job.attempts)
        )
        log.info("job_succeeded", job_id=job.id, outputs=len(refs), cached=outcome.cached)

    async def _fail(self, job: Job, error: JobError) -> None:
        if self.explain is not None:
            error = self.explain(job, error)
        backoff = self.backoff.delay_ms(job.attempts, self.rng) if error.retryable else 0
        log.warning("job_attempt_failed", job_id=job.id, code=error.code, detail=error.message)
        await self._write(
            lambda: self.store.fail(
                job.id, self.node_id, error, backoff_ms=backoff, attempt=job.attempts
            )
        )

    async def _write(self, write: Callable[[], Awaitable[Job]]) -> None:
        """The final write of an attempt: shielded from cancellation (a drain deadline must
        not cut it in half), retried while Redis is unreachable (the lease keeper keeps the
        lease meanwhile), and a refusal means someone else owns the job now."""

        async def shielded() -> Job:
            return await asyncio.shield(write())

        try:
            await _patiently(shielded)
        except (NotOwner, InvalidTransition) as exc:
            log.warning("outcome_refused", detail=exc.detail)
        except StoreError as exc:
            log.error("outcome_write_gave_up", error=exc.detail)


async def _patiently(step: Callable[[], Awaitable[T]]) -> T:
    """Run `step`, again with backoff after each StoreError (Redis unreachable), for up to
    WRITE_PATIENCE_S s; then the last StoreError is raised."""
    pacer = Pacer(WRITE_BACKOFF)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WRITE_PATIENCE_S
    while True:
        try:
            return await step()
        except StoreError as exc:
            if loop.time() >= deadline:
                raise
            log.warning("store_write_retry", error=exc.detail, retry_in_s=pacer.delay_s)
            await pacer.sleep()
