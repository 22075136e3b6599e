"""The send side of one WebSocket client, as the rooms and presence logic see it.

Rooms never touch a socket: they put encoded frames into the client's bounded queue with
:meth:`Connection.send`, which never blocks. A client whose queue is full is too slow to keep
up and is aborted, so one stalled browser cannot slow a whole room down. ``meet.signaling``
owns the loop that drains the queue into the real WebSocket.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import trio

from meet.protocol import Message, encode

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
    encoded JSON (characters, which is bytes for the ASCII of almost every frame), so a slow
    recipient of large ``signal`` frames cannot pin hundreds of MiB. Exceeding either aborts
    the connection with 4429.
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
        self.frames_in, self.frames_out = trio.open_memory_channel[str](queue_size)
        self.queue_bytes = queue_bytes
        self.queued_bytes = 0  # encoded frames queued and not yet written to the socket
        self.scope = trio.CancelScope()
        self.aborted = trio.Event()  # set by abort(): the loop may still be stuck in a send
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def send(self, message: Message) -> None:
        """Queue a message without blocking; a full queue aborts the connection."""
        self.send_frame(encode(message))

    def send_frame(self, frame: str) -> None:
        """Queue an already encoded frame (a broadcast encodes once for everyone)."""
        if self.closing:
            return
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

    def delivered(self, frame: str) -> None:
        """The writer wrote ``frame`` to the socket: it no longer counts against the queue."""
        self.queued_bytes -= len(frame)

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
