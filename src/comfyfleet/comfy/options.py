"""Tuning knobs of the ComfyUI client, in one frozen object."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComfyOptions:
    """Tuning knobs. Every duration is in seconds; sizes are in bytes."""

    request_timeout_s: float = 30.0  # whole request, for JSON routes
    connect_timeout_s: float = 5.0  # TCP connect, every route and the socket
    read_timeout_s: float = 60.0  # between two chunks of a download (no total cap)
    download_chunk_bytes: int = 256 * 1024
    api_prefix: str = ""  # "/api" to use ComfyUI's /api aliases; /internal has none
    silence_s: float = 30.0  # a tracked prompt this quiet gets cross-checked via HTTP
    unreachable_s: float = 300.0  # ComfyUI unreachable this long -> tracked prompts `lost`
    reconnect_initial_s: float = 0.25  # first reconnect delay; doubles per failure
    reconnect_max_s: float = 10.0  # cap on the reconnect delay
    reconnect_jitter: float = 0.5  # a delay is scaled by uniform(1 - jitter, 1)
    ws_heartbeat_s: float | None = 30.0  # ping period; None disables (server never pings)
    ws_max_msg_bytes: int = 256 * 1024 * 1024  # previews of big images are big; 0 = no cap
    keep_finished: int = 1024  # outcomes of finished prompts kept for late wait() calls
    # Finished prompts whose events (previews aside) stay for a late follow(): a prompt can
    # run to its end while its POST is answered, before its follower starts.
    replay_finished: int = 32
