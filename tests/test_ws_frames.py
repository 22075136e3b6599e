"""Ready-made WebSocket frames (meet.wire) and how they reach the socket (meet.hypercorn_ws):
frames parse as RFC 6455 text frames, permessage-deflate is never negotiated, and a client that
stops reading gets every frame whole and in order once it reads again — several frames per
write, a frame cut by a full socket finished before Hypercorn's own pong, the close frame last."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from conftest import Outbox, User, make_config, make_room, make_user
from test_origin import _self_signed
from trio_websocket import open_websocket_url
from wsclient import WAIT, join, room_ws_url
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import TextMessage
from wsproto.frame_protocol import Opcode

from meet import hypercorn_ws, wire
from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer, open_server
from meet.views.sockets import _quiet_cancellation


@pytest.fixture
def config(tmp_path: Path) -> Config:
    rooms = {"send_queue_bytes": 64 * 1024 * 1024, "message_rate": 1000, "message_burst": 1000}
    return make_config(tmp_path, rooms=rooms, server={"send_timeout": 120.0})


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frames_parse_as_rfc6455_text(size: int) -> None:
    text = ("é" + "x" * size)[:size]  # multi-byte UTF-8 at the start: lengths count bytes
    frames = Connection(ConnectionType.CLIENT)  # frames only, no handshake
    frames.receive_data(wire.text_frame(text) + wire.text_frame("next"))
    events = list(frames.events())
    assert [type(e) for e in events] == [TextMessage, TextMessage], events
    assert events[0].data == text and events[0].message_finished
    assert events[1].data == "next"
    assert wire.payloads(wire.text_frame(text) + wire.text_frame("next")) == [text, "next"]


class RawClient:
    """A WebSocket client on a plain socket with a small receive buffer: it reads only when
    told, so the server's writes to it pile up in between."""

    def __init__(self) -> None:
        self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.buffer = b""
        self.headers: dict[str, str] = {}

    async def open(self, url: str, token: str, extra: str = "") -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        await self.sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n{extra}\r\n"
        ).encode()
        await self.sock.send(request)
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in self.buffer:
                chunk = await self.sock.recv(4096)
                assert chunk, "server closed during the handshake"
                self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        lines = head.decode().split("\r\n")[1:]
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}

    async def send(self, opcode: int, payload: bytes) -> None:
        """One masked client frame."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        await self.sock.send(struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked)

    async def _need(self, size: int) -> None:
        while len(self.buffer) < size:
            chunk = await self.sock.recv(1 << 16)
            if not chunk:
                raise AssertionError(f"connection ended with {len(self.buffer)} of {size} bytes")
            self.buffer += chunk

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload). Server frames are unmasked and whole."""
        await self._need(2)
        first, second = self.buffer[0], self.buffer[1]
        assert first & 0x80 and not first & 0x70, f"not a final, uncompressed frame: {first:#x}"
        assert not second & 0x80, "server frames are never masked"
        size, at = second & 0x7F, 2
        if size == 126:
            await self._need(4)
            size, at = struct.unpack_from("!H", self.buffer, 2)[0], 4
        elif size == 127:
            await self._need(10)
            size, at = struct.unpack_from("!Q", self.buffer, 2)[0], 10
        await self._need(at + size)
        payload, self.buffer = self.buffer[at : at + size], self.buffer[at + size :]
        return first & 0x0F, payload

    async def text(self) -> dict[str, Any]:
        opcode, payload = await self.frame()
        assert opcode == Opcode.TEXT, (opcode, payload[:80])
        frame: dict[str, Any] = json.loads(payload)
        return frame

    def close(self) -> None:
        self.sock.close()


async def test_permessage_deflate_is_never_negotiated(server: RunningServer, client: httpx.AsyncClient,
                                                      alice: User) -> None:
    room = await make_room(client, alice)
    raw = RawClient()
    try:
        offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        await raw.open(room_ws_url(server.url, room), alice.token, offer)
        assert "sec-websocket-extensions" not in raw.headers, raw.headers
        with trio.fail_after(WAIT):
            assert (await raw.text())["type"] == "welcome"  # RSV1 clear: checked by frame()
    finally:
        raw.close()


