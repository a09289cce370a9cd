"""`comfyfleet sim`: a stand-in for ComfyUI 0.3.64 that speaks its HTTP + WebSocket protocol
as recorded in tests/data/comfyui/traces, runs model-free and SD-shaped graphs without a
GPU, and can inject faults. It imports nothing of node, balancer, store or comfy."""

from comfyfleet.sim.faults import Faults
from comfyfleet.sim.server import create_app
from comfyfleet.sim.state import SIM_STATE, SimState

__all__ = ["SIM_STATE", "Faults", "SimState", "create_app"]
