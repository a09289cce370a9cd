"""`GET /api/v1/usage` over HTTP with two keys: each reads its own figures (and only its
own), the admin reads both, and every figure equals the sum of the jobs' own timings as
their job views show them; `/metrics` carries the same per owner."""

from __future__ import annotations

import json
from typing import Any

from tests.api.conftest import ADMIN_AUTH, Role
from tests.api.test_isolation import Tenant, make_key, run_job


async def _views(balancer: Role, auth: str) -> list[dict[str, Any]]:
    status, _, body = await balancer.call("GET", "/api/v1/jobs", auth=auth)
    assert status == 200
    jobs: list[dict[str, Any]] = json.loads(body)["jobs"]
    return jobs


def _expected(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    gpu = sum(r["ended_ms"] - r["started_ms"] for j in jobs for r in j["history"])
    life = sum(j["finished_ms"] - j["created_ms"] for j in jobs)
    return {
        "jobs": {"succeeded": len(jobs), "failed": 0, "cancelled": 0},
        "gpu_seconds": gpu / 1000,
        "queue_seconds": (life - gpu) / 1000,
        "output_bytes": sum(o["size"] for j in jobs for o in j["outputs"]),
    }


async def test_each_key_reads_its_own_usage_and_it_sums_its_jobs(
    balancer: Role, node: Role
) -> None:
    a, b = await make_key(balancer, "use-a"), await make_key(balancer, "use-b")
    for tenant, runs in ((a, 3), (b, 1)):
        for _ in range(runs):
            await run_job(balancer, tenant.auth)
    reports: dict[str, Any] = {}
    for who, auth in (("a", a.auth), ("b", b.auth), ("admin", ADMIN_AUTH)):
        status, _, body = await balancer.call("GET", "/api/v1/usage", auth=auth)
        assert status == 200, body
        reports[who] = json.loads(body)
    for who, tenant in (("a", a), ("b", b)):
        (total,) = reports[who]["totals"]
        assert (total["owner"], total["workflow"]) == (tenant.owner, "solid")
        assert reports[who]["owner"] == tenant.owner
        jobs = await _views(balancer, tenant.auth)
        assert {k: total[k] for k in _expected(jobs)} == _expected(jobs)
    assert sorted(t["owner"] for t in reports["admin"]["totals"]) == sorted([a.owner, b.owner])
    # One key cannot read another's; the admin can, by key.
    status, _, _ = await balancer.call("GET", f"/api/v1/usage?key={b.key_id}", auth=a.auth)
    assert status == 403
    status, _, body = await balancer.call("GET", f"/api/v1/usage?key={b.key_id}",
                                          auth=ADMIN_AUTH)  # fmt: skip
    assert json.loads(body)["totals"] == reports["b"]["totals"]
    status, _, metrics = await balancer.call("GET", "/metrics")
    line = f'comfyfleet_tenant_jobs_total{{outcome="succeeded",owner="{a.owner}"}} 3.0'
    assert line in metrics.decode()


async def test_usage_ranges_are_checked(balancer: Role) -> None:
    tenant: Tenant = await make_key(balancer, "range")
    for query, words in (("from=2026-13-01", "YYYY-MM-DD"), ("from=20261201", "YYYY-MM-DD"),
                         ("from=2026-12-02&to=2026-12-01", "after"),
                         ("from=2026-01-01&to=2026-12-01", "at most")):  # fmt: skip
        status, _, body = await balancer.call("GET", f"/api/v1/usage?{query}",
                                                    auth=tenant.auth)  # fmt: skip
        assert status == 400, query
        assert words in json.loads(body)["detail"], body
