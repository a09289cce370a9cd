"""Webhook delivery from the queue in Redis: signed, retried with backoff, given up, and
carried through a dispatcher restart. Time is a frozen clock stepped by the tests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import orjson

from comfyfleet.balancer.webhook_signing import verify
from comfyfleet.clock import FrozenClock
from comfyfleet.models.job import Job, JobSpec, OutputRef
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.webhooks import WebhookStore
from comfyfleet.tasks import stop
from tests.support.waiting import until
from tests.webhooks.conftest import BASE_MS, SECRET, DispatcherFactory, Receiver

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {}}}
OUTPUT = OutputRef(index=0, filename="a.png", size=3)


async def finished(jobs: JobStore, url: str | None) -> Job:
    """A job with `url` as its webhook, run to success by a make-believe node."""
    job, _ = await jobs.enqueue(JobSpec(graph=GRAPH, webhook_url=url))
    await jobs.claim("n1", lease_ms=60_000)
    return await jobs.complete(job.id, "n1", [OUTPUT])


def independent_signature(msg_id: str, stamp: str, body: bytes) -> str:
    """The Standard Webhooks signature, computed here without the module under test."""
    key = base64.b64decode(SECRET.split("_", 1)[1])
    mac = hmac.new(key, msg_id.encode() + b"." + stamp.encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


async def test_terminal_webhook_is_signed_the_standard_way(
    receiver: Receiver, jobs: JobStore, make_dispatcher: DispatcherFactory, clock: FrozenClock
) -> None:
    job = await finished(jobs, receiver.url)
    await (await make_dispatcher()).run_once()
    assert len(receiver.got) == 1
    got = receiver.got[0]
    msg_id, stamp = got.headers["webhook-id"], got.headers["webhook-timestamp"]
    assert stamp == str(clock.now_ms() // 1000)
    assert got.headers["webhook-signature"] == independent_signature(msg_id, stamp, got.body)
    assert verify(SECRET, got.headers, got.body, now_s=int(stamp))
    assert not verify(SECRET, got.headers, got.body + b" ", now_s=int(stamp))
    assert not verify(SECRET, got.headers, got.body, now_s=int(stamp) + 3600)
    message = orjson.loads(got.body)
    assert message["type"] == "job.succeeded"
    assert message["data"]["id"] == job.id
    assert message["data"]["outputs"][0]["url"] == f"http://bal/api/v1/jobs/{job.id}/outputs/0"


async def test_retries_back_off_exponentially_then_deliver(
    receiver: Receiver,
    jobs: JobStore,
    hooks: WebhookStore,
    make_dispatcher: DispatcherFactory,
    clock: FrozenClock,
) -> None:
    receiver.failures = 3
    await finished(jobs, receiver.url)
    dispatcher = await make_dispatcher()
    await dispatcher.run_once()
    assert len(receiver.got) == 1
    for attempt, delay in ((2, BASE_MS), (3, 2 * BASE_MS), (4, 4 * BASE_MS)):
        await clock.step(delay - 1)
        await dispatcher.run_once()
        assert len(receiver.got) == attempt - 1, f"attempt {attempt} came early"
        await clock.step(1)
        await dispatcher.run_once()
        assert len(receiver.got) == attempt
    assert await hooks.pending() == 0
    ids = {r.headers["webhook-id"] for r in receiver.got}
    assert len(ids) == 1, "every retry carries the same message id"
    for r in receiver.got:
        expected = independent_signature(
            r.headers["webhook-id"], r.headers["webhook-timestamp"], r.body
        )
        assert r.headers["webhook-signature"] == expected


async def test_gives_up_after_max_attempts_and_at_once_on_410(
    receiver: Receiver,
    jobs: JobStore,
    hooks: WebhookStore,
    make_dispatcher: DispatcherFactory,
    clock: FrozenClock,
) -> None:
    receiver.failures = 100
    job = await finished(jobs, receiver.url)
    dispatcher = await make_dispatcher(max_attempts=2)
    await dispatcher.run_once()
    await clock.step(BASE_MS)
    await dispatcher.run_once()
    await clock.step(10 * BASE_MS)
    await dispatcher.run_once()
    assert len(receiver.got) == 2
    assert await hooks.pending() == 0
    [dead] = await hooks.dead()
    assert (dead["job_id"], dead["attempts"], dead["last_error"]) == (job.id, "2", "HTTP 503")

    receiver.got.clear()
    receiver.fail = 410
    await finished(jobs, receiver.url)
    await dispatcher.run_once()
    assert len(receiver.got) == 1
    assert await hooks.pending() == 0
    assert len(await hooks.dead()) == 2


async def test_a_restarted_dispatcher_delivers_what_the_stopped_one_left(
    receiver: Receiver,
    jobs: JobStore,
    hooks: WebhookStore,
    make_dispatcher: DispatcherFactory,
    clock: FrozenClock,
) -> None:
    receiver.failures = 1
    await finished(jobs, receiver.url)
    first = await make_dispatcher()
    task = asyncio.create_task(first.run())
    await until(lambda: asyncio.sleep(0, len(receiver.got)), lambda n: n == 1, timeout_s=10,
                what="the first attempt")  # fmt: skip
    await stop(task)  # as the balancer does: a cancel can be lost inside redis-py on 3.11
    await first.close()

    await clock.step(BASE_MS)
    second = await make_dispatcher()
    task = asyncio.create_task(second.run())
    try:
        await until(hooks.pending, lambda n: n == 0, timeout_s=10, what="the retry")
    finally:
        await stop(task)
    assert len(receiver.got) == 2


async def test_a_claim_held_by_a_dead_sender_lapses_and_is_sent_again(
    receiver: Receiver,
    jobs: JobStore,
    hooks: WebhookStore,
    make_dispatcher: DispatcherFactory,
    clock: FrozenClock,
) -> None:
    await finished(jobs, receiver.url)
    dispatcher = await make_dispatcher()
    await dispatcher.collect()
    # A replica claims the delivery and dies before sending it.
    [lost] = await hooks.claim(clock.now_ms(), lease_ms=30_000, limit=10)
    await dispatcher.run_once()
    assert receiver.got == []
    await clock.step(30_000)
    await dispatcher.run_once()
    assert len(receiver.got) == 1
    assert receiver.got[0].headers["webhook-id"] == lost.id
    # The dead sender's late word changes nothing.
    assert not await hooks.retry(lost, clock.now_ms(), at_ms=clock.now_ms(), error="late")
    assert await hooks.pending() == 0


async def test_an_ended_job_is_collected_once_across_replicas(
    receiver: Receiver, jobs: JobStore, hooks: WebhookStore, make_dispatcher: DispatcherFactory
) -> None:
    await finished(jobs, receiver.url)
    one, two = await make_dispatcher(), await make_dispatcher()
    await asyncio.gather(one.collect(), two.collect())
    assert await hooks.pending() == 1


async def test_jobs_without_a_webhook_are_not_recorded_unless_fleet_wide(
    receiver: Receiver,
    jobs: JobStore,
    hooks: WebhookStore,
    make_dispatcher: DispatcherFactory,
) -> None:
    await finished(jobs, None)
    assert await hooks.ended(10) == []
    # With a fleet-wide URL, every job's end is recorded; a cancelled queued job too.
    dispatcher = await make_dispatcher(url=receiver.url)
    await hooks.set_fleet_wide()
    job, _ = await jobs.enqueue(JobSpec(graph=GRAPH))
    await jobs.cancel(job.id)
    assert await hooks.ended(10) == [job.id]
    await dispatcher.run_once()
    [got] = receiver.got
    assert orjson.loads(got.body)["type"] == "job.cancelled"


async def test_a_job_url_and_the_fleet_url_each_get_a_message(
    receiver: Receiver, jobs: JobStore, make_dispatcher: DispatcherFactory
) -> None:
    dispatcher = await make_dispatcher(url=receiver.url + "?fleet=1")
    await finished(jobs, receiver.url)
    await dispatcher.run_once()
    assert len(receiver.got) == 2
    assert len({r.headers["webhook-id"] for r in receiver.got}) == 2


async def test_progress_and_state_are_forwarded_when_asked_for(
    receiver: Receiver,
    jobs: JobStore,
    hooks: WebhookStore,
    make_dispatcher: DispatcherFactory,
    clock: FrozenClock,
) -> None:
    job, _ = await jobs.enqueue(JobSpec(graph=GRAPH, webhook_url=receiver.url))
    await hooks.watch(job.id, events=["state", "progress"], base_url="http://b", now=clock.now_ms())
    await jobs.claim("n1", lease_ms=60_000)
    for step in range(1, 6):
        await jobs.append_event(job.id, "progress", {"value": step, "max": 10, "node": "3"})
    dispatcher = await make_dispatcher()
    await dispatcher.run_once()
    kinds = [orjson.loads(r.body)["type"] for r in receiver.got]
    assert sorted(kinds) == ["job.progress", "job.queued", "job.running"]
    progress = next(orjson.loads(r.body) for r in receiver.got if b"job.progress" in r.body)
    assert progress["data"]["value"] == 5, "progress is coalesced to the newest"
    await jobs.complete(job.id, "n1", [OUTPUT])
    await clock.step(1000)
    await dispatcher.run_once()
    kinds = [orjson.loads(r.body)["type"] for r in receiver.got]
    assert kinds.count("job.succeeded") == 1
    assert await hooks.lease_following(clock.now_ms() + 10**6, 1000, 10) == []