async def test_a_stalled_reader_gets_every_frame_whole_and_in_order_then_the_close(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuts: list[int] = []
    writes: list[int] = []
    finish_cut, write = hypercorn_ws.FrameSink._finish_cut, hypercorn_ws.FrameSink.write

    async def counting_cut(self: hypercorn_ws.FrameSink, data: bytes) -> None:
        cuts.append(len(data))
        await finish_cut(self, data)

    async def counting_write(self: hypercorn_ws.FrameSink, data: bytes) -> None:
        writes.append(len(data))
        await write(self, data)

    monkeypatch.setattr(hypercorn_ws.FrameSink, "_finish_cut", counting_cut)
    monkeypatch.setattr(hypercorn_ws.FrameSink, "write", counting_write)
    room = await make_room(client, alice)
    blob = "x" * 300_000  # 20 of them: ~6 MB, far past the kernel's buffers for bob's socket
    async with join(server.url, room, alice.token) as (a, _):
        bob_ws = RawClient()
        try:
            await bob_ws.open(room_ws_url(server.url, room), bob.token)
            bob_id = (await a.expect("peer-joined"))["peer"]["peer_id"]
            for n in range(20):
                await a.send({"type": "signal", "to": bob_id, "data": {"n": n, "blob": blob}})
            await a.assert_idle()  # every signal was taken by the server
            await bob_ws.send(Opcode.PING, b"are you there")  # Hypercorn answers it, between frames
            await a.send({"type": "kick", "peer_id": bob_id})
            await a.assert_idle()  # the kick was handled: bob's queue ends with `kicked` and the close
            with trio.fail_after(30):
                assert (await bob_ws.text())["type"] == "welcome"
                seen: list[Any] = []
                while True:
                    opcode, payload = await bob_ws.frame()
                    if opcode == Opcode.CLOSE:
                        break
                    frame = json.loads(payload) if opcode == Opcode.TEXT else (opcode, payload)
                    seen.append(frame)
            assert (await a.until("peer-left"))["peer_id"] == bob_id
        finally:
            bob_ws.close()
    assert struct.unpack("!H", payload[:2])[0] == 4403  # removed by the host: after every frame
    signals = [f["data"]["n"] for f in seen if isinstance(f, dict) and f["type"] == "signal"]
    assert signals == list(range(20))
    assert all(f["data"]["blob"] == blob for f in seen if isinstance(f, dict) and f["type"] == "signal")
    assert (Opcode.PONG, b"are you there") in seen
    assert seen[-1] == {"type": "kicked"}, seen[-3:]
    assert cuts, "no frame was cut by a full socket: the test did not stall the reader"
    assert len(writes) < len(seen), (len(writes), len(seen))  # queued frames went out together


async def test_frames_over_tls_take_the_stream_path(tmp_path: Path, clock: FakeClock) -> None:
    """On TLS the sink has no direct route (the bytes must be encrypted): frames go through the
    stream, and a room works as on plain TCP."""
    cert, key = _self_signed(tmp_path)
    config = make_config(tmp_path, server={"tls_cert": str(cert), "tls_key": str(key)})
    context = ssl.create_default_context(cafile=str(cert))
    async with (
        open_server(config, clock=clock) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10, verify=context) as c,
    ):
        outbox = Outbox(config.outbox_dir)
        alice, bob = await make_user(c, outbox, "alice"), await make_user(c, outbox, "bob")
        room = await make_room(c, alice)
        url = server.url.replace("https://", "wss://") + f"/api/rooms/{room}/ws"

        async def member(user: User) -> Any:
            headers = [("Authorization", f"Bearer {user.token}")]
            return open_websocket_url(url, ssl_context=context, extra_headers=headers, connect_timeout=WAIT)

        async with await member(alice) as a, await member(bob) as b:
            assert json.loads(await a.get_message())["type"] == "welcome"
            assert json.loads(await b.get_message())["type"] == "welcome"
            assert json.loads(await a.get_message())["type"] == "peer-joined"
            await a.send_message(json.dumps({"type": "chat", "text": "over TLS " + "y" * 1000}))
            for ws in (a, b):
                with trio.fail_after(WAIT):
                    frame = json.loads(await ws.get_message())
                assert frame["type"] == "chat" and frame["message"]["text"].startswith("over TLS"), frame


async def test_a_closed_socket_leaves_no_traceback_of_its_cancellation_and_no_sink_in_its_scope(
    server: RunningServer, client: httpx.AsyncClient, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the client's close cancels keeps no frames alive (they wait for a full collection,
    which stalls every room); a real error keeps its traceback for the log."""
    detached = trio.Event()
    sinks: list[hypercorn_ws.FrameSink] = []
    detach = hypercorn_ws.FrameSink.detach

    def recording(self: hypercorn_ws.FrameSink) -> None:
        detach(self)
        sinks.append(self)
        detached.set()

    monkeypatch.setattr(hypercorn_ws.FrameSink, "detach", recording)
    room = await make_room(client, alice)
    async with join(server.url, room, alice.token) as (a, _):
        await a.assert_idle()
    with trio.fail_after(WAIT):
        await detached.wait()  # the handler's end, in the server's task
    assert hypercorn_ws.EXTENSION not in sinks[0].stream.scope["extensions"]

    caught: list[BaseException] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.sleep(1)
        except trio.Cancelled as exc:
            caught.append(exc)
            raise
    cancelled = BaseExceptionGroup("outer", [BaseExceptionGroup("nursery", [caught[0]])])
    try:
        raise cancelled
    except BaseExceptionGroup:
        pass
    assert cancelled.__traceback__ is not None and caught[0].__traceback__ is not None
    assert _quiet_cancellation(cancelled) is caught[0]
    assert caught[0].__traceback__ is None
    try:
        raise ValueError("a bug")
    except ValueError as bug:
        mixed = BaseExceptionGroup("nursery", [bug, caught[0]])
    assert _quiet_cancellation(mixed) is mixed
    assert mixed.exceptions[0].__traceback__ is not None  # kept for the log
