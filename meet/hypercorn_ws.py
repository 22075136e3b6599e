"""Signaling frames written straight into Hypercorn's connection: a pinned, guarded hook.

Why. Through ASGI, every frame to every recipient takes the whole path Hypercorn gives it:
Quart's ``websocket.send`` (accept check, signal), an ASGI message dict, wsproto framing,
``H11Protocol.stream_send``, then ``TCPServer.protocol_send`` (a lock, a shielded cancel scope,
``send_all``, each with its own scheduler round trip), once per recipient: about 250 µs of CPU
per delivery measured here, where one ``send()`` of ready bytes costs a few µs. A broadcast's
frame is the same bytes for every member (:mod:`meet.wire`), so meet writes those bytes itself.

How. :func:`install` wraps two Hypercorn 0.18 methods:

- ``Handshake.accept`` never negotiates permessage-deflate: signaling frames are small JSON,
  compressing them per connection costs more CPU (and ~300 KiB of zlib state per socket) than it
  saves, and a compressed connection could not share a broadcast's bytes.
- ``WSStream._accept`` puts a :class:`FrameSink` for the stream in the scope's extensions
  (``"meet.frames"``) once the handshake is answered; :func:`sink_of` finds it.

A sink writes ready frames two ways. :meth:`FrameSink.write` sends them as the stream's
``Data`` (what wsproto's frames become anyway), so HTTP/1.1, HTTP/2 and TLS all work and
Hypercorn's lock orders them with its own pongs and close frame. :meth:`FrameSink.try_write`
is the fast path a broadcast uses: on a plain-TCP HTTP/1.1 connection that nobody is writing to,
one non-blocking ``send()`` straight from the caller, with no task switch. Hypercorn's send
lock is swapped at accept time for a one-token semaphore (same ``async with`` use), so that
when the kernel takes only part of a frame, the sink can hold the connection for its writer
task, which sends the rest before Hypercorn may write anything else — a frame is never cut by
a pong.

The alternative, meet's own WebSocket endpoint in front of Hypercorn on the same port, would
have to re-implement the HTTP/1.1 upgrade, TLS, HTTP/2's extended CONNECT, timeouts and access
logs that Hypercorn already does well; this hook keeps all of that and replaces only the write.
:func:`install` refuses to run on a Hypercorn whose internals it was not written against
(tests/test_ws_frames.py exercises every branch), and the whole hook is these ~150 lines.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import trio
from hypercorn.protocol.events import Data
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import ASGIWebsocketState, Handshake, WSStream
from hypercorn.trio.tcp_server import TCPServer

EXTENSION = "meet.frames"  # the scope extension holding the stream's FrameSink

_original_accept = Handshake.accept
_original_stream_accept = WSStream._accept


class FrameSink:
    """Writes ready WebSocket frames to one Hypercorn WebSocket stream."""

    def __init__(self, stream: WSStream) -> None:
        self.stream = stream
        self._tcp, self._socket = _direct_route(stream)
        self._gate: trio.Semaphore | None = None
        if self._tcp is not None and not self._tcp.send_lock.locked():
            # Hypercorn only ever uses ``async with self.send_lock``: a semaphore does the same,
            # and, unlike a Lock, may be taken by one task and given back by another.
            self._gate = trio.Semaphore(1)
            self._tcp.send_lock = self._gate  # type: ignore[assignment]
        self.held = False  # a frame was cut: the rest must go out before anything else

    @property
    def open(self) -> bool:
        return not self.stream.closed and self.stream.state is ASGIWebsocketState.CONNECTED

    def detach(self) -> None:
        """The app is done with the socket: leave the scope, so that the stream (which holds
        the scope) and this sink (which holds the stream) are no reference cycle."""
        extensions: dict[str, Any] = self.stream.scope.get("extensions") or {}
        if extensions.get(EXTENSION) is self:
            del extensions[EXTENSION]

    def try_write(self, data: bytes) -> int | None:
        """Send what the kernel takes of ``data`` now, without blocking.

        ``None``: nothing was tried (no fast path here, or a write is in progress) — queue it.
        Otherwise the number of bytes sent; if fewer than ``len(data)``, the connection is
        held for :meth:`write` (which the caller must call next with the rest).
        """
        gate = self._gate
        if gate is None or gate.value == 0 or self._socket is None or not self.open:
            return None
        try:
            sent: int = self._socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._socket = None  # the connection is gone: Hypercorn's reader notices and ends it
            return None
        if sent < len(data):
            gate.acquire_nowait()
            self.held = True
        return sent

    async def write(self, data: bytes) -> None:
        """Send ``data`` (whole frames, or the rest of a frame cut by :meth:`try_write`)."""
        if self.held:
            await self._finish_cut(data)
        elif self.open:
            await self.stream.send(Data(stream_id=self.stream.stream_id, data=data))

    async def _finish_cut(self, data: bytes) -> None:
        assert self._tcp is not None
        try:
            await self._tcp.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._socket = None
        except BaseException:
            self.abandon()  # cancelled halfway through the rest of a frame
            raise
        finally:
            self._release()

    def abandon(self) -> None:
        """A cut frame will never be finished: end the TCP connection at once.

        The peer would misread whatever came after half a frame (even a close frame), so the
        connection is shut down instead; Hypercorn's reader sees the end and cleans up.
        """
        if self.held and self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket = None
        self._release()

    def _release(self) -> None:
        if self.held and self._gate is not None:
            self.held = False
            self._gate.release()


def _direct_route(stream: WSStream) -> tuple[TCPServer | None, Any]:
    """The TCP server and stdlib socket under ``stream``, when it is plain TCP over HTTP/1.1."""
    protocol = getattr(stream.send, "__self__", None)
    if not isinstance(protocol, H11Protocol):
        return None, None  # HTTP/2: frames share the connection with other streams
    tcp = getattr(protocol.send, "__self__", None)
    if not isinstance(tcp, TCPServer) or not isinstance(tcp.stream, trio.SocketStream):
        return None, None  # TLS: the bytes must go through the SSL stream
    return tcp, tcp.stream.socket._sock


def sink_of(scope: dict[str, Any]) -> FrameSink | None:
    """The sink of an accepted WebSocket (``None`` before ``accept`` or off Hypercorn)."""
    sink = scope.get("extensions", {}).get(EXTENSION)
    return sink if isinstance(sink, FrameSink) else None


def _accept_plain(self: Handshake, subprotocol: str | None, additional_headers: Any) -> Any:
    self.extensions = None  # never permessage-deflate (see the module docstring)
    return _original_accept(self, subprotocol, additional_headers)


async def _stream_accept(self: WSStream, message: Any) -> None:
    await _original_stream_accept(self, message)
    extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
    extensions[EXTENSION] = FrameSink(self)


def install() -> None:
    """Put the hook in place (idempotent); refuse a Hypercorn it was not written for."""
    needed = (
        callable(getattr(Handshake, "accept", None)),
        callable(getattr(WSStream, "_accept", None)),
        hasattr(ASGIWebsocketState, "CONNECTED"),
        callable(getattr(H11Protocol, "stream_send", None)),
        callable(getattr(TCPServer, "protocol_send", None)),
    )
    if not all(needed):
        raise RuntimeError("meet's WebSocket frame hook does not fit this Hypercorn: install hypercorn 0.18")
    Handshake.accept = _accept_plain  # type: ignore[method-assign]
    WSStream._accept = _stream_accept  # type: ignore[method-assign]
