"""Tenant records (C1): live counters kept by every job script, max_queued at enqueue,
max_running at claim."""

from __future__ import annotations

import pytest

from comfyfleet.clock import FrozenClock
from comfyfleet.errors import QuotaExceeded
from comfyfleet.models.job import JobError, JobErrorCode
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.tenants import Tenant, TenantStore

from .conftest import LEASE_MS, spec


@pytest.fixture
def tenants(store: JobStore) -> TenantStore:
    return TenantStore(store.redis, store.keys)


async def counts(tenants: TenantStore, owner: str) -> tuple[int, int]:
    t = await tenants.get(owner)
    return t.queued, t.running


async def test_counters_follow_every_status_change(
    store: JobStore, tenants: TenantStore, clock: FrozenClock
) -> None:
    a = [(await store.enqueue(spec(owner="apikey:a", max_attempts=3)))[0] for _ in range(4)]
    assert await counts(tenants, "apikey:a") == (4, 0)
    got = await store.claim("n", capacity=4, lease_ms=LEASE_MS)
    assert {j.id for j in got} == {j.id for j in a}
    assert await counts(tenants, "apikey:a") == (0, 4)
    await store.enqueue(spec(owner="apikey:b"))
    assert await counts(tenants, "apikey:b") == (1, 0)
    await store.complete(a[0].id, "n", [])
    err = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="x", retryable=True)
    await store.fail(a[1].id, "n", err, backoff_ms=1000)  # backing off counts as queued
    await store.release(a[2].id, "n")
    assert await counts(tenants, "apikey:a") == (2, 1)
    await store.cancel(a[2].id)
    await clock.step(LEASE_MS + 1)
    assert await store.requeue_expired() == [a[3].id]
    assert await counts(tenants, "apikey:a") == (2, 0)
    await store.cancel(a[1].id)
    await store.cancel(a[3].id)
    assert await counts(tenants, "apikey:a") == (0, 0)
    assert await counts(tenants, "apikey:b") == (1, 0)


async def test_jobs_without_owner_count_for_admin(store: JobStore, tenants: TenantStore) -> None:
    await store.enqueue(spec())
    assert await tenants.get("admin") == Tenant(owner="admin", queued=1)


async def test_enqueue_refuses_past_max_queued(store: JobStore, tenants: TenantStore) -> None:
    await tenants.configure("apikey:a", max_queued=2)
    for _ in range(2):
        await store.enqueue(spec(owner="apikey:a"))
    with pytest.raises(QuotaExceeded) as refused:
        await store.enqueue(spec(owner="apikey:a"))
    assert (refused.value.status, refused.value.limit) == (429, "max_queued")
    assert refused.value.problem()["limit"] == "max_queued"
    assert refused.value.retry_after_s > 0
    # Another tenant is not bound by it; a replayed idempotency key is still answered.
    await store.enqueue(spec(owner="apikey:b"))
    (running,) = await store.claim("n", lease_ms=LEASE_MS)
    assert running.owner == "apikey:a"
    await store.enqueue(spec(owner="apikey:a"), idempotency_key="k")
    again, created = await store.enqueue(spec(owner="apikey:a"), idempotency_key="k")
    assert not created
    assert again.owner == "apikey:a"
    await tenants.unset("apikey:a", "max_queued")
    await store.enqueue(spec(owner="apikey:a"))
    assert (await tenants.get("apikey:a")).queued == 3


async def test_claim_skips_a_tenant_at_max_running_without_blocking_others(
    store: JobStore, tenants: TenantStore
) -> None:
    await tenants.configure("apikey:a", max_running=1)
    a = [(await store.enqueue(spec(owner="apikey:a")))[0] for _ in range(5)]
    b, _ = await store.enqueue(spec(owner="apikey:b"))
    got = await store.claim("n", capacity=10, lease_ms=LEASE_MS)
    assert [j.id for j in got] == [a[0].id, b.id]
    assert await store.claim("n2", lease_ms=LEASE_MS) == []
    await store.complete(a[0].id, "n", [])
    (next_a,) = await store.claim("n2", capacity=10, lease_ms=LEASE_MS)
    assert next_a.id == a[1].id
