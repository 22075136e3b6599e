"""Raw HTTP/1.1 on one keep-alive connection: what httpx cannot show.

A client may send a request's headers and its body in separate writes. When meet answers
before the body has arrived (404, 405, 401, 413, 415), the next request on the same
connection must still be answered — or the connection must be closed — never left hanging.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
import trio
from conftest import Outbox, User

from meet.server import RunningServer

BODY = b'{"email":"x"}\n'  # 14 bytes
TIMEOUT = 10


class RawConnection:
    """One TCP connection speaking HTTP/1.1 by hand."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.buffer = b""

    async def send_headers(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        await self.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def read_response(self) -> tuple[int, dict[str, str], bytes] | None:
        """One response (status, headers, body), or None when the server closed the connection."""
        while b"\r\n\r\n" not in self.buffer:
            if not await self._receive():
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not await self._receive():
                return None
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    async def _receive(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:  # reset by the server: closed, as far as we care
            return False
        self.buffer += data
        return bool(data)


async def early_answer_then_health(
    server: RunningServer, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, int | None]:
    """Headers, a pause, the body; then GET /api/health on the same connection.

    Returns the first status and the second one (None: the server closed the connection,
    which a client handles by reconnecting). Hanging fails the test through the timeout.
    """
    url = urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(url.hostname, url.port)
        async with stream:
            conn = RawConnection(stream, url.netloc)
            await conn.send_headers(method, path, {"Content-Length": str(len(body)), **headers})
            await trio.sleep(0.02)  # the body arrives in a later packet: that is the case under test
            await stream.send_all(body)
            first = await conn.read_response()
            assert first is not None, "no answer to the first request"
            if first[1].get("connection", "").lower() == "close":
                assert await conn.read_response() is None
                return first[0], None
            await conn.send_headers("GET", "/api/health", {})
            second = await conn.read_response()
            return first[0], None if second is None else second[0]


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/api/nope", JSON, 404),
        ("PUT", "/api/auth/reset", JSON, 405),
        ("POST", "/api/rooms/abc-defg-hij/join", JSON, 401),  # needs a session: refused before reading
        ("POST", "/api/auth/forgot", {"Content-Type": "text/plain"}, 400),
    ],
)
async def test_early_answer_keeps_the_connection_usable(
    server: RunningServer, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    first, second = await early_answer_then_health(server, method, path, headers, BODY)
    assert first == status
    assert second == 200  # a small body is read to its end: the connection stays usable


async def test_early_answer_with_session_keeps_the_connection_usable(
    server: RunningServer, alice: User
) -> None:
    """A route that refuses before reading (a room that does not exist) on a signed-in request."""
    headers = {**JSON, **alice.auth}
    first, second = await early_answer_then_health(
        server, "POST", "/api/rooms/zzz-zzzz-zzz/join", headers, BODY
    )
    assert first == 404
    assert second == 200


async def test_too_large_body_keeps_the_connection_usable(server: RunningServer) -> None:
    """413 is decided from Content-Length alone; the body that follows must not hang the next request."""
    url = urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    body = b"x" * (65 * 1024)
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(url.hostname, url.port)
        async with stream:
            conn = RawConnection(stream, url.netloc)
            await conn.send_headers("POST", "/api/auth/login", {**JSON, "Content-Length": str(len(body))})
            await trio.sleep(0.02)
            with trio.move_on_after(2):  # the server may stop reading and close: that is fine
                try:
                    await stream.send_all(body)
                except trio.BrokenResourceError:
                    pass
            first = await conn.read_response()
            assert first is not None and first[0] == 413
            if first[1].get("connection", "").lower() == "close":
                return
            await conn.send_headers("GET", "/api/health", {})
            second = await conn.read_response()
            assert second is None or second[0] == 200


async def test_body_in_one_write_still_keeps_alive(server: RunningServer, outbox: Outbox) -> None:
    """The common case is unchanged: after a 404 whose body came with the headers, keep-alive works."""
    url = urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(url.hostname, url.port)
        async with stream:
            conn = RawConnection(stream, url.netloc)
            head = f"POST /api/nope HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: {len(BODY)}\r\n\r\n"
            await stream.send_all(head.encode() + BODY)
            first = await conn.read_response()
            assert first is not None and first[0] == 404
            await conn.send_headers("GET", "/api/health", {})
            second = await conn.read_response()
            assert second is not None and second[0] == 200


async def test_http2_early_answer_does_not_stop_the_server(server: RunningServer) -> None:
    """HTTP/2 with prior knowledge: a 413 before a large body has arrived (Hypercorn's KeyError
    on the DATA frames of a forgotten stream used to stop the whole server)."""
    async with httpx.AsyncClient(base_url=server.url, http1=False, http2=True, timeout=TIMEOUT) as c:
        r = await c.post("/api/auth/login", content=b"x" * (200 * 1024), headers=JSON)
        assert (r.http_version, r.status_code) == ("HTTP/2", 413)
        assert (await c.post("/api/nope", content=BODY, headers=JSON)).status_code == 404
        assert (await c.get("/api/health")).status_code == 200
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as c:
        assert (await c.get("/api/health")).status_code == 200
