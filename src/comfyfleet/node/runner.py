"""Running one claimed job on this node's ComfyUI, from submit to a stored outcome."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid

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
)
from comfyfleet.errors import ComfyfleetError, InvalidTransition, NotOwner
from comfyfleet.models.job import Job, JobError
from comfyfleet.models.retry import Backoff
from comfyfleet.node.failures import execution_error, node_fault, rejected_error
from comfyfleet.node.outputs import collect_outputs
from comfyfleet.node.progress import ProgressForwarder
from comfyfleet.node.worker import JobControl
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.results import RedisResultStore

log = structlog.get_logger(__name__)

# prompt ids are derived from (job, attempt): a re-submit after a node restart finds the
# same prompt in ComfyUI's queue or history instead of running it twice.
PROMPT_NAMESPACE = uuid.UUID("5b0c3f0e-8f4e-4d8e-9a57-0c6f1e0f7a11")


def prompt_id_for(job: Job) -> str:
    return str(uuid.uuid5(PROMPT_NAMESPACE, f"{job.id}:{job.attempts}"))


class ComfyRunner:
    """Runs jobs on one ComfyUI. One instance per node, called once per claimed job."""

    def __init__(
        self,
        *,
        node_id: str,
        store: JobStore,
        results: RedisResultStore,
        comfy: ComfyClient,
        backoff: Backoff | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.results = results
        self.comfy = comfy
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.rng = random.Random()

    async def __call__(self, job: Job, control: JobControl) -> None:
        prompt_id = prompt_id_for(job)
        try:
            await self.comfy.submit(
                job.graph, prompt_id=prompt_id, extra_data={"comfyfleet_job_id": job.id}
            )
        except PromptRejected as exc:
            rejected = Rejected(
                prompt_id=prompt_id, error_type=exc.error_type, message=exc.message,
                details=exc.details, node_errors=exc.node_errors,
            )  # fmt: skip
            await self._fail(job, rejected_error(self.node_id, rejected))
            return
        except ComfyRefused as exc:
            await self._fail(job, JobError(code="comfy_refused", message=str(exc)))
            return
        except ComfyfleetError as exc:
            await self._fail(job, node_fault(self.node_id, "comfy_unavailable", str(exc)))
            return
        await self.store.append_event(job.id, "submitted", {"prompt_id": prompt_id})
        outcome = await self._follow(job, prompt_id, control)
        await self._settle(job, outcome, control)

    async def _follow(self, job: Job, prompt_id: str, control: JobControl) -> PromptOutcome | None:
        """Forward progress until the outcome is known; stop ComfyUI if told to.

        Returns None when the job's own time limit ran out (it was interrupted)."""
        forwarder = ProgressForwarder(self.store, job.id, self.comfy, prompt_id, self.clock)
        forward = asyncio.create_task(forwarder.run())
        stopper = asyncio.create_task(self._stop_when_told(prompt_id, control))
        timeout_s = job.timeout_ms / 1000 if job.timeout_ms else None
        try:
            async with asyncio.timeout(timeout_s):
                return await self.comfy.wait(prompt_id)
        except TimeoutError:
            await self._stop_prompt(prompt_id)
            return None
        finally:
            stopper.cancel()
            forward.cancel()
            for task in (stopper, forward):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _stop_when_told(self, prompt_id: str, control: JobControl) -> None:
        waits = [
            asyncio.create_task(e.wait())
            for e in (control.cancelled, control.lease_lost, control.handback)
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        await self._stop_prompt(prompt_id)

    async def _stop_prompt(self, prompt_id: str) -> None:
        """Take the prompt out of ComfyUI: delete it if still pending, else interrupt it.
        Delete first, so a prompt that starts in between is still caught by the interrupt."""
        try:
            await self.comfy.delete_from_queue([prompt_id])
            await self.comfy.interrupt(prompt_id)
        except ComfyfleetError as exc:
            log.warning("stop_prompt_failed", prompt_id=prompt_id, error=str(exc))

    async def _settle(self, job: Job, outcome: PromptOutcome | None, control: JobControl) -> None:
        if control.lease_lost.is_set():
            log.warning("job_abandoned_lease_lost", job_id=job.id)
            return
        if outcome is None:
            limit = job.timeout_ms or 0
            error = node_fault(self.node_id, "timeout", f"job ran past its {limit} ms limit")
            await self._fail(job, error)
        elif isinstance(outcome, Success) and not control.cancelled.is_set():
            await self._complete(job, outcome)
        elif control.cancelled.is_set():
            await self._write(self.store.finish_cancelled(job.id, self.node_id))
        elif control.handback.is_set():
            await self._write(self.store.release(job.id, self.node_id))
        elif isinstance(outcome, ExecutionFailed):
            await self._fail(job, execution_error(self.node_id, outcome))
        elif isinstance(outcome, Rejected):
            await self._fail(job, rejected_error(self.node_id, outcome))
        elif isinstance(outcome, Interrupted | Deleted):
            message = f"ComfyUI {outcome.kind} the prompt outside comfyfleet"
            await self._fail(job, node_fault(self.node_id, f"comfy_{outcome.kind}", message))
        elif isinstance(outcome, Lost):
            message = f"ComfyUI lost the prompt (restarted?): {outcome.reason}"
            await self._fail(job, node_fault(self.node_id, "comfy_lost", message))

    async def _complete(self, job: Job, outcome: Success) -> None:
        try:
            refs = await collect_outputs(
                self.comfy, self.results, job.id, outcome.outputs, max_bytes=self.results.max_bytes
            )
        except ComfyfleetError as exc:
            error = JobError(
                code=exc.code, message=exc.detail, retryable=exc.retryable, node_id=self.node_id
            )
            await self._fail(job, error)
            return
        await self._write(self.store.complete(job.id, self.node_id, refs))
        log.info("job_succeeded", job_id=job.id, outputs=len(refs), cached=outcome.cached)

    async def _fail(self, job: Job, error: JobError) -> None:
        backoff = self.backoff.delay_ms(job.attempts, self.rng) if error.retryable else 0
        log.warning("job_attempt_failed", job_id=job.id, code=error.code, detail=error.message)
        await self._write(self.store.fail(job.id, self.node_id, error, backoff_ms=backoff))

    async def _write(self, write: object) -> None:
        """The final write of an attempt: shielded from cancellation (a drain deadline must
        not cut it in half), and a refusal means someone else owns the job now."""
        assert asyncio.iscoroutine(write)
        try:
            await asyncio.shield(write)
        except (NotOwner, InvalidTransition) as exc:
            log.warning("outcome_refused", detail=exc.detail)
