"""The one retry policy: capped exponential backoff, with or without jitter. Pure.

Used between a job's attempts (node/runner.py), between a webhook's deliveries
(balancer/webhooks.py), and -- through `tasks.Pacer` -- by every loop that waits before
trying Redis or ComfyUI again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before try n+1 after try n failed, in milliseconds.

    `base_ms * 2**(n-1)`, capped at `cap_ms`; with `jitter`, a uniform draw from half to
    all of that, so jobs failed together by one fault do not all come back at once.
    """

    base_ms: int = 1_000
    cap_ms: int = 30_000
    jitter: bool = True

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> int:
        exp = min(self.cap_ms, self.base_ms << min(max(0, attempt - 1), 30))
        if not self.jitter:
            return exp
        draw = rng if rng is not None else random.Random()
        return int(draw.uniform(exp / 2, exp))
