"""HTTP basic auth through aiohttp-basicauth, with the credential check done in constant
time (the stock check compares with `==`, which leaks timing)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_basicauth import BasicAuthMiddleware

from comfyfleet.config import ServerConfig
from comfyfleet.errors import ConfigError

# Routes anyone may call: load balancers and orchestrators probe these without credentials.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def basic_auth_header(username: str, password: str) -> str:
    """The Authorization header value for HTTP basic auth (UTF-8, RFC 7617)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


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


class ConstantTimeBasicAuth(BasicAuthMiddleware):  # type: ignore[misc]
    """Basic auth on every route except `open_paths`."""

    def __init__(self, username: str, password: str, open_paths: Iterable[str] = OPEN_PATHS):
        super().__init__(username=username, password=password, force=True, realm="comfyfleet")
        self.open_paths = frozenset(open_paths)

    async def authenticate(self, request: web.Request) -> bool:
        credentials = parse_basic_auth(request.headers.get("Authorization"))
        if credentials is None:
            return False
        return await self.check_credentials(*credentials, request)

    async def check_credentials(self, username: str, password: str, request: web.Request) -> bool:
        # Compare both halves always, so a wrong user name costs the same as a wrong password.
        user_ok = _same(username, self.username)
        pass_ok = _same(password, self.password)
        return user_ok and pass_ok

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in self.open_paths or request.method == "OPTIONS":
            return await handler(request)
        if await self.authenticate(request):
            return await handler(request)
        raise web.HTTPUnauthorized(
            headers={"WWW-Authenticate": 'Basic realm="comfyfleet"'},
            text="missing or wrong credentials",
        )


def auth_middlewares(server: ServerConfig) -> list[Middleware]:
    """The auth middleware for a role, or none when no credentials are set.

    A role bound beyond loopback refuses to start without credentials unless `insecure`.
    """
    if server.username and server.password:
        return [ConstantTimeBasicAuth(server.username, server.password.get_secret_value())]
    if not server.loopback and not server.insecure:
        raise ConfigError(
            f"refusing to listen on {server.host} without credentials: "
            "set API_USERNAME and API_PASSWORD, or pass --insecure"
        )
    return []
