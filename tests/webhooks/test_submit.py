"""Webhooks through the balancer's API: submit-time refusals (422 naming the field), and a
job's end reaching its webhook through the app's own background dispatcher."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from comfyfleet.config import RedisConfig
from comfyfleet.store.jobs import JobStore
from tests.live.inprocess import Balancer, balancer
from tests.support.waiting import until
from tests.webhooks.conftest import SECRET, Receiver, webhook_config

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {}}}


async def _submit(bal: Balancer, body: dict[str, Any]) -> tuple[int, Any]:
    async with bal.http.post(f"{bal.url}/api/v1/jobs", json=body) as r:
        return r.status, await r.json(content_type=None)


async def test_without_a_secret_webhooks_are_refused(redis_config: RedisConfig) -> None:
    async with balancer(redis_config) as bal:
        status, body = await _submit(bal, {"graph": GRAPH, "webhook_url": "https://93.184.216.34/"})
    assert status == 422
    assert body["field"] == "webhook_url"
    assert SECRET not in str(body)


@pytest.mark.parametrize("url", ["http://10.0.0.1/hook", "http://localhost:9/hook"])
async def test_private_targets_are_refused_at_submit(redis_config: RedisConfig, url: str) -> None:
    async with balancer(redis_config, webhook_config(allow=())) as bal:
        status, body = await _submit(bal, {"graph": GRAPH, "webhook_url": url})
        assert status == 422, body
        assert body["field"] == "webhook_url"
        assert body["code"] == "webhook-target-refused"
        status, body = await _submit(bal, {"graph": GRAPH, "webhook_events": ["progress"]})
        assert status == 422
        assert body["field"] == "webhook_events"
        status, body = await _submit(bal, {"graph": GRAPH, "webhook_url": url,
                                           "webhook_events": ["everything"]})  # fmt: skip
        assert status == 422


async def test_an_allowlisted_job_webhook_is_called_when_the_job_ends(
    redis_config: RedisConfig, receiver: Receiver
) -> None:
    async with balancer(redis_config, webhook_config(retry_base_ms=20)) as bal:
        receiver.failures = 1
        status, job = await _submit(bal, {"graph": GRAPH, "webhook_url": receiver.url})
        assert status == 202, job
        store = JobStore.from_config(redis_config)
        try:
            await store.cancel(job["id"])
        finally:
            await store.close()
        await until(lambda: _count(receiver), lambda n: n >= 2, timeout_s=10, what="delivery")
    message = orjson.loads(receiver.got[-1].body)
    assert message["type"] == "job.cancelled"
    assert message["data"]["id"] == job["id"]
    assert message["data"]["status"] == "cancelled"


async def _count(receiver: Receiver) -> int:
    return len(receiver.got)
