"""Run one queued job the way ComfyUI's PromptExecutor does, message for message.

Per node: `progress_state` (running), `executing`, optional `progress`/previews, `executed`
for nodes with UI output, `progress_state` (finished). Job messages go to the submitting
client only; `progress_state`, `progress`, previews and text frames go to everyone when the
job has no client_id. The interrupt flag is checked before each node and at each sampler
step, never in the middle of a node.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from comfyfleet.sim.catalogue import Catalogue
from comfyfleet.sim.faults import Faults, InjectedFailure
from comfyfleet.sim.files import Storage, file_digest
from comfyfleet.sim.graph import ExecutionList, cache_keys, is_link
from comfyfleet.sim.hub import Hub
from comfyfleet.sim.ops import OPS, custom_node
from comfyfleet.sim.queue import Job

SIM_TRACEBACK = ['  File "comfyfleet/sim/executor.py", in execute_node\n']


class Interrupted(Exception):
    """ComfyUI's InterruptProcessingException."""


@dataclass
class CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None = None


@dataclass
class Outcome:
    success: bool
    messages: list[list[Any]]
    outputs: dict[str, Any]
    meta: dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Executor:
    """Caches and flags that outlive one job (ComfyUI keeps them in its PromptExecutor)."""

    hub: Hub
    storage: Storage
    faults: Faults
    node_ms: float
    step_ms: float
    cache: dict[str, CacheEntry] = field(default_factory=dict)
    interrupted: bool = False
    client_id: str | None = None
    last_node_id: str | None = None

    def reset(self) -> None:
        """Forget every cached output (POST /free with free_memory)."""
        self.cache.clear()

    async def run(self, job: Job, catalogue: Catalogue) -> Outcome:
        self.interrupted = False  # an interrupt while idle is lost, like ComfyUI's reset
        self.client_id = job.client_id
        run = _JobRun(self, job, catalogue)
        try:
            return await run.execute()
        finally:
            self.last_node_id = None


class _JobRun:
    def __init__(self, executor: Executor, job: Job, catalogue: Catalogue) -> None:
        self.ex = executor
        self.job = job
        self.catalogue = catalogue
        self.prompt = job.prompt
        self.client = job.client_id
        self.messages: list[list[Any]] = []
        self.progress: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        self.keys: dict[str, str] = {}
        self.current_inputs: dict[str, list[Any]] = {}

    def add_message(self, event: str, data: dict[str, Any], broadcast: bool = False) -> None:
        data = {**data, "timestamp": now_ms()}
        self.messages.append([event, data])
        if self.client is not None or broadcast:
            self.ex.hub.send(event, data, self.client)

    def is_changed(self, node_id: str) -> Any:
        node = self.catalogue.classes[self.prompt[node_id]["class_type"]]
        if node.is_changed == "always":
            return time.time()
        if node.is_changed == "input_file":
            return file_digest(
                self.ex.storage.annotated_path(str(self.prompt[node_id]["inputs"].get("image")))
            )
        return None

    def is_output(self, node_id: str) -> bool:
        return self.catalogue.classes[self.prompt[node_id]["class_type"]].output_node

    async def execute(self) -> Outcome:
        pid = self.job.prompt_id
        self.add_message("execution_start", {"prompt_id": pid})
        self.keys = cache_keys(self.prompt, self.is_changed, self._with_node_id)
        live = set(self.keys.values())
        for stale in [k for k in self.ex.cache if k not in live]:
            del self.ex.cache[stale]  # ComfyUI's clean_unused: keep only this prompt's keys
        cached = [n for n in self.prompt if self.keys[n] in self.ex.cache]
        self.add_message("execution_cached", {"nodes": cached, "prompt_id": pid})
        order = ExecutionList(self.prompt, lambda n: self.keys[n] in self.ex.cache, self.is_output)
        for output in self.job.outputs:
            order.add_node(output)
        success = True
        while not order.is_empty():
            staged = order.next_node()
            if staged is None:  # a cycle; validation normally rejects these first
                success = False
                break
            error = await self.execute_node(staged)
            if error is not None:
                self.report(staged, error)
                success = False
                break
            order.complete(staged)
        else:
            self.add_message("execution_success", {"prompt_id": pid})
        return self.outcome(success)

    def _with_node_id(self, node_id: str) -> bool:
        return self.catalogue.classes[self.prompt[node_id]["class_type"]].unique_id

    def outcome(self, success: bool) -> Outcome:
        outputs, meta = {}, {}
        for node_id in reversed(self.prompt):
            entry = self.ex.cache.get(self.keys[node_id])
            if entry is not None and entry.ui is not None:
                outputs[node_id] = entry.ui
                meta[node_id] = _meta(node_id)
        return Outcome(success, self.messages, outputs, meta)

    def send_progress_state(self) -> None:
        nodes = {
            node_id: {
                **state,
                "node_id": node_id,
                "prompt_id": self.job.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, state in self.progress.items()
        }
        self.ex.hub.send(
            "progress_state", {"prompt_id": self.job.prompt_id, "nodes": nodes}, self.client
        )

    def set_progress(self, node_id: str, **state: Any) -> None:
        entry = self.progress.setdefault(node_id, {"value": 0, "max": 1, "state": "pending"})
        entry.update(state)
        self.send_progress_state()

    async def execute_node(self, node_id: str) -> BaseException | None:
        entry = self.ex.cache.get(self.keys[node_id])
        if entry is not None:  # a cached output node: re-send its old UI, write nothing
            if self.client is not None:
                self.ex.hub.send(
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": entry.ui,
                        "prompt_id": self.job.prompt_id,
                    },
                    self.client,
                )
            self.set_progress(
                node_id, state="finished", value=self.progress.get(node_id, {}).get("max", 1)
            )
            return None
        self.set_progress(node_id, state="running", value=0.0, max=1.0)
        if self.client is not None:
            self.ex.last_node_id = node_id
            self.ex.hub.send(
                "executing",
                {"node": node_id, "display_node": node_id, "prompt_id": self.job.prompt_id},
                self.client,
            )
        try:
            self.check_interrupt()
            # A stall holds the node after the interrupt check, so an interrupt sent
            # during a stall lands at the next node, as one sent mid-node does in ComfyUI.
            await self.ex.faults.gate()
            outputs, ui = await self.compute(node_id)
        except Exception as exc:
            return exc
        self.ex.cache[self.keys[node_id]] = CacheEntry(outputs, ui or None)
        if ui and self.client is not None:
            self.ex.hub.send(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": ui,
                    "prompt_id": self.job.prompt_id,
                },
                self.client,
            )
        self.set_progress(node_id, state="finished", value=self.progress[node_id]["max"])
        self.executed.append(node_id)
        await self.ex.faults.node_executed()
        return None

    def check_interrupt(self) -> None:
        if self.ex.interrupted:
            raise Interrupted()

    def inputs_for(self, node_id: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in self.prompt[node_id]["inputs"].items():
            if is_link(value):
                values[name] = self.ex.cache[self.keys[value[0]]].outputs[value[1]]
            else:
                values[name] = value
        return values

    async def compute(self, node_id: str) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
        class_type = self.prompt[node_id]["class_type"]
        inputs = self.inputs_for(node_id)
        self.current_inputs = {k: [_format(v)] for k, v in inputs.items()}
        if class_type in self.ex.faults.fail_node_types:
            raise InjectedFailure(f"sim: injected failure in {class_type} (node {node_id})")
        await asyncio.sleep(self.ex.node_ms / 1000)
        await self.ex.faults.gate()
        # Only catalogue classes pass validation; one without an op is an --extra-class.
        return await OPS.get(class_type, custom_node)(inputs, _NodeContext(self, node_id))

    def report(self, node_id: str, error: BaseException) -> None:
        base = {
            "prompt_id": self.job.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self.executed),
        }
        if isinstance(error, Interrupted):
            self.add_message("execution_interrupted", base, broadcast=True)
            return
        # ComfyUI's execute(): two logging.error calls, the second a whole traceback.
        self.ex.hub.log(f"!!! Exception during processing !!! {error}")
        self.ex.hub.log("".join(traceback.format_exception(error)))
        self.add_message(
            "execution_error",
            {
                **base,
                "exception_message": f"{error}\n",
                "exception_type": _type_name(error),
                "traceback": SIM_TRACEBACK,
                "current_inputs": self.current_inputs,
                "current_outputs": list(self.prompt),
            },
        )


