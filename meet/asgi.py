"""ASGI middleware between Hypercorn and the application.

``BodyDrain``: when the app answers before the request body has arrived (404, 405, 401, 413, …)
Hypercorn 0.18 cannot reuse the connection: ``H11Protocol._maybe_recycle`` sees the client still
in SEND_BODY and closes the connection from inside the application's task; quart-trio cancels
that task as soon as it sees the ``http.disconnect`` queued by the same call, so the close is
cancelled at its first checkpoint (``TCPServer._close`` → ``send_eof``) and the connection is left
open, answering nothing more. The middleware reads the rest of a small body before the answer
goes out, so the connection is recycled normally; a body too large or too slow to read gets
``Connection: close``, and the final send is shielded so the close really happens.

``ForwardedFor``: behind ``proxy_hops`` trusted proxies, take the client address and scheme from
X-Forwarded-For / X-Forwarded-Proto. Unlike Hypercorn's ProxyFix it never takes
X-Forwarded-Host: the host a link or an origin check uses comes from the configuration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from copy import copy
from typing import Any

import trio

# Hypercorn types scopes and messages as TypedDicts per event; this module handles them generically.
Scope = Any
Message = Any
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Exchange:
    """One HTTP request: what the app has received of its body, and the answer going out."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int, timeout: float) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.timeout = timeout
        self.done = trio.Event()  # the whole body (or a disconnect) was received
        self.received = 0
        self.declared, chunked = _framing(scope)
        self.http1 = scope.get("http_version", "1.1") in ("1.0", "1.1")
        if self.http1 and not self.declared and not chunked:
            # No Content-Length (or 0) and no Transfer-Encoding: an HTTP/1 request without a
            # body (RFC 9112 6.3), which h11 ended with its headers, so Hypercorn recycles the
            # connection whenever the answer goes. Nothing to drain: most requests (every GET)
            # skip the nursery and task a drain costs.
            self.done.set()

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.done.set()
        elif message["type"] == "http.disconnect":
            self.done.set()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self.done.is_set():
            await self._drain()
            if (
                not self.done.is_set() and self.http1
            ):  # HTTP/2 has no Connection header: its streams end alone
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            # Hypercorn recycles or closes the connection inside this call: never let the
            # app's cancellation (quart-trio cancels on http.disconnect) cut it half-way.
            with trio.CancelScope(shield=True):
                await self._send(message)
            return
        await self._send(message)

    async def _drain(self) -> None:
        """Read the rest of a body the app did not want, if it is small and comes soon."""
        if self.declared is not None and self.declared > self.limit:
            return
        # The app may be receiving too (quart-trio reads the body in its own task): whoever
        # gets the last message sets ``done``.
        with trio.move_on_after(self.timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pull, nursery.cancel_scope)
                await self.done.wait()
                nursery.cancel_scope.cancel()

    async def _pull(self, scope: trio.CancelScope) -> None:
        while not self.done.is_set() and self.received <= self.limit:
            await self.receive()
        scope.cancel()


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """(Content-Length or None, whether a Transfer-Encoding is given) of a request."""
    length, chunked = None, False
    for name, value in scope.get("headers", []):
        name = name.lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked


class BodyDrain:
    """Finish reading request bodies the app answered early, so keep-alive keeps working."""

    def __init__(self, app: ASGIApp, *, limit: int, timeout: float = 10.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send, self.limit, self.timeout)
        await self.app(scope, exchange.receive, exchange.send)


class ForwardedFor:
    """Client address and scheme from the ``hops``-th last X-Forwarded-For / -Proto value."""

    def __init__(self, app: ASGIApp, hops: int) -> None:
        self.app = app
        self.hops = hops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = copy(scope)
            client = _trusted_value(scope, b"x-forwarded-for", self.hops)
            scheme = _trusted_value(scope, b"x-forwarded-proto", self.hops)
            if client is not None:
                scope["client"] = (client, 0)
            if scheme in ("http", "https"):
                secure = scheme == "https"
                if scope["type"] == "websocket":
                    scope["scheme"] = "wss" if secure else "ws"
                else:
                    scope["scheme"] = scheme
        await self.app(scope, receive, send)


def _trusted_value(scope: Scope, name: bytes, hops: int) -> str | None:
    """The value the outermost trusted proxy added (proxies append to the list)."""
    values: list[str] = []
    for header, value in scope.get("headers", []):
        if header.lower() == name:
            values.extend(part.decode("latin-1").strip() for part in value.split(b","))
    return values[-hops] if hops and len(values) >= hops else None
