"""The hang watchdog: notices a ComfyUI that still answers HTTP but no longer executes.

ComfyUI can hang with its HTTP server alive (a wedged CUDA call, a deadlocked custom node):
/system_stats answers, the socket stays open, and the prompt it runs never ends. The
client's own watchdog cannot tell that from a long node, since /queue says "running".
This one can, within `hang_s`: ComfyUI is hung when, while this node holds jobs, the socket
sends no event at all and /queue shows the *same* prompt running at two looks at least
`hang_s / 2` apart, after `hang_s / 2` of silence. Then:

- the node marks itself unhealthy (claims nothing, heartbeat says `unhealthy`);
- the job whose prompt hangs is stopped and its attempt fails as `comfy_hung` (retryable,
  and it avoids this node); the node's other jobs, queued behind it inside ComfyUI, are
  handed back (deleted from ComfyUI's queue; not counted as attempts);
- the node is healthy again once ComfyUI moves: the hung prompt left the running slot;
  a ComfyUI the node runs itself (`--comfy-cmd`) is restarted to get there.

A real long node that sends nothing for longer than `hang_s` looks the same, so `hang_s`
must exceed the longest silent node of the workflows served (default 120 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.comfy import ComfyClient, Event
from comfyfleet.errors import ComfyfleetError
from comfyfleet.node.state import NodeStatus
from comfyfleet.node.worker import Worker

log = structlog.get_logger(__name__)

DEFAULT_HANG_S = 120.0
# Longest pause between two looks (s); the watchdog looks every hang_s / 8 up to this.
MAX_TICK_S = 1.0


class HangWatch:
    """Watches one ComfyUI for a hang while the node holds jobs. `hang_s` in seconds."""

    def __init__(
        self,
        comfy: ComfyClient,
        status: NodeStatus,
        worker: Worker,
        *,
        hang_s: float = DEFAULT_HANG_S,
        clock: Clock = SYSTEM_CLOCK,
        on_hang: Callable[[str], None] | None = None,
    ) -> None:
        self.comfy = comfy
        self.status = status
        self.worker = worker
        self.hang_s = hang_s
        self.clock = clock
        # Called with the hung prompt's id: a ComfyUI the node runs itself is restarted.
        self.on_hang = on_hang
        self.last_event = clock.monotonic()
        # (prompt id, when first seen running in a silence), the first of the two looks.
        self._suspect: tuple[str, float] | None = None
        comfy.add_listener(self._on_event)

    @property
    def tick_s(self) -> float:
        return min(self.hang_s / 8, MAX_TICK_S)

    def _on_event(self, event: Event) -> None:
        self.last_event = self.clock.monotonic()

    async def check_once(self) -> None:
        """One look: declare a hang, or clear one. For tests, one step."""
        try:
            if self.status.comfy_hung is not None:
                await self._check_cleared()
            else:
                await self._check_hung()
        except ComfyfleetError as exc:  # ComfyUI down: the health loop reports that
            log.debug("hang_check_failed", error=str(exc))

    async def _check_hung(self) -> None:
        now = self.clock.monotonic()
        if not self.worker.controls or now - self.last_event < self.hang_s / 2:
            self._suspect = None
            return
        queue = await self.comfy.queue()
        running = queue.running[0].prompt_id if queue.running else None
        suspect, self._suspect = self._suspect, None
        if running is None:
            return
        if (
            suspect is not None
            and suspect[0] == running
            and now - suspect[1] >= self.hang_s / 2
            and self.last_event < suspect[1]
        ):
            self._declare(running, silent_s=now - self.last_event)
        elif suspect is not None and suspect[0] == running and self.last_event < suspect[1]:
            self._suspect = suspect  # same prompt, still silent: keep the first look
        else:
            self._suspect = (running, now)

    def _declare(self, prompt_id: str, *, silent_s: float) -> None:
        self.status.comfy_hung = prompt_id
        log.warning("comfy_hung", prompt_id=prompt_id, silent_s=round(silent_s, 1))
        for control in self.worker.controls.values():
            if control.prompt_id == prompt_id:
                control.hung.set()
            else:
                control.handback.set()
        self.worker.poke()
        if self.on_hang is not None:
            self.on_hang(prompt_id)

    async def _check_cleared(self) -> None:
        queue = await self.comfy.queue()
        hung = self.status.comfy_hung
        if hung is not None and not queue.is_running(hung):
            self.status.comfy_hung = None
            self.last_event = self.clock.monotonic()
            log.info("comfy_recovered", prompt_id=hung)
            self.worker.poke()

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self.tick_s)
