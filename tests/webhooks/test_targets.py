"""SSRF guard: refused targets at submit (422 naming the field) and again at delivery,
where a name that now resolves somewhere refused (rebinding) reaches nothing."""

from __future__ import annotations

import pytest

from comfyfleet.balancer.webhook_targets import GuardedResolver, TargetPolicy, TargetRefused
from comfyfleet.errors import ConfigError
from comfyfleet.models.job import JobSpec
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.webhooks import WebhookStore
from tests.webhooks.conftest import DispatcherFactory, Receiver

REFUSED = [
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:8080/hook",
    "http://[::1]:8080/hook",
    "http://localhost:8080/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://224.0.0.1/hook",
    "http://0.0.0.0/hook",
    "http://100.64.0.1/hook",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_private_and_special_targets_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        await TargetPolicy().check(url)
    assert refused.value.status == 422
    assert refused.value.extra["field"] == "webhook_url"
    assert "webhook_url" in refused.value.detail


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "http:///x", "http://user:pw@example.com/x", "http://h:99999/",
     "http://example.com/" + "x" * 3000, "javascript:alert(1)"],
)  # fmt: skip
async def test_malformed_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        await TargetPolicy().check(url)


async def test_allowlisted_networks_pass_and_others_stay_refused() -> None:
    policy = TargetPolicy(["127.0.0.1/32", "::1/128"])
    await policy.check("http://localhost:8080/hook")
    await policy.check("http://127.0.0.1/hook")
    await policy.check("http://[::1]/hook")
    for url in ("http://10.1.2.3/hook", "http://169.254.169.254/", "http://127.0.0.2/"):
        with pytest.raises(TargetRefused):
            await policy.check(url)
    await TargetPolicy(["10.0.0.0/8"]).check("http://10.1.2.3/hook")


async def test_public_addresses_pass() -> None:
    await TargetPolicy().check("https://93.184.216.34/hook")
    await TargetPolicy().check("https://[2606:2800:220:1:248:1893:25c8:1946]/hook")


def test_a_bad_allowlist_entry_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        TargetPolicy(["not-a-network"])


async def test_the_resolver_refuses_names_that_resolve_to_refused_addresses() -> None:
    with pytest.raises(OSError, match="refused"):
        await GuardedResolver(TargetPolicy()).resolve("localhost", 80)
    allowed = GuardedResolver(TargetPolicy(["127.0.0.1/32", "::1/128"]))
    assert await allowed.resolve("localhost", 80)
    await allowed.close()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_delivery_checks_the_target_again(
    host: str,
    receiver: Receiver,
    jobs: JobStore,
    hooks: WebhookStore,
    make_dispatcher: DispatcherFactory,
) -> None:
    # Accepted while allowlisted (or while the name resolved elsewhere); refused now.
    url = receiver.url.replace("127.0.0.1", host)
    job, _ = await jobs.enqueue(JobSpec(graph={"1": {}}, webhook_url=url))
    await jobs.cancel(job.id)
    dispatcher = await make_dispatcher(allow=(), max_attempts=1)
    await dispatcher.run_once()
    assert receiver.got == []
    [dead] = await hooks.dead()
    assert "refused" in dead["last_error"]
