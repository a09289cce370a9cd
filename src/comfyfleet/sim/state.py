"""Everything a running sim holds, in one object stored on the app (no module globals)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from aiohttp import web

from comfyfleet.config import SimConfig
from comfyfleet.sim.catalogue import Catalogue, NodeClass, inventory
from comfyfleet.sim.executor import Executor
from comfyfleet.sim.faults import Faults
from comfyfleet.sim.files import Storage
from comfyfleet.sim.hub import Hub
from comfyfleet.sim.nodespecs import node_classes
from comfyfleet.sim.queue import PromptQueue


@dataclass
class SimState:
    config: SimConfig
    storage: Storage
    hub: Hub
    queue: PromptQueue
    executor: Executor
    faults: Faults
    classes: dict[str, NodeClass]
    models: dict[str, tuple[str, ...]]

    def catalogue(self) -> Catalogue:
        """The node catalogue with today's uploads in LoadImage's combo."""
        return Catalogue(self.classes, self.models, self.storage.input_images())

    def queue_info(self) -> dict[str, object]:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}


SIM_STATE = web.AppKey("sim_state", SimState)


def build_state(config: SimConfig, storage: Storage) -> SimState:
    faults = Faults(
        fail_node_types=config.fail_node_types,
        reject_prompts=config.reject_prompts,
        stall_after_nodes=config.stall_after_nodes,
        stall_ms=config.stall_ms,
        drop_ws_after_nodes=config.drop_ws_after_nodes,
        die_after_nodes=config.die_after_nodes,
    )
    hub = Hub(faults, echo=sys.stderr if config.echo_logs else None)
    faults.drop_websockets = hub.drop_all
    # The closure reads `queue` when called, after the assignment below has bound it.
    queue = PromptQueue(
        on_change=lambda: hub.send(
            "status", {"status": {"exec_info": {"queue_remaining": queue.remaining()}}}
        )
    )
    executor = Executor(hub, storage, faults, config.node_ms, config.step_ms)
    state = SimState(
        config=config,
        storage=storage,
        hub=hub,
        queue=queue,
        executor=executor,
        faults=faults,
        classes=node_classes(config.extra_classes, config.without_classes),
        models=inventory(config.models),
    )
    return state
