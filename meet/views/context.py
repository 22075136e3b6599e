"""What every view needs from the current request: the services, the session, the client.

Views import these helpers; ``meet.app`` only wires the application together, so imports
flow one way (app → views → context).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from quart import current_app, g, has_websocket_context, request, websocket

from meet.accounts import Accounts, Session
from meet.admin import Admin
from meet.clock import Clock
from meet.config import Config
from meet.errors import Forbidden, Unauthorized
from meet.guests import Guests
from meet.heartbeat import Heartbeat
from meet.history import History
from meet.metrics import Metrics
from meet.presence import Presence
from meet.rooms import Rooms
from meet.sessions import SessionGuard
from meet.store import Store

SESSION_COOKIE = "meet_session"
GUEST_COOKIE = "meet_guest"  # a guest pass, sent only to its room's API paths
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class Services:
    """Everything the views need, built once by the server."""

    config: Config
    store: Store
    accounts: Accounts
    rooms: Rooms
    history: History
    presence: Presence
    clock: Clock
    sessions: SessionGuard  # open WebSockets per sign-in: limits and revocation
    guests: Guests  # guest passes
    heartbeat: Heartbeat  # pings every open WebSocket, ends the silent ones
    metrics: Metrics = field(default_factory=Metrics)  # Prometheus series (/metrics)
    admin: Admin | None = None  # the administration (/api/admin, /admin): set by build_services


def services() -> Services:
    """The services of the running app (inside a request)."""
    return current_app.extensions["meet"]  # type: ignore[no-any-return]


def incoming() -> Any:
    """The current HTTP request or WebSocket handshake."""
    return websocket if has_websocket_context() else request


def base_url() -> str:
    """Where people reach this server, for links and WebSocket addresses.

    Never taken from request headers (a forged Host would put reset tokens on the attacker's
    site): ``public_url`` when set, else the address this connection actually reached (the
    listening socket's own address and port) — or, on a loopback socket, the loopback name the
    browser used (``localhost``), which points at the same machine whatever the client sent.
    """
    config = services().config.server
    if config.public_url:
        return config.public_url.rstrip("/")
    listen = _socket_origin()
    host = _loopback_host()
    return f"{listen.split('://')[0]}://{host}" if host is not None else listen


def trusted_origins() -> frozenset[str]:
    """Origins a page of this server has: ``public_url``'s, else the reached address's.

    With ``public_url`` empty a page must be opened by the address meet listens on (an IP
    address, or a loopback name): a page opened by any other name is refused, since that is
    what a DNS-rebinding page looks like.
    """
    config = services().config.server
    if config.public_url:
        return frozenset({_origin_of(config.public_url)})
    listen = _socket_origin()
    scheme, _, netloc = listen.partition("://")
    port = netloc.rsplit(":", 1)[1]
    if _is_loopback(netloc.rsplit(":", 1)[0]):
        return frozenset({listen, *(f"{scheme}://{name}:{port}" for name in LOOPBACK_NAMES)})
    return frozenset({listen})


def _socket_origin() -> str:
    """``scheme://address:port`` of the local socket this request came in on."""
    scheme = "https" if services().config.server.tls_cert else "http"
    server = incoming().scope.get("server") or (services().config.server.host, 0)
    host, port = _unmapped(str(server[0])), server[1]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@functools.lru_cache(maxsize=64)  # parsing an address costs ~10 µs; a server has a few
def _unmapped(address: str) -> str:
    """``::ffff:192.0.2.1`` (IPv4 on a dual-stack ``::`` socket) as the browser sees it."""
    try:
        mapped = ipaddress.ip_address(address)
    except ValueError:
        return address
    ipv4 = getattr(mapped, "ipv4_mapped", None)
    return str(ipv4) if ipv4 is not None else address


def _loopback_host() -> str | None:
    """The Host header when it is a loopback name with this socket's port, on a loopback socket."""
    listen = _socket_origin().partition("://")[2]
    address, _, port = listen.rpartition(":")
    host = str(incoming().headers.get("Host", "")).lower()
    name, _, host_port = host.rpartition(":")
    if _is_loopback(address) and name in LOOPBACK_NAMES and host_port == port:
        return host
    return None


@functools.lru_cache(maxsize=64)
def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def client_address() -> str:
    return str(incoming().remote_addr or "unknown")


async def current_session() -> Session | None:
    """The session behind the bearer token or the cookie (cached per request)."""
    if "session" not in g:
        token = bearer_token() or incoming().cookies.get(SESSION_COOKIE)
        g.session = await services().accounts.authenticate(token) if token else None
    return g.session  # type: ignore[no-any-return]


async def require_session() -> Session:
    session = await current_session()
    if session is None:
        raise Unauthorized("Sign in first.", code="unauthorized")
    return session


def bearer_token() -> str | None:
    scheme, _, token = incoming().headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def check_same_origin() -> None:
    """Refuse cross-site requests riding on the cookie; bearer clients carry no ambient authority.

    Applies to state-changing HTTP requests and to every WebSocket handshake (a WebSocket is
    not covered by the browser's same-origin policy).
    """
    if bearer_token() is not None:
        return
    headers = incoming().headers
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Forbidden("Cross-site requests are not allowed.", code="cross_origin")
    origin = headers.get("Origin")
    if origin is not None and origin.rstrip("/").lower() not in trusted_origins():
        raise Forbidden("Cross-site requests are not allowed.", code="cross_origin")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    # A WebSocket handshake's own URL is ws(s)://, but the page's Origin is http(s)://.
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}".lower()
