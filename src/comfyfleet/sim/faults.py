"""Fault injection for tests of the parts that talk to ComfyUI. Not part of ComfyUI's API.

Set at startup from `SimConfig` (CLI `--fail-node-type`, `--stall-after-nodes`, ...), changed
at run time through `Faults` methods (in-process tests) or `POST /sim/faults` (a running sim):

    {"fail_node_types": ["KSampler"],    # execution_error at nodes of these classes ([] clears)
     "reject_prompts": 2,                # next N POST /prompt answer 500 (-1: all, 0: off)
     "stall": true, "stall_ms": 3000,    # stop executing and sending frames now (0/absent:
                                         #   until {"stall": false})
     "stall_after_nodes": 2,             # arm a one-shot stall after N more executed nodes
     "drop_ws": true,                    # close every websocket now
     "drop_ws_after_nodes": 1,           # arm a one-shot drop after N more executed nodes
     "die_after_nodes": 3,               # os._exit after N more executed nodes (kill tests)
     "pad_output_bytes": 209715200}      # SaveImage pads each PNG to this size (large-output
                                         #   tests; 0: off)

`GET /sim/faults` returns the current settings.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

DIE_EXIT_CODE = 137  # what a SIGKILLed process reports, so kill tests see the usual code


class InjectedFailure(Exception):
    """Raised at a node whose class type is set to fail."""


class Faults:
    """Mutable fault settings plus the gate that a stall closes."""

    def __init__(
        self,
        fail_node_types: tuple[str, ...] = (),
        reject_prompts: int = 0,
        stall_after_nodes: int | None = None,
        stall_ms: float = 0.0,
        drop_ws_after_nodes: int | None = None,
        die_after_nodes: int | None = None,
        pad_output_bytes: int = 0,
    ) -> None:
        self.fail_node_types = set(fail_node_types)
        self.reject_prompts = reject_prompts
        self.stall_after_nodes = stall_after_nodes
        self.stall_ms = stall_ms
        self.drop_ws_after_nodes = drop_ws_after_nodes
        self.die_after_nodes = die_after_nodes
        self.pad_output_bytes = pad_output_bytes
        # Replaced by tests that must not lose the test process; os._exit skips cleanup on
        # purpose, like a crash.
        self.die: Callable[[int], None] = os._exit
        self.drop_websockets: Callable[[], Awaitable[None]] | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def stalled(self) -> bool:
        return not self._open.is_set()

    async def gate(self) -> None:
        """Wait while stalled; returns at once otherwise."""
        await self._open.wait()

    def stall(self, ms: float = 0.0) -> None:
        """Stop executing and sending frames for `ms` milliseconds (0: until resume())."""
        self._open.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if ms > 0:
            self._timer = asyncio.get_running_loop().call_later(ms / 1000, self.resume)

    def resume(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._open.set()

    def take_prompt_rejection(self) -> bool:
        """True when this POST /prompt must fail with a 500 (consumes one rejection)."""
        if self.reject_prompts == 0:
            return False
        if self.reject_prompts > 0:
            self.reject_prompts -= 1
        return True

    async def node_executed(self) -> None:
        """Count one executed node against every armed one-shot fault."""
        self.die_after_nodes = _tick(self.die_after_nodes, lambda: self.die(DIE_EXIT_CODE))
        self.stall_after_nodes = _tick(self.stall_after_nodes, lambda: self.stall(self.stall_ms))
        fired: list[bool] = []
        self.drop_ws_after_nodes = _tick(self.drop_ws_after_nodes, lambda: fired.append(True))
        if fired and self.drop_websockets is not None:
            await self.drop_websockets()

    def settings(self) -> dict[str, Any]:
        return {
            "fail_node_types": sorted(self.fail_node_types),
            "reject_prompts": self.reject_prompts,
            "stalled": self.stalled,
            "stall_ms": self.stall_ms,
            "stall_after_nodes": self.stall_after_nodes,
            "drop_ws_after_nodes": self.drop_ws_after_nodes,
            "die_after_nodes": self.die_after_nodes,
            "pad_output_bytes": self.pad_output_bytes,
        }

    async def apply(self, body: dict[str, Any]) -> None:
        """Apply a `POST /sim/faults` body; raises ValueError/TypeError on bad fields."""
        if "fail_node_types" in body:
            types = body["fail_node_types"]
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise TypeError("fail_node_types must be a list of class names")
            self.fail_node_types = set(types)
        if "reject_prompts" in body:
            self.reject_prompts = int(body["reject_prompts"])
        if "pad_output_bytes" in body:
            self.pad_output_bytes = max(0, int(body["pad_output_bytes"]))
        if "stall_ms" in body:
            self.stall_ms = float(body["stall_ms"])
        for name in ("stall_after_nodes", "drop_ws_after_nodes", "die_after_nodes"):
            if name in body:
                value = body[name]
                setattr(self, name, None if value is None else int(value))
        if body.get("stall") is True:
            self.stall(self.stall_ms)
        elif body.get("stall") is False:
            self.resume()
        if body.get("drop_ws") and self.drop_websockets is not None:
            await self.drop_websockets()


def _tick(remaining: int | None, fire: Callable[[], object]) -> int | None:
    """Count down an armed one-shot; fire it and disarm at zero."""
    if remaining is None:
        return None
    remaining -= 1
    if remaining > 0:
        return remaining
    fire()
    return None
