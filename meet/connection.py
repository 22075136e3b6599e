"""The send side of one WebSocket client, as the rooms and presence logic see it.

Rooms never touch a socket: they hand ready WebSocket frames (:mod:`meet.wire`) to
:meth:`Connection.send`, which never blocks. When nothing is queued and the socket offers a fast
path (:attr:`Connection.direct`, see :mod:`meet.hypercorn_ws`), the frame is written at once, in
one non-blocking ``send()``; otherwise it joins the client's bounded queue, which
``meet.signaling``'s writer drains into the socket, several frames per write. A client whose
queue is full is too slow to keep up and is aborted, so one stalled browser cannot slow a whole
room down.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import trio

from meet import wire
from meet.protocol import Message

# Close codes (documented in docs/protocol.md). 4xxx mirror the HTTP statuses they resemble.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TIMEOUT = 4408
CLOSE_ENDED = 4410
CLOSE_TOO_SLOW = 4429


@dataclass(frozen=True)
class UserRef:
    """Who is behind a connection, as shown to others.

    A guest (someone who joined a meeting by its link with only a name) has no account: its
    ``id`` is the negative of its guest record's id, so members and guests never share an id
    in a room, and ``username`` is the name it gave.
    """

    id: int
    username: str
    guest: bool = False

    def __post_init__(self) -> None:
        if self.guest != (self.id < 0):
            raise ValueError("guests have negative ids, members positive ones")

    @property
    def guest_id(self) -> int:
        """The guest record's id (guests only)."""
        return -self.id

    def public(self) -> dict[str, object]:
        if self.guest:
            return {"id": self.id, "username": self.username, "guest": True}
        return {"id": self.id, "username": self.username}


class Connection:
    """A client's outgoing queue plus the means to close it (gracefully or at once).

    The queue is bounded twice: by ``queue_size`` frames and by ``queue_bytes`` bytes of
    frames, so a slow recipient of large ``signal`` frames cannot pin hundreds of MiB.
    Exceeding either aborts the connection with 4429. Frames the socket took at once (the
    fast path) never count: they are in the kernel's buffer, not ours.
    """

    def __init__(
        self,
        user: UserRef,
        queue_size: int,
        *,
        queue_bytes: int = 4 * 1024 * 1024,
        session_id: int | None = None,
        address: str = "",
    ) -> None:
        self.id = secrets.token_urlsafe(9)
        self.user = user
        self.session_id = session_id  # the sign-in behind it: revoking it closes this connection
        self.address = address
        self.frames_in, self.frames_out = trio.open_memory_channel[bytes](queue_size)
        self.queue_bytes = queue_bytes
        self.queued_bytes = 0  # bytes queued (or being written by the writer), not yet in the socket
        # The socket's fast path, once accepted: sends what it can of a frame now and says how
        # much (None: not now — queue it). See meet.hypercorn_ws.FrameSink.try_write.
        self.direct: Callable[[bytes], int | None] | None = None
        self.scope = trio.CancelScope()
        self.aborted = trio.Event()  # set by abort(): the loop may still be stuck in a send
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def send(self, message: Message) -> None:
        """Send a message without blocking; a full queue aborts the connection."""
        self.send_frame(wire.frame(message))

    def send_frame(self, frame: bytes) -> None:
        """Send a ready frame (a broadcast builds it once for everyone) without blocking."""
        if self.closing:
            return
        if self.queued_bytes == 0 and self.direct is not None:  # nothing ahead of it: try now
            sent = self.direct(frame)
            if sent == len(frame):
                return
            if sent:
                frame = frame[sent:]  # the rest of a cut frame: first in the queue, alone
        if self.queued_bytes + len(frame) > self.queue_bytes:
            self.abort(CLOSE_TOO_SLOW, "too slow: messages were piling up")
            return
        try:
            self.frames_in.send_nowait(frame)
        except trio.WouldBlock:
            self.abort(CLOSE_TOO_SLOW, "too slow: messages were piling up")
        except trio.ClosedResourceError:
            pass
        else:
            self.queued_bytes += len(frame)

    def delivered(self, size: int) -> None:
        """The writer wrote ``size`` bytes of queued frames: they no longer count against the queue."""
        self.queued_bytes -= size

    def finish(self, code: int, reason: str) -> None:
        """Close after the frames already queued are delivered (e.g. ``kicked`` first)."""
        if not self.closing:
            self.close_code, self.close_reason = code, reason
            self.frames_in.close()

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping whatever is queued."""
        if not self.closing:
            self.close_code, self.close_reason = code, reason
            self.frames_in.close()
        self.aborted.set()
        self.scope.cancel()
