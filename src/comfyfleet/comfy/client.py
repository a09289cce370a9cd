"""`ComfyClient`: ComfyUI's HTTP API plus one shared WebSocket that follows prompts.

    async with ComfyClient("http://127.0.0.1:8188") as comfy:
        outcome = await comfy.run(graph, timeout=600)        # submit + wait
        if isinstance(outcome, Success):
            for ref in outcome.images():
                await comfy.download(ref, out_dir / ref.filename)

It never waits forever on the socket alone. A tracked prompt that hears nothing for
`silence_s` is cross-checked with GET /queue and GET /history/{id}: an outcome in history
resolves it, a prompt still queued or running keeps waiting (a long node sends nothing for
seconds), and a prompt that is in neither is `deleted` (never seen running, socket never
dropped) or `lost` (ComfyUI restarted: history lives in memory only). After a reconnect
every tracked prompt is cross-checked at once, and a prompt whose events may have gaps is
read from /history when it finishes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
import structlog

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.comfy import events as ev
from comfyfleet.comfy.api import ComfyAPI
from comfyfleet.comfy.errors import ComfyUnavailable, PromptRejected, WaitTimeout
from comfyfleet.comfy.models import Features, PromptAccepted
from comfyfleet.comfy.options import ComfyOptions
from comfyfleet.comfy.outcome import (
    Deleted,
    Lost,
    PromptOutcome,
    Rejected,
    Source,
    outcome_from_history,
)
from comfyfleet.comfy.socket import ComfySocket
from comfyfleet.comfy.tracker import PromptTracker, Router
from comfyfleet.errors import ComfyError

log = structlog.get_logger(__name__)


class ComfyClient(ComfyAPI):
    """One ComfyUI server: HTTP calls, and prompts followed over one shared socket.

    `client_id` (default: a fresh uuid4 hex) names this client's socket; ComfyUI sends a
    prompt's events only to the client_id that queued it. The socket opens on `connect()`
    or on the first `submit()`/`run()`/`wait()`/`follow()`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        client_id: str | None = None,
        options: ComfyOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(
            base_url, session=session, client_id=client_id or uuid.uuid4().hex, options=options
        )
        self.server_features: Features | None = None  # what the socket's server announced
        self._clock = clock
        self._router = Router(clock=clock.monotonic, on_finished=self._on_finished)
        self._router.listeners.append(self._note_features)
        ws_base = self.url("/ws").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self._socket = ComfySocket(
            session=lambda: self.session,
            url=f"{ws_base}?clientId={self.client_id}",
            options=self.options,
            clock=clock.monotonic,
            on_event=self._router.route,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
        )
        self._finished: OrderedDict[str, PromptOutcome] = OrderedDict()
        self._finished_events: OrderedDict[str, tuple[ev.Event, ...]] = OrderedDict()
        self._connect_listeners: list[Callable[[bool], None]] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def socket(self) -> ComfySocket:
        return self._socket

    # `timeout` parameters (ASYNC109): the deadline is part of this API, and raising the
    # typed, retryable WaitTimeout/ComfyUnavailable is the point of taking it here.
    async def connect(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Open the socket (if not yet) and wait until it is connected.

        `timeout` in seconds, default `connect_timeout_s`; ComfyUnavailable when it passes
        (the socket keeps trying in the background)."""
        self._start()
        try:
            async with asyncio.timeout(timeout or self.options.connect_timeout_s):
                await self._socket.connected.wait()
        except TimeoutError as exc:
            raise ComfyUnavailable(f"no WebSocket to {self._socket.url}") from exc

    async def close(self) -> None:
        """Stop the socket and watchdog, close the session if owned. Waiters get
        ComfyUnavailable; the prompts themselves keep running on ComfyUI."""
        tasks = [t for t in (self._watchdog, *self._tasks) if t is not None]
        self._watchdog = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._socket.close()
        for tracker in list(self._router.trackers.values()):
            tracker.fail(ComfyUnavailable("client closed"))
        self._router.trackers.clear()
        await super().close()

    def add_listener(self, listener: Callable[[ev.Event], None]) -> Callable[[], None]:
        """Call `listener` with every socket event (status, logs, previews of any prompt...).
        Returns a function that removes it. Listeners run on the loop: keep them quick."""
        self._router.listeners.append(listener)
        return lambda: self._router.listeners.remove(listener)

    def add_connect_listener(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call `listener(reconnected)` each time the socket (re)connects, before any frame
        of that connection is routed (e.g. to subscribe to ComfyUI's log stream again)."""
        self._connect_listeners.append(listener)
        return lambda: self._connect_listeners.remove(listener)

    # -- following prompts --------------------------------------------------------------

    async def submit(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str | None = None,
        front: bool = False,
        number: float | None = None,
        extra_data: dict[str, Any] | None = None,
        partial_execution_targets: Sequence[str] | None = None,
    ) -> PromptAccepted:
        """Queue `graph` and track it (see ComfyAPI.submit for the arguments).

        The socket is connected and the prompt tracked *before* the POST (with a
        client-chosen prompt_id), so no event of it is missed. If this raises a retryable
        error the prompt may or may not be queued: look it up (history/queue) before
        submitting it again, as ComfyUI runs duplicate ids twice.
        """
        await self.connect()
        pid = prompt_id or str(uuid.uuid4())
        created = pid not in self._router.trackers
        tracker = self.track(pid, graph)
        tracker.posting = True
        try:
            accepted = await super().submit(
                graph,
                prompt_id=pid,
                front=front,
                number=number,
                extra_data=extra_data,
                partial_execution_targets=partial_execution_targets,
            )
        except BaseException:
            if created:
                self._router.trackers.pop(pid, None)
            raise
        finally:
            tracker.posting = False
        now = self._clock.monotonic()
        tracker.accepted_at = now
        tracker.touch(now)  # silence counts from when ComfyUI took it, not from the POST
        tracker.node_errors = accepted.node_errors
        if accepted.prompt_id != pid:  # a server that ignores client-chosen ids
            self._router.trackers.pop(pid, None)
            tracker.prompt_id = accepted.prompt_id
            self._router.trackers.setdefault(accepted.prompt_id, tracker)
        return accepted

    async def run(
        self,
        graph: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        **submit_args: Any,
    ) -> PromptOutcome:
        """Submit and wait for the outcome; a validation failure is a `Rejected` outcome.

        `timeout` in seconds (None: no limit) raises WaitTimeout; the prompt keeps running.
        """
        pid = submit_args.pop("prompt_id", None) or str(uuid.uuid4())
        try:
            accepted = await self.submit(graph, prompt_id=pid, **submit_args)
        except PromptRejected as exc:
            return Rejected(
                prompt_id=pid,
                source="history",
                error_type=exc.error_type,
                message=exc.message,
                details=exc.details,
                node_errors=exc.node_errors,
            )
        return await self.wait(accepted.prompt_id, timeout)

    def track(self, prompt_id: str, graph: dict[str, Any] | None = None) -> PromptTracker:
        """Follow a prompt queued elsewhere; call before it is queued to miss no event."""
        self._start()
        tracker = self._router.trackers.get(prompt_id)
        if tracker is None:
            tracker = PromptTracker(
                prompt_id, graph=graph, now=self._clock.monotonic(), on_resolved=self._settle
            )
            self._router.trackers[prompt_id] = tracker
        return tracker

    async def wait(
        self,
        prompt_id: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> PromptOutcome:
        """The prompt's outcome. `timeout` in seconds (None: no limit) -> WaitTimeout."""
        if (done := self._finished.get(prompt_id)) is not None:
            return done
        tracker = self._tracker_for(prompt_id)
        try:
            async with asyncio.timeout(timeout):
                return await tracker.wait()
        except TimeoutError as exc:
            raise WaitTimeout(f"prompt {prompt_id} not finished after {timeout} s") from exc

    async def follow(self, prompt_id: str) -> AsyncIterator[ev.Event]:
        """The prompt's events as they arrive (the recent ones first), ending when its
        outcome is known (then `wait()` returns at once). A prompt that already finished
        replays the events kept of it (none when it ended long ago, no previews)."""
        if prompt_id in self._finished:
            for kept in self._finished_events.get(prompt_id, ()):
                yield kept
            return
        queue = self._tracker_for(prompt_id).subscribe()
        tracker = self._router.trackers.get(prompt_id)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            if tracker is not None:
                tracker.unsubscribe(queue)

    def outcome(self, prompt_id: str) -> PromptOutcome | None:
        """The outcome if already known, without waiting."""
        return self._finished.get(prompt_id)

    def _tracker_for(self, prompt_id: str) -> PromptTracker:
        tracker = self._router.trackers.get(prompt_id)
        if tracker is None:
            # Someone else queued it, possibly long ago: look it up now, not after silence.
            tracker = self.track(prompt_id)
            self._spawn(self._cross_check([tracker], "lookup"))
        return tracker

    # -- socket callbacks -------------------------------------------------------------

    def _note_features(self, event: ev.Event) -> None:
        if isinstance(event, ev.FeatureFlags):
            self.server_features = Features.model_validate(event.flags)

    def _on_finished(self, tracker: PromptTracker) -> None:
        outcome = tracker.outcome_from_events()
        if outcome is not None and not tracker.gap:
            tracker.resolve(outcome)
            return
        # Events were missed (socket dropped) or the terminal event never came: the
        # history entry is complete, the socket's view may not be.
        self._spawn(self._finish_from_history(tracker))

    def _on_connect(self, reconnected: bool) -> None:
        for listener in list(self._connect_listeners):
            listener(reconnected)
        if reconnected and self._router.trackers:
            self._spawn(self._cross_check(list(self._router.trackers.values()), "reconnect"))

    def _on_disconnect(self) -> None:
        for tracker in self._router.trackers.values():
            tracker.gap = True

    def _settle(self, tracker: PromptTracker, outcome: PromptOutcome) -> None:
        if self._router.trackers.get(tracker.prompt_id) is tracker:
            del self._router.trackers[tracker.prompt_id]
        self._finished[tracker.prompt_id] = outcome
        while len(self._finished) > self.options.keep_finished:
            self._finished.popitem(last=False)
        self._finished_events[tracker.prompt_id] = tracker.kept_events()
        while len(self._finished_events) > self.options.replay_finished:
            self._finished_events.popitem(last=False)

    # -- recovery -----------------------------------------------------------------------

    def _start(self) -> None:
        self._socket.start()
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="comfy-watchdog")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        """Cross-check every tracked prompt that has been quiet for `silence_s`."""
        silence = self.options.silence_s
        tick = min(max(silence / 4, 0.005), 1.0)
        while True:
            await asyncio.sleep(tick)
            now = self._clock.monotonic()
            quiet = [
                t
                for t in self._router.trackers.values()
                if not (t.done or t.checking or t.posting) and now - t.last_activity >= silence
            ]
            if quiet:
                await self._cross_check(quiet, "silence")

    async def _finish_from_history(self, tracker: PromptTracker) -> None:
        try:
            entry = await self.history(tracker.prompt_id)
        except ComfyError as exc:
            log.warning("comfy.history_failed", prompt_id=tracker.prompt_id, error=str(exc))
            entry = None
        if entry is not None:
            tracker.resolve(outcome_from_history(entry))
        elif (outcome := tracker.outcome_from_events()) is not None:
            tracker.resolve(outcome)
        else:
            await self._cross_check([tracker], "finished-without-outcome")

    async def _cross_check(self, trackers: list[PromptTracker], reason: str) -> None:
        """Resolve from /history what finished; keep waiting for what is queued or running;
        call the rest `deleted` or `lost`. /queue is read first: a prompt absent from it
        and then absent from history cannot have finished in between."""
        for tracker in trackers:
            tracker.checking = True
        try:
            asked = self._clock.monotonic()
            queue = await self.queue()
            for tracker in trackers:
                if tracker.done:
                    continue
                if tracker.posting or (
                    tracker.accepted_at is not None and tracker.accepted_at >= asked
                ):
                    # Queued after /queue was read (or not yet): its absence there says
                    # nothing. Look again after another silence.
                    tracker.touch(self._clock.monotonic())
                    continue
                entry = await self.history(tracker.prompt_id)
                source: Source = "history" if reason != "silence" else "watchdog"
                if entry is not None:
                    tracker.resolve(outcome_from_history(entry, source=source))
                elif queue.contains(tracker.prompt_id):
                    tracker.started |= queue.is_running(tracker.prompt_id)
                    tracker.touch(self._clock.monotonic())
                elif tracker.started or tracker.gap:
                    tracker.resolve(
                        Lost(
                            prompt_id=tracker.prompt_id,
                            source=source,
                            reason="in neither queue nor history",
                        )
                    )
                else:
                    tracker.resolve(Deleted(prompt_id=tracker.prompt_id, source=source))
        except ComfyError as exc:
            self._unreachable(trackers, reason, exc)
        finally:
            for tracker in trackers:
                tracker.checking = False

    def _unreachable(self, trackers: list[PromptTracker], reason: str, exc: ComfyError) -> None:
        now = self._clock.monotonic()
        down = self._socket.down_since
        log.warning("comfy.cross_check_failed", reason=reason, error=str(exc))
        for tracker in trackers:
            tracker.touch(now)  # try again after another silence, not in a tight loop
            if down is not None and now - down >= self.options.unreachable_s:
                tracker.resolve(
                    Lost(
                        prompt_id=tracker.prompt_id,
                        source="watchdog",
                        reason=f"ComfyUI unreachable for {now - down:.0f} s",
                    )
                )
