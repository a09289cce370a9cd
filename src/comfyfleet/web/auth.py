"""Who may call what: HTTP basic auth through aiohttp-basicauth with the credential check done
in constant time (the stock check compares with `==`, which leaks timing), plus bearer API
keys (`store/apikeys.py`: several, revocable, stored hashed).

Open routes (no credentials asked): the health probes and metrics, which load balancers and
scrapers call without secrets. Everything else needs credentials -- the Swagger UI and
`/openapi.json` too (the seed kept its Swagger pages behind basic auth, and the document
names this fleet's workflows), and paths that match no route, so a scan learns nothing. A
browser opening `/docs` gets the basic-auth prompt and then reuses the answer for the page's
own requests. Basic auth is the admin; an API key may do everything except manage API keys
(a leaked key must not be able to mint more).

Secrets are never logged or echoed: a refusal says only that credentials were missing or
wrong. Wrong credentials are counted per source address in Redis (`store/logins.py`): past a
few, that source waits, doubling, before its next credentials are looked at (429 with
Retry-After); other sources are never slowed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import ipaddress
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_basicauth import BasicAuthMiddleware

from comfyfleet.config import ServerConfig
from comfyfleet.errors import ComfyfleetError, ConfigError, StoreError
from comfyfleet.store.apikeys import ApiKeyStore
from comfyfleet.store.logins import LoginThrottle, source_of

# Routes (canonical paths) anyone may call; see the module docstring for why.
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
REALM = "comfyfleet"
CHALLENGE = f'Basic realm="{REALM}", Bearer realm="{REALM}"'
BEARER_CHALLENGE = f'Bearer realm="{REALM}", error="invalid_token"'
# Set by each role once its Redis client exists; without it bearer keys are refused.
API_KEYS = web.AppKey("api_keys", ApiKeyStore)
# Set by each role beside API_KEYS; without it failed logins are not slowed.
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    """Who is calling. `admin`: basic auth, or auth switched off (loopback without
    credentials); `apikey`: a bearer key; `anonymous`: no credentials, on an open route or
    from a network the operator listed (`--anonymous-from`)."""

    kind: Literal["admin", "apikey", "anonymous"]
    key_id: str | None = None
    # What an API key was granted beyond running jobs (store/apikeys.py SCOPES).
    scopes: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """Who did it, for records such as a workflow version's author."""
        return f"apikey:{self.key_id}" if self.kind == "apikey" else self.kind

    def may_see(self, owner: str) -> bool:
        """Whether this caller may see (and act on) what `owner` (a label) owns: its own,
        or anything for the admin (balancer/tenancy.py)."""
        return self.kind == "admin" or self.label == owner

    @property
    def only_owner(self) -> str | None:
        """The owner whose things alone this caller may see; None (everyone's) for the
        admin. For lookups that take an optional owner filter."""
        return None if self.kind == "admin" else self.label


ADMIN = Principal("admin")
ANONYMOUS = Principal("anonymous")
PRINCIPAL = web.RequestKey("principal", Principal)


