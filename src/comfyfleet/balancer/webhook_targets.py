"""Where the balancer may connect on a client's behalf (webhooks, input URLs): no
server-side request forgery into the fleet's own network.

A URL must be http(s), name a host, carry no credentials, and every address its host
resolves to must be public: private, loopback, link-local, multicast, reserved, shared
(CGNAT), unspecified and documentation ranges are refused -- including IPv4 inside IPv6
(mapped `::ffff:10.0.0.1`; 6to4, Teredo and NAT64 addresses whose IPv4 part is refused;
IPv4-compatible `::a.b.c.d`, deprecated, always) -- unless an allowlisted network
(`--webhook-allow CIDR`) holds it.

Checked twice: at submit (a clear 422 naming the field) and at delivery, where the sender
connects only to addresses this module passed (`GuardedResolver`), so a DNS answer that
changes between check and connect (rebinding) cannot reach a refused address.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from comfyfleet.errors import ConfigError, ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2048
# A submit waits at most this long for DNS (s).
RESOLVE_TIMEOUT_S = 5.0


# Where an IPv6 address carries an IPv4 one: the IPv4 address must pass too.
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses inside an IPv4-compatible, 6to4, Teredo (server and client) or
    NAT64 address."""
    found: list[ipaddress.IPv4Address] = []
    if address in IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are IPv6's own
        found.append(ipaddress.IPv4Address(int(address)))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in net for net in NAT64):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


class TargetRefused(ValidationFailed):
    code = "webhook-target-refused"
    title = "Webhook target refused"


def parse_networks(specs: Iterable[str], flag: str = "--webhook-allow") -> tuple[IPNetwork, ...]:
    """`flag`'s values (CIDR or a single address); ConfigError on a bad one."""
    out = []
    for spec in specs:
        try:
            out.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{flag} expects a CIDR like 10.0.0.0/8, got {spec!r}") from None
    return tuple(out)


def _check_host_name(host: str, field: str) -> None:
    """TargetRefused unless `host` is an address literal or a name DNS can carry: labels of
    1 to 63 characters, 253 in all once IDNA-encoded (the resolver's idna codec raises
    UnicodeError beyond that, which must be a 422, not a 500)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.rstrip(".").encode("idna")
    except UnicodeError:
        encoded = b""
    labels = encoded.split(b".")
    if not encoded or len(encoded) > 253 or not all(0 < len(label) <= 63 for label in labels):
        raise TargetRefused(
            f"{field} host is not a valid DNS name (labels of 1 to 63 characters, 253 in all)",
            field=field,
        )


class TargetPolicy:
    """The SSRF rules above, with an allowlist of networks (given with `flag`)."""

    def __init__(self, allow: Iterable[str] = (), flag: str = "--webhook-allow") -> None:
        self.flag = flag
        self.allow = parse_networks(allow, flag)

    def address_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return self.address_allowed(address.ipv4_mapped)
            # An IPv4 address carried inside must pass on its own, allowlist or not.
            if not all(self.address_allowed(inner) for inner in embedded_ipv4(address)):
                return False
        if any(address in net for net in self.allow):
            return True
        if address in IPV4_COMPATIBLE:
            return False  # deprecated ::a.b.c.d, and :: and ::1
        return address.is_global and not address.is_multicast

    def parse(self, url: str, field: str = "webhook_url") -> SplitResult:
        """The URL's parts when its form is acceptable (no DNS); TargetRefused otherwise."""
        if len(url) > MAX_URL_LENGTH:
            raise TargetRefused(f"{field} is longer than {MAX_URL_LENGTH} characters", field=field)
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError:
            raise TargetRefused(f"{field} is not a valid URL", field=field) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetRefused(f"{field} must be an http or https URL with a host", field=field)
        if parts.username is not None or parts.password is not None:
            raise TargetRefused(f"{field} must not carry credentials", field=field)
        _check_host_name(parts.hostname, field)
        return parts

    async def check(self, url: str, field: str = "webhook_url") -> None:
        """Refuse (TargetRefused, 422) a URL whose host is, or resolves to, a refused
        address, or does not resolve at all."""
        parts = self.parse(url, field)
        host = parts.hostname or ""
        self.refuse_unless_allowed(host, await self.addresses(host, parts.port, field), field)

    def refuse_unless_allowed(self, host: str, addresses: list[IPAddress], field: str) -> None:
        """TargetRefused naming every address of `host` the rules refuse, if any."""
        refused = sorted({str(a) for a in addresses if not self.address_allowed(a)})
        if refused:
            raise TargetRefused(
                f"{field} host {host!r} resolves to {', '.join(refused)}: private, loopback, "
                f"link-local, multicast and reserved addresses are refused unless allowlisted "
                f"({self.flag})",
                field=field,
            )

    async def addresses(self, host: str, port: int | None, field: str) -> list[IPAddress]:
        """What `host` (a name or an address literal) stands for; TargetRefused if nothing."""
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            return await self._resolve(host, port, field)

    async def _resolve(self, host: str, port: int | None, field: str) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            raise TargetRefused(f"{field} host {host!r} does not resolve", field=field) from None
        return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing any host that resolves to a refused address (an IP in
    the URL itself is checked by the caller: aiohttp does not resolve literals)."""

    def __init__(self, policy: TargetPolicy, what: str = "webhook host") -> None:
        self.policy = policy
        self.what = what
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not self.policy.address_allowed(ipaddress.ip_address(result["host"])):
                # errno + strerror: aiohttp keeps only those when it wraps the error.
                why = f"{self.what} {host!r} resolves to refused address {result['host']}"
                raise OSError(errno.EACCES, why)
        return results

    async def close(self) -> None:
        await self._inner.close()
