"""`tasks.stop` ends tasks that lose a cancel (as redis-py's `wait_for` can on 3.11), and
lets a cancel of its caller through."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from comfyfleet.models.retry import Backoff
from comfyfleet.tasks import Pacer, stop


async def _swallows_first_cancel(ended: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    try:
        await asyncio.Event().wait()  # carries on, as after a lost cancel
    finally:
        ended.set()


async def test_a_task_that_loses_its_cancel_is_cancelled_again() -> None:
    ended = asyncio.Event()
    task = asyncio.create_task(_swallows_first_cancel(ended))
    await asyncio.sleep(0)  # let it reach its first wait
    await asyncio.wait_for(stop(task, None), timeout=10)
    assert task.cancelled()
    assert ended.is_set()


async def test_a_failed_task_does_not_fail_the_stop() -> None:
    async def boom() -> None:
        raise RuntimeError("kaput")

    task = asyncio.create_task(boom(), name="boom")
    await asyncio.wait([task])
    await stop(task)  # does not raise; the error is retrieved
    assert isinstance(task.exception(), RuntimeError)


async def test_cancelling_the_caller_still_cancels_it() -> None:
    stubborn = asyncio.create_task(_swallows_first_cancel(asyncio.Event()))
    await asyncio.sleep(0)
    caller = asyncio.create_task(stop(stubborn))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    stubborn.cancel()
    await asyncio.wait([stubborn])


async def test_pacer_waits_double_up_to_the_cap_and_reset() -> None:
    pacer = Pacer(Backoff(base_ms=1, cap_ms=4, jitter=False))
    seen = []
    for _ in range(4):
        seen.append(pacer.delay_s)
        await pacer.sleep()
    assert seen == [0.001, 0.002, 0.004, 0.004]
    pacer.reset()
    assert pacer.delay_s == 0.001


async def test_a_jittered_pacer_sleeps_the_wait_it_announced() -> None:
    pacer = Pacer(Backoff(base_ms=2, cap_ms=8, jitter=True))
    for failures in range(1, 5):
        announced = pacer.delay_s
        assert announced == pacer.delay_s  # drawn once, not per look
        assert 0.5 * min(8, 2 << (failures - 1)) / 1000 <= announced <= 8 / 1000
        await pacer.sleep()