class Unauthorized(ComfyfleetError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(ComfyfleetError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


def principal_of(request: web.Request) -> Principal:
    """The caller; ADMIN when no auth middleware runs (auth switched off)."""
    principal: Principal = request.get(PRINCIPAL, ADMIN)
    return principal


def caller_of(request: web.Request) -> str:
    """Who to share a per-caller bound by: the API key, or the admin / anonymous caller
    per source address (one password may serve many machines; each is a caller)."""
    principal = principal_of(request)
    if principal.kind == "apikey":
        return principal.label
    return f"{principal.label}@{source_of(request.remote)}"


def require_admin(request: web.Request) -> None:
    """Refuse (403) callers that are not the admin, e.g. to manage API keys."""
    if principal_of(request).kind != "admin":
        raise Forbidden("only the admin (basic auth) may do this; API keys may not")


def require_scope(request: web.Request, scope: str) -> None:
    """Refuse (403) callers that are neither the admin nor an API key granted `scope`."""
    principal = principal_of(request)
    if principal.kind != "admin" and scope not in principal.scopes:
        raise Forbidden(f"only the admin or an API key granted {scope!r} may do this")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def basic_auth_header(username: str, password: str) -> str:
    """The Authorization header value for HTTP basic auth (UTF-8, RFC 7617)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def bearer_header(key: str) -> str:
    return f"Bearer {key}"


def credentials_headers(
    username: str | None, password: str | None, api_key: str | None
) -> dict[str, str]:
    """A client's Authorization header: an API key wins over basic auth; none, no header."""
    if api_key:
        return {"Authorization": bearer_header(api_key)}
    if username and password:
        return {"Authorization": basic_auth_header(username, password)}
    return {}


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an Authorization header, or None if absent or malformed.

    Parsed here rather than with aiohttp.BasicAuth, which is deprecated in aiohttp 3.14."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def parse_bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def is_open(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in OPEN_ROUTES


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def in_networks(remote: str | None, networks: tuple[Network, ...]) -> bool:
    """Whether the address `remote` (as aiohttp reports it) lies in one of `networks`."""
    if not remote or not networks:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class ConstantTimeBasicAuth(BasicAuthMiddleware):  # type: ignore[misc]
    """Basic auth or a bearer API key on every route except the open ones; requests
    without credentials from `anonymous_from` networks are served as ANONYMOUS."""

    def __init__(
        self, username: str, password: str, anonymous_from: tuple[Network, ...] = ()
    ) -> None:
        super().__init__(username=username, password=password, force=True, realm=REALM)
        self.anonymous_from = anonymous_from

    async def check_credentials(self, username: str, password: str, request: web.Request) -> bool:
        # Compare both halves always, so a wrong user name costs the same as a wrong password.
        user_ok = _same(username, self.username)
        pass_ok = _same(password, self.password)
        return user_ok and pass_ok

    async def identify(self, request: web.Request) -> Principal | None:
        """The caller's principal when its credentials are right, else None."""
        header = request.headers.get("Authorization")
        credentials = parse_basic_auth(header)
        if credentials is not None:
            return ADMIN if await self.check_credentials(*credentials, request) else None
        token = parse_bearer(header)
        store = request.app.get(API_KEYS)
        if token is None or store is None:
            return None
        info = await store.verify(token)
        if info is None:
            return None
        return Principal("apikey", info.id, frozenset(info.scopes))

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        open_route = is_open(request) or (
            "Authorization" not in request.headers
            and in_networks(request.remote, self.anonymous_from)
        )
        principal = await self._identify_throttled(request)
        if principal is None and not open_route:
            # A wrong bearer key gets a Bearer challenge only (RFC 6750): a Basic one would
            # make a browser (e.g. Swagger UI's "Try it out") pop up its login dialog.
            bearer = parse_bearer(request.headers.get("Authorization")) is not None
            raise web.HTTPUnauthorized(
                headers={"WWW-Authenticate": BEARER_CHALLENGE if bearer else CHALLENGE},
                text="missing or wrong credentials",
            )
        request[PRINCIPAL] = principal or ANONYMOUS
        return await handler(request)

    async def _identify_throttled(self, request: web.Request) -> Principal | None:
        """`identify`, behind the per-source backoff on failed logins (store/logins.py):
        a source still waiting gets 429 with Retry-After before its credentials are looked
        at. Requests without credentials are neither counted nor slowed."""
        throttle = request.app.get(LOGIN_THROTTLE)
        if throttle is None or "Authorization" not in request.headers:
            return await self.identify(request)
        source = source_of(request.remote)
        try:
            wait_ms, failures = await throttle.wait_ms(source)
        except StoreError:
            # Redis down: let credentials be checked rather than lock every caller out.
            return await self.identify(request)
        if wait_ms > 0:
            wait_s = math.ceil(wait_ms / 1000)
            raise web.HTTPTooManyRequests(
                headers={"Retry-After": str(wait_s)},
                text=f"too many failed logins from {source}; retry in {wait_s} s",
            )
        principal = await self.identify(request)
        with contextlib.suppress(StoreError):
            if principal is None:
                await throttle.failed(source)
            elif failures:
                await throttle.succeeded(source)
        return principal


def auth_middlewares(server: ServerConfig) -> list[Middleware]:
    """The auth middleware for a role, or none when no credentials are set.

    A role bound beyond loopback refuses to start without credentials unless `insecure`.
    """
    if server.username and server.password:
        networks = tuple(ipaddress.ip_network(n, strict=False) for n in server.anonymous_from)
        password = server.password.get_secret_value()
        return [ConstantTimeBasicAuth(server.username, password, networks)]
    if not server.loopback and not server.insecure:
        raise ConfigError(
            f"refusing to listen on {server.host} without credentials: "
            "set API_USERNAME and API_PASSWORD, or pass --insecure"
        )
    return []
