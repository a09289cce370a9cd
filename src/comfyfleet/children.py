"""Child processes that cannot outlive the process that started them.

`comfyfleet up` (Redis, stand-ins, nodes, balancer) and the balancer's worker supervisor
start children that hold ports. If the parent dies hard (SIGKILL, OOM killer), nothing it
runs at exit can stop them, so the kernel must: on Linux each child asks for a signal when
its parent dies (`prctl(PR_SET_PDEATHSIG)`). Elsewhere this is a no-op.

The kernel ties that signal to the *thread* that forked the child, so it is only asked for
when the child is started from the main thread; a child started from a helper thread (e.g.
`asyncio.to_thread`) would otherwise die as soon as that thread ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded once here: after fork, the child should only call what is already resolved.
_LIBC = _libc()


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `sig` when this process dies.
    None when that cannot be asked for (not Linux, or not on the main thread)."""
    if _LIBC is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    prctl = _LIBC.prctl

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, sig)
        # The parent may have died between fork and prctl: then nobody will send `sig`.
        if os.getppid() != parent:
            os._exit(1)

    return arm
