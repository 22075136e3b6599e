"""What every view needs from the current request: the services, the session, the client.

Views import these helpers; ``meet.app`` only wires the application together, so imports
flow one way (app → views → context).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from quart import current_app, g, has_websocket_context, request, websocket

from meet.accounts import Accounts, Session
from meet.clock import Clock
from meet.config import Config
from meet.errors import Forbidden, Unauthorized
from meet.history import History
from meet.presence import Presence
from meet.rooms import Rooms
from meet.sessions import SessionGuard
from meet.store import Store

SESSION_COOKIE = "meet_session"


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


def services() -> Services:
    """The services of the running app (inside a request)."""
    return current_app.extensions["meet"]  # type: ignore[no-any-return]


def incoming() -> Any:
    """The current HTTP request or WebSocket handshake."""
    return websocket if has_websocket_context() else request


def base_url() -> str:
    """Where people reach this server: ``public_url``, else this request's own origin."""
    public = services().config.server.public_url
    return public.rstrip("/") if public else str(incoming().host_url).rstrip("/")


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
    if origin is not None and origin.rstrip("/") != _origin_of(base_url()):
        raise Forbidden("Cross-site requests are not allowed.", code="cross_origin")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    # A WebSocket handshake's own URL is ws(s)://, but the page's Origin is http(s)://.
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"
