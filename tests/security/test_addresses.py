"""Finding 8 (part): `webhook_url` `http://[::7f00:1]/` (IPv4-compatible ::/96) was accepted.
Every IPv6 form that carries an IPv4 address is judged by that address."""

from __future__ import annotations

import base64
import ipaddress

import pytest
from pydantic import SecretStr

from comfyfleet.balancer.webhook_targets import TargetPolicy
from comfyfleet.config import InputUrlConfig, RedisConfig, WebhookConfig
from tests.security.fleet import fleet
from tests.security.graphs import solid

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef-addr").decode()
# Each embeds 127.0.0.1 or 10.0.0.1.
EMBEDDED = [
    "::7f00:1",  # IPv4-compatible (deprecated)
    "::a00:1",
    "2002:7f00:1::1",  # 6to4
    "2002:a00:1::",
    "64:ff9b::7f00:1",  # NAT64, well-known prefix
    "64:ff9b::a00:1",
    "64:ff9b:1::a00:1",  # NAT64, local-use prefix
    "2001:0:7f00:1::1",  # Teredo, server 127.0.0.1
]


async def test_webhook_urls_with_an_embedded_private_ipv4_are_422(
    redis_config: RedisConfig,
) -> None:
    async with fleet(redis_config, webhooks=WebhookConfig(secret=SecretStr(SECRET))) as f:
        for address in EMBEDDED:
            body = {"graph": solid(), "webhook_url": f"http://[{address}]/hook"}
            status, problem = await f.json("POST", "/api/v1/jobs", json=body)
            assert status == 422, (address, problem)
            assert problem["field"] == "webhook_url"


async def test_input_urls_with_an_embedded_private_ipv4_are_422(
    redis_config: RedisConfig,
) -> None:
    # Allowlisted as a public network: the address check still applies to what it holds.
    allow = InputUrlConfig(allow=("2000::/3", "::/96", "64:ff9b::/32"))
    async with fleet(redis_config, input_urls=allow) as f:
        for address in EMBEDDED[2:]:
            url = f"http://[{address}]/cat.png"
            status, problem = await f.json("POST", "/api/v1/inputs", json={"url": url})
            assert status == 422, (address, problem)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111"])
def test_embedded_public_ipv4_and_plain_public_ipv6_pass(address: str) -> None:
    assert TargetPolicy().address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", EMBEDDED[:-1])
def test_allowlisting_both_networks_lets_an_embedded_address_through(address: str) -> None:
    policy = TargetPolicy(allow=["127.0.0.0/8", "10.0.0.0/8", "::/96", "64:ff9b::/32",
                                 "2002::/16"])  # fmt: skip
    assert not TargetPolicy().address_allowed(ipaddress.ip_address(address))
    assert policy.address_allowed(ipaddress.ip_address(address))