class _NodeContext:
    def __init__(self, run: _JobRun, node_id: str) -> None:
        self.run = run
        self.node_id = node_id
        self.storage = run.ex.storage
        self.prompt = run.prompt
        pnginfo = run.job.extra_data.get("extra_pnginfo")
        self.extra_pnginfo = pnginfo if isinstance(pnginfo, dict) else None
        self.step_ms = run.ex.step_ms
        self.pad_output_bytes = run.ex.faults.pad_output_bytes

    async def progress(self, value: int, total: int, preview: bytes | None) -> None:
        """A ProgressBar update: interrupt check, progress_state, preview, progress."""
        run = self.run
        await run.ex.faults.gate()
        run.check_interrupt()
        run.set_progress(self.node_id, state="running", value=value, max=total)
        meta = {
            "node_id": self.node_id,
            "prompt_id": run.job.prompt_id,
            "display_node_id": self.node_id,
            "parent_node_id": None,
            "real_node_id": self.node_id,
        }
        with_meta = run.ex.hub.supports_metadata(run.client)
        if preview is not None and with_meta:
            run.ex.hub.send_preview(preview, meta, run.client)
        run.ex.hub.send(
            "progress",
            {"value": value, "max": total, "prompt_id": run.job.prompt_id, "node": self.node_id},
            run.client,
        )
        if preview is not None and not with_meta:
            run.ex.hub.send_preview(preview, meta, run.client)

    def text(self, message: str) -> None:
        # ComfyUI's send_progress_text passes no sid: text frames reach every socket.
        self.run.ex.hub.send_text(self.node_id, message)


def _meta(node_id: str) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "display_node": node_id,
        "parent_node": None,
        "real_node_id": node_id,
    }


def _format(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)[:200]


def _type_name(error: BaseException) -> str:
    kind = type(error)
    if kind.__name__ == "UnidentifiedImageError":
        return "PIL.UnidentifiedImageError"  # what ComfyUI reports for a corrupt upload
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"
