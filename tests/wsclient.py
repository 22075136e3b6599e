"""Shared WebSocket test helpers: a small JSON client over trio-websocket, a raw
never-reading client for slow-consumer tests, and user/room setup shortcuts.

Waiting is always for frames (``trio.fail_after``), never fixed sleeps. To show that
nothing else is queued for a client, :meth:`WS.assert_idle` sends ``ping`` and checks
that ``pong`` is the very next frame (the server answers in order).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio
from conftest import User, make_room, make_user  # re-exported for older imports
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

WAIT = 5.0


def ws_base(http_url: str) -> str:
    return "ws://" + http_url.split("://", 1)[1]


def room_ws_url(http_url: str, code: str) -> str:
    return f"{ws_base(http_url)}/api/rooms/{code}/ws"


def user_ws_url(http_url: str) -> str:
    return f"{ws_base(http_url)}/api/ws"


class WS:
    """One JSON WebSocket client. A background task reads every frame as it comes, answers
    server ``ping`` frames with ``pong`` (unless ``auto_pong`` is off) and queues the rest
    for :meth:`recv`; it also records the close code."""

    def __init__(self, conn: WebSocketConnection, *, auto_pong: bool = True) -> None:
        self.conn = conn
        self.auto_pong = auto_pong
        self.pings_seen = 0
        self._pinged = trio.Event()
        self.close_code: int | None = None
        self._in, self._out = trio.open_memory_channel[str | bytes](math.inf)

    async def _pump(self) -> None:
        async with self._in:
            try:
                while True:
                    raw = await self.conn.get_message()
                    if self.auto_pong and isinstance(raw, str) and json.loads(raw).get("type") == "ping":
                        self.pings_seen += 1
                        self._pinged.set()
                        self._pinged = trio.Event()
                        await self.send({"type": "pong"})
                        continue
                    await self._in.send(raw)
            except ConnectionClosed as exc:
                self.close_code = exc.reason.code

    async def answered_pings(self, count: int, timeout: float = WAIT) -> None:
        """Wait until ``count`` more server pings have been answered."""
        target = self.pings_seen + count
        with trio.fail_after(timeout):
            while self.pings_seen < target:
                await self._pinged.wait()

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.conn.send_message(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame (other than an answered server ping)."""
        with trio.fail_after(timeout):
            try:
                raw = await self._out.receive()
            except trio.EndOfChannel:
                raise AssertionError(f"closed ({self.close_code}) while waiting for a frame") from None
        frame = json.loads(raw)
        assert isinstance(frame, dict), frame
        return frame

    async def expect(self, type_: str, timeout: float = WAIT) -> dict[str, Any]:
        frame = await self.recv(timeout)
        assert frame["type"] == type_, f"expected {type_!r}, got {frame}"
        return frame

    async def expect_error(self, code: str) -> dict[str, Any]:
        frame = await self.expect("error")
        assert frame["code"] == code, frame
        assert set(frame) == {"type", "code", "message"} and frame["message"], frame
        return frame

    async def until(self, type_: str, timeout: float = WAIT) -> dict[str, Any]:
        """Skip frames until one of ``type_`` arrives."""
        with trio.fail_after(timeout):
            while True:
                frame = await self.recv(math.inf)
                if frame["type"] == type_:
                    return frame

    async def assert_idle(self) -> None:
        """Nothing is queued for this client: a ping now is answered by the next frame."""
        await self.send({"type": "ping"})
        frame = await self.recv()
        assert frame == {"type": "pong"}, f"unexpected frame before pong: {frame}"

    async def frames_then_close(self, timeout: float = WAIT) -> tuple[list[dict[str, Any]], int | None]:
        """Every remaining frame until the server closes, and the close code."""
        frames: list[dict[str, Any]] = []
        with trio.fail_after(timeout):
            async for raw in self._out:
                frames.append(json.loads(raw))
        return frames, self.close_code

    async def closed(self, timeout: float = WAIT) -> int | None:
        return (await self.frames_then_close(timeout))[1]


@asynccontextmanager
async def connect(
    url: str,
    token: str | None = None,
    *,
    headers: list[tuple[str, str]] | None = None,
    auto_pong: bool = True,
) -> AsyncIterator[WS]:
    extra = list(headers or [])
    if token is not None:
        extra.append(("Authorization", f"Bearer {token}"))
    async with open_websocket_url(
        url, extra_headers=extra, message_queue_size=64, connect_timeout=WAIT, disconnect_timeout=2
    ) as conn, trio.open_nursery() as nursery:
        ws = WS(conn, auto_pong=auto_pong)
        nursery.start_soon(ws._pump)
        yield ws
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def join(http_url: str, code: str, token: str, **kw: Any) -> AsyncIterator[tuple[WS, dict[str, Any]]]:
    """Open a room socket and read its ``welcome``."""
    async with connect(room_ws_url(http_url, code), token, **kw) as ws:
        welcome = await ws.expect("welcome")
        yield ws, welcome


class RawSlowClient:
    """A WebSocket client on a plain socket with a tiny receive buffer that, after the
    handshake, never reads again: the server's writes to it pile up. (``trio.socket`` mirrors
    the ``socket`` module; the server runs in this same event loop, so no blocking calls.)"""

    def __init__(self) -> None:
        self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    async def open(self, url: str, token: str, rcvbuf: int = 4096) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect
        await self.sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n"
            "\r\n"
        ).encode()
        while request:
            request = request[await self.sock.send(request):]
        head = b""
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in head:  # the 101 response, and not one byte after it
                chunk = await self.sock.recv(1)
                assert chunk, "server closed during the handshake"
                head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head.decode().split("\r\n")[1:] if line)
        }
        assert headers.get("sec-websocket-accept") == base64.b64encode(digest).decode(), head

    def close(self) -> None:
        self.sock.close()


__all__ = [
    "WS", "RawSlowClient", "User", "connect", "join", "make_room", "make_user", "room_ws_url", "user_ws_url", "ws_base",
]
