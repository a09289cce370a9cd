"""The evaluator on the suite's real Redis, stepped round by round (`evaluate`, `deliver`):
firing and resolution reach a real HTTP receiver, a receiver that is down gets the alert
once it is back, and a lapsed leader can neither commit nor make a notification twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from comfyfleet.alerts.config import AlertsConfig, Receiver
from comfyfleet.alerts.evaluator import FORGOTTEN_NODE_ALERT_MS, Evaluator
from comfyfleet.alerts.send import Sender
from comfyfleet.alerts.snapshot import SnapshotReader
from comfyfleet.alerts.store import LEADER_NAME, AlertStore
from comfyfleet.clock import FrozenClock
from comfyfleet.config import RedisConfig
from comfyfleet.models.node import NodeInfo
from comfyfleet.redis_server import free_port
from comfyfleet.store import histograms
from comfyfleet.store.keys import Keys
from comfyfleet.store.leader import LeaderLease, Lease, NotLeader
from comfyfleet.store.nodes import NodeRegistry
from tests.alerts.conftest import SECRET, Listener, config
from tests.support.waiting import until


@dataclass
class Bench:
    redis: aioredis.Redis
    keys: Keys

    def evaluator(self, cfg: AlertsConfig) -> Evaluator:
        store = AlertStore(self.redis, self.keys)
        reader = SnapshotReader(self.redis, self.keys, NodeRegistry(self.redis, self.keys))
        sender = Sender(timeout_ms=2000, external_url="", webhook_secret=SECRET)
        return Evaluator(cfg, store, reader, sender, jitter=False)

    def lease(self, holder: str, ttl_ms: int = 60_000) -> LeaderLease:
        return LeaderLease(self.redis, self.keys, LEADER_NAME, ttl_ms=ttl_ms, holder=holder)

    async def beat(self, node_id: str, ago_ms: int = 0, restarts: int = 0) -> None:
        """A heartbeat of `node_id` as if sent `ago_ms` ago (6 s and more: lost), saying
        its ComfyUI restarted `restarts` times."""
        registry = NodeRegistry(self.redis, self.keys)
        await registry.heartbeat(NodeInfo(node_id=node_id, comfy_restarts=restarts))
        # Heartbeats are stamped by Redis's clock: backdate the last-seen score itself.
        await self.redis.zadd(self.keys.nodes, {node_id: await registry.now_ms() - ago_ms})

    async def due_id(self) -> str:
        """The one notification waiting."""
        (only,) = await self.redis.zrange(self.keys.alerts_due, 0, -1)
        return str(only.decode())


@pytest.fixture
async def bench(redis_config: RedisConfig) -> AsyncIterator[Bench]:
    redis = aioredis.Redis.from_url(redis_config.url)
    yield Bench(redis, Keys(redis_config.namespace))
    await redis.aclose()


async def held(lease: LeaderLease) -> Lease:
    got = await lease.acquire()
    assert got is not None
    return got


def kinds(listener: Listener) -> list[tuple[str, str, str]]:
    """(webhook-id, node_id, status) of every alert the receiver got."""
    out = []
    for req in listener.got:
        body = req.json()
        out += [(req.headers["webhook-id"], a["labels"].get("node_id", ""), a["status"])
                for a in body["alerts"]]  # fmt: skip
    return out


async def test_node_lost_fires_and_resolves_at_a_webhook(bench: Bench, listener: Listener) -> None:
    hook = Receiver(name="hook", kind="webhook", url=listener.url + "/alerts")
    ev = bench.evaluator(config(hook))
    lease = await held(bench.lease("a"))
    await bench.beat("n1", ago_ms=10_000)
    await bench.beat("n2")
    decided = await ev.evaluate(lease)
    assert [n.kind for n in decided.notices] == ["firing"]
    assert await ev.deliver() == 1
    assert [k[1:] for k in kinds(listener)] == [("n1", "firing")]
    await ev.evaluate(lease)  # still lost: nothing new
    assert await ev.deliver() == 0
    states = await ev.store.states()
    assert [s.labels["node_id"] for s in states.values()] == ["n1"]
    await bench.beat("n1")  # back
    await ev.evaluate(lease)
    assert await ev.deliver() == 1
    assert [k[1:] for k in kinds(listener)] == [("n1", "firing"), ("n1", "resolved")]
    assert await ev.store.states() == {}
    assert await ev.store.pending() == 0
    latency = await histograms.read(bench.redis, bench.keys)
    assert [(s.labels, s.count) for s in latency["alert"]] == [(("webhook", "ok"), 2)]
    await ev.sender.close()


async def test_a_receiver_down_for_a_while_gets_the_alert_once_back(bench: Bench) -> None:
    port = free_port("127.0.0.1")
    hook = Receiver(name="hook", kind="webhook", url=f"http://127.0.0.1:{port}/alerts")
    ev = bench.evaluator(config(hook, retry_base_ms=20, retry_max_ms=40))
    lease = await held(bench.lease("a"))
    await bench.beat("n1", ago_ms=10_000)
    await ev.evaluate(lease)
    for _ in range(3):  # refused three times, kept each time
        await until(ev.deliver, lambda n: n == 1, what="the retry to fall due")
    raw = await bench.redis.hgetall(bench.keys.alert_prefix() + await bench.due_id())
    assert raw[b"attempts"] == b"3"
    assert b"ClientConnectorError" in raw[b"last_error"]
    receiver = Listener(port=port)
    await receiver.start()
    try:
        await until(ev.deliver, lambda n: n == 1, what="the receiver to be tried again")
        assert [k[1:] for k in kinds(receiver)] == [("n1", "firing")]
        assert await ev.store.pending() == 0
    finally:
        await receiver.stop()
        await ev.sender.close()


async def test_a_lapsed_leader_commits_nothing_and_the_next_sends_nothing_twice(
    bench: Bench, listener: Listener
) -> None:
    hook = Receiver(name="hook", kind="webhook", url=listener.url + "/alerts")
    first, second = bench.evaluator(config(hook)), bench.evaluator(config(hook))
    lease_a = await held(bench.lease("a", ttl_ms=100))
    await bench.beat("n1", ago_ms=10_000)
    await first.evaluate(lease_a)  # n1 fires, notification queued under a's lease
    lease_b = await until(bench.lease("b").acquire, lambda lease: lease is not None,
                          what="a's lease to lapse")  # fmt: skip
    assert lease_b is not None
    await bench.beat("n2", ago_ms=10_000)
    with pytest.raises(NotLeader):  # a stalled past its lease: its round is refused whole
        await first.evaluate(lease_a)
    await second.evaluate(lease_b)  # b knows n1 already fired; only n2 is new
    while await second.deliver():
        pass
    assert sorted(k[1:] for k in kinds(listener)) == [("n1", "firing"), ("n2", "firing")]
    assert len({k[0] for k in kinds(listener)}) == 2
    for ev in (first, second):
        await ev.sender.close()


async def test_a_forgotten_lost_node_alerts_until_back_or_a_day_passed(
    bench: Bench, listener: Listener
) -> None:
    hook = Receiver(name="hook", kind="webhook", url=listener.url + "/alerts")
    ev = bench.evaluator(config(hook))
    lease = await held(bench.lease("a"))
    await bench.beat("n1", ago_ms=10_000)
    await ev.evaluate(lease)
    registry = NodeRegistry(bench.redis, bench.keys)
    await registry.forget("n1")  # the reaper forgets a node lost for 10 minutes
    assert await registry.all() == []
    assert (await ev.evaluate(lease)).notices == []  # still lost: no resolution
    assert len(await ev.store.states()) == 1
    ev.clock = FrozenClock(await ev.store.now_ms() + FORGOTTEN_NODE_ALERT_MS)
    assert [n.kind for n in (await ev.evaluate(lease)).notices] == ["resolved"]
    await ev.sender.close()


async def test_comfyui_restarting_fires_on_the_growth_of_the_heartbeat_count(
    bench: Bench, listener: Listener
) -> None:
    """The node's heartbeat counts its ComfyUI's restarts; more than 3 within the window
    (the rounds' kept samples) fires ComfyRestarting for that node."""
    hook = Receiver(name="hook", kind="webhook", url=listener.url + "/alerts")
    ev = bench.evaluator(config(hook))
    lease = await held(bench.lease("a"))
    await bench.beat("n1", restarts=2)  # restarts before the window count for nothing
    assert (await ev.evaluate(lease)).notices == []
    await bench.beat("n1", restarts=5)
    assert (await ev.evaluate(lease)).notices == []  # 3: not more than the threshold
    await bench.beat("n1", restarts=6)
    (notice,) = (await ev.evaluate(lease)).notices
    assert notice.alert.labels == {"alertname": "ComfyRestarting", "severity": "warning",
                                   "node_id": "n1"}  # fmt: skip
    assert notice.alert.value == 4
    await ev.sender.close()
