"""Input images fetched from a URL (`POST /api/v1/inputs {"url": ...}`), for clients whose
images already sit in object storage or a CDN.

Off unless the operator allowlists where from (`--input-url-allow`, repeatable):
- a host name (`images.example.com`) or every name below a domain (`*.example.com`): such
  a host must still resolve to public addresses only;
- a network (`10.20.0.0/16`): any host whose addresses all lie in allowlisted networks,
  private or not.
The checks are those of webhook targets (`webhook_targets.py`): http(s) only, no
credentials in the URL, the connection made only to addresses that passed (no DNS
rebinding). Redirects are not followed: the target they name was never checked.

Limits: the body is read to at most the upload limit (413 beyond, a declared
Content-Length refused before reading), the whole fetch is bounded in time, and what comes
back goes through the same sniffing as an upload (415 / 422). A fetch that fails says why
in a 422 naming `url`; the balancer never answers 5xx for somebody else's server.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

import aiohttp

from comfyfleet.balancer.webhook_targets import (
    GuardedResolver,
    IPNetwork,
    TargetPolicy,
    TargetRefused,
)
from comfyfleet.config import InputUrlConfig
from comfyfleet.errors import ConfigError, ValidationFailed
from comfyfleet.web.responses import PayloadTooLarge, read_bounded

FLAG = "--input-url-allow"
FIELD = "url"
# A host name pattern: labels of letters, digits and '-', optionally led by '*.'.
_HOST = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


class InputUrlRefused(ValidationFailed):
    code = "input-url-refused"
    title = "Input URL refused"


class InputUrlFailed(ValidationFailed):
    code = "input-url-failed"
    title = "Input URL could not be fetched"


def _split_allow(specs: Iterable[str]) -> tuple[tuple[str, ...], tuple[IPNetwork, ...]]:
    hosts: list[str] = []
    networks: list[IPNetwork] = []
    for raw in specs:
        spec = raw.strip().lower()
        try:
            networks.append(ipaddress.ip_network(spec, strict=False))
            continue
        except ValueError:
            pass
        if not _HOST.fullmatch(spec):
            raise ConfigError(
                f"{FLAG} expects a host (images.example.com), *.domain or a CIDR, got {raw!r}"
            )
        hosts.append(spec)
    return tuple(hosts), tuple(networks)


class InputUrlPolicy:
    """Which input URLs may be fetched; see the module docstring."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.hosts, networks = _split_allow(allow)
        self.targets = TargetPolicy([str(n) for n in networks], flag=FLAG)

    @property
    def enabled(self) -> bool:
        return bool(self.hosts or self.targets.allow)

    def host_listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return True
            elif host == pattern:
                return True
        return False

    async def check(self, url: str) -> None:
        """InputUrlRefused (422 naming `url`) unless `url` may be fetched."""
        if not self.enabled:
            raise InputUrlRefused(
                "fetching inputs from URLs is off on this fleet (the operator turns it on "
                f"with {FLAG}); upload the image as multipart/form-data instead",
                field=FIELD,
            )
        try:
            parts = self.targets.parse(url, FIELD)
            host = parts.hostname or ""
            addresses = await self.targets.addresses(host, parts.port, FIELD)
            in_networks = all(any(a in n for n in self.targets.allow) for a in addresses)
            if not (in_networks or self.host_listed(host)):
                raise InputUrlRefused(
                    f"{FIELD} host {host!r} is not allowlisted ({FLAG})", field=FIELD
                )
            # A listed host is still held to the webhook rules: public addresses only.
            self.targets.refuse_unless_allowed(host, addresses, FIELD)
        except TargetRefused as exc:
            raise InputUrlRefused(exc.detail, field=FIELD) from None


def input_url_config(allow: Iterable[str]) -> InputUrlConfig:
    """The config for `--input-url-allow` values; ConfigError naming a bad one."""
    InputUrlPolicy(allow)
    return InputUrlConfig(allow=tuple(allow))


class InputFetcher:
    """Fetches allowlisted input URLs through a connector that only reaches checked
    addresses. One per balancer process."""

    def __init__(self, cfg: InputUrlConfig) -> None:
        self.policy = InputUrlPolicy(cfg.allow)
        self.timeout = aiohttp.ClientTimeout(total=cfg.timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = GuardedResolver(self.policy.targets, what="input url host")
            connector = aiohttp.TCPConnector(resolver=resolver, limit=16)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._session

    async def fetch(self, url: str, limit: int) -> bytes:
        """The body at `url`, at most `limit` bytes; a 4xx naming the problem otherwise."""
        await self.policy.check(url)
        try:
            async with self._http().get(url, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308):
                    raise InputUrlFailed(
                        f"{FIELD} answered {resp.status} (a redirect); redirects are not "
                        "followed: give the final URL",
                        field=FIELD,
                    )
                if resp.status != 200:
                    raise InputUrlFailed(f"{FIELD} answered HTTP {resp.status}", field=FIELD)
                if resp.content_length is not None and resp.content_length > limit:
                    raise PayloadTooLarge(
                        f"{FIELD} holds {resp.content_length} bytes; the limit is {limit}"
                    )
                return await read_bounded(resp.content, limit, FIELD)
        except TimeoutError:
            seconds = self.timeout.total
            raise InputUrlFailed(
                f"{FIELD} did not answer within {seconds:g} s", field=FIELD
            ) from None
        except aiohttp.ClientError as exc:
            raise InputUrlFailed(f"fetching {FIELD} failed: {exc}", field=FIELD) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
