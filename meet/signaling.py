"""WebSocket clients: one loop per client, fed by its bounded action queue.

For each client two tasks share one nursery: the reader parses frames at the edge and
dispatches them, and the writer drains the client's queue into the socket (all that is queued
in one write); the server's :class:`~meet.heartbeat.Heartbeat` pings each client and drops
those that went silent (:meth:`ClientLoop.beat`). The socket is anything
with ``receive/write/close`` coroutines (``write`` takes ready WebSocket frames, see
:mod:`meet.wire`), so this module knows no web framework.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from meet import protocol as p
from meet.authz import Action
from meet.config import RoomsConfig
from meet.connection import CLOSE_POLICY, CLOSE_TIMEOUT, Connection
from meet.errors import MeetError
from meet.heartbeat import Heartbeat
from meet.live import Participant
from meet.media import RELAY_PEER
from meet.presence import Presence
from meet.rooms import Rooms

log = logging.getLogger("meet.signaling")

MAX_STRIKES = 20  # consecutive refused frames before a client counts as abusive
BATCH_BYTES = 256 * 1024  # at most this much of the queue in one write (more waits for the next)


class Socket(Protocol):
    async def receive(self) -> str | bytes: ...
    async def write(self, frames: bytes) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


class TokenBucket:
    """``rate`` frames per second sustained, ``burst`` at once (trio's clock)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.stamp = trio.current_time()

    def allow(self) -> bool:
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


Handler = Callable[[p.Message], Awaitable[None]]


class ClientLoop:
    """Runs one client until it leaves, is dropped, or the server shuts down."""

    def __init__(
        self,
        socket: Socket,
        conn: Connection,
        settings: RoomsConfig,
        parse: Callable[[str | bytes], p.Message],
        handle: Handler,
        heartbeat: Heartbeat,
        throttled: Callable[[str], None] | None = None,
    ) -> None:
        self.socket, self.conn, self.settings = socket, conn, settings
        self.parse, self.handle = parse, handle
        self.throttled = throttled  # told "rate_limited" for each frame over the rate (metrics)
        self.bucket = TokenBucket(settings.message_rate, settings.message_burst)
        self.heartbeat = heartbeat
        self.last_heard = trio.current_time()
        self.next_ping = self.last_heard + settings.ping_interval
        self.strikes = 0

    async def run(self) -> None:
        self.heartbeat.watch(self)
        try:
            with self.conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    await self._writer()
                    nursery.cancel_scope.cancel()
        finally:
            self.heartbeat.forget(self)
        with trio.move_on_after(2, shield=True):
            await self.socket.close(self.conn.close_code or 1000, self.conn.close_reason)

    async def _writer(self) -> None:
        """Deliver queued frames, as many per write as are waiting; returns once the queue is
        closed and drained (so a close frame always comes after the data)."""
        frames = self.conn.frames_out
        async for first in frames:
            batch, size = [first], len(first)
            while size < BATCH_BYTES:
                try:
                    more = frames.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(more)
                size += len(more)
            await self.socket.write(first if len(batch) == 1 else b"".join(batch))
            self.conn.delivered(size)

    async def _reader(self) -> None:
        while True:
            raw = await self.socket.receive()
            self.last_heard = trio.current_time()
            await self._on_frame(raw)

    async def _on_frame(self, raw: str | bytes) -> None:
        try:
            if not self.bucket.allow():
                if self.throttled is not None:
                    self.throttled("rate_limited")
                raise p.ProtocolError("rate_limited", "too many messages: slow down")
            await self.handle(self.parse(raw))
            self.strikes = 0
        except p.ProtocolError as exc:
            self._refuse(exc.code, exc.message)
        except MeetError as exc:
            self._refuse(exc.code, exc.message)
        except Exception:
            # A bug (or an unforeseen database error) in one handler must not take the
            # connection down: log it once, with the traceback, and tell the client.
            log.exception("unexpected error handling a frame from user %s", self.conn.user.id)
            self._refuse("internal_error", "something went wrong on the server; the message was not handled")

    def _refuse(self, code: str, message: str) -> None:
        self.conn.send(p.Error(code=code, message=message))
        self.strikes += 1
        if self.strikes >= MAX_STRIKES:
            self.conn.finish(CLOSE_POLICY, "too many invalid messages")

    def beat(self, now: float) -> None:
        """The heartbeat's tick: end a client silent for ``idle_timeout``, else ping when due."""
        if now >= self.last_heard + self.settings.idle_timeout:
            self.conn.abort(CLOSE_TIMEOUT, "no message within the heartbeat timeout")
        elif now >= self.next_ping:
            self.conn.send(p.Ping())
            self.next_ping = now + self.settings.ping_interval


class RoomHandlers:
    """The dispatch table of a room connection: one method per client message type.

    The table is the class's, shared by every connection (per-connection closures cost ~4 KiB
    each: sixteen functions and their cells).
    """

    def __init__(self, rooms: Rooms, peer: Participant) -> None:
        self.rooms, self.peer = rooms, peer

    async def handle(self, message: p.Message) -> None:
        await ROOM_TABLE[type(message)](self, message)

    def live(self) -> Any:
        room = self.rooms.room_of(self.peer)
        if room is None:
            raise p.ProtocolError("not_in_room", "you are no longer in this room")
        return room

    async def on_signal(self, m: Any) -> None:
        if m.to == RELAY_PEER:
            await self.rooms.media.signal(self.live(), self.peer, m.data)
        else:
            self.rooms.signal(self.live(), self.peer, m)

    async def on_chat(self, m: Any) -> None:
        await self.rooms.chat(self.live(), self.peer, m)

    async def on_state(self, m: Any) -> None:
        self.rooms.state(self.live(), self.peer, m)

    async def on_kick(self, m: Any) -> None:
        await self.rooms.kick(self.live(), self.peer, m)

    async def on_mute(self, m: Any) -> None:
        self.rooms.mute(self.live(), self.peer, m)

    async def on_end(self, m: Any) -> None:
        await self.rooms.end_by(self.live(), self.peer)

    async def on_mute_all(self, m: Any) -> None:
        self.rooms.mute_all(self.live(), self.peer)

    async def on_lower_hand(self, m: Any) -> None:
        self.rooms.lower_hand(self.live(), self.peer, m)

    async def on_admit(self, m: Any) -> None:
        await self.rooms.answer_knock(self.live(), self.peer, m.id, admitted=True)

    async def on_deny(self, m: Any) -> None:
        await self.rooms.answer_knock(self.live(), self.peer, m.id, admitted=False)

    async def on_promote(self, m: Any) -> None:
        self.rooms.promote(self.live(), self.peer, m)

    async def on_demote(self, m: Any) -> None:
        self.rooms.demote(self.live(), self.peer, m)

    async def on_react(self, m: Any) -> None:
        self.rooms.react(self.live(), self.peer, m)

    async def on_view(self, m: Any) -> None:
        await self.rooms.media.view(self.live(), self.peer, m)

    async def on_ping(self, m: Any) -> None:
        self.peer.conn.send(p.Pong())

    async def on_pong(self, m: Any) -> None:
        pass  # arriving at all is what the heartbeat needs


ROOM_TABLE: dict[type[p.Message], Callable[[RoomHandlers, Any], Awaitable[None]]] = {
    p.Signal: RoomHandlers.on_signal, p.Chat: RoomHandlers.on_chat, p.State: RoomHandlers.on_state,
    p.Kick: RoomHandlers.on_kick, p.Mute: RoomHandlers.on_mute, p.End: RoomHandlers.on_end,
    p.MuteAll: RoomHandlers.on_mute_all, p.LowerHand: RoomHandlers.on_lower_hand, p.Admit: RoomHandlers.on_admit,
    p.Deny: RoomHandlers.on_deny, p.Promote: RoomHandlers.on_promote, p.Demote: RoomHandlers.on_demote,
    p.React: RoomHandlers.on_react, p.View: RoomHandlers.on_view, p.Ping: RoomHandlers.on_ping,
    p.Pong: RoomHandlers.on_pong,
}


class RoomEntry:
    """One room connection from the handshake on: entering (perhaps through the lobby), then
    the room's handlers until it leaves.

    The client loop runs from the start, so someone waiting in the lobby keeps answering the
    heartbeat and is noticed leaving. Until admitted, only ``ping``/``pong`` are handled; other
    frames wait for the outcome of a join in progress, or are refused while in the lobby.
    """

    def __init__(self, rooms: Rooms, code: str, conn: Connection) -> None:
        self.rooms, self.code, self.conn = rooms, code, conn
        self.peer: Participant | None = None
        self.settled = trio.Event()  # admitted or refused
        self._handle: Handler | None = None

    async def enter(self) -> None:
        """Join; a refusal is sent as ``error`` and closes the connection with its close code."""
        try:
            self.peer = await self.rooms.join(self.code, self.conn)
        except MeetError as exc:
            self.conn.send(p.Error(code=exc.code, message=exc.message))
            self.conn.finish(exc.ws_close_code, exc.message[:120])
        else:
            self._handle = RoomHandlers(self.rooms, self.peer).handle
        finally:
            self.settled.set()

    async def handle(self, message: p.Message) -> None:
        if self._handle is None:
            if isinstance(message, p.Ping):
                self.conn.send(p.Pong())
                return
            if isinstance(message, p.Pong):
                return
            if self.rooms.in_lobby(self.code, self.conn):
                raise p.ProtocolError("in_lobby", "you are in the lobby: wait until a host lets you in")
            await self.settled.wait()
            if self._handle is None:
                return  # refused: the connection is closing
        await self._handle(message)

    async def leave(self) -> None:
        """Leave the room (a no-op when never admitted or already gone)."""
        if self.peer is not None:
            await self.rooms.leave(self.peer)


class UserHandlers:
    """The dispatch table of a user (presence/ringing) connection."""

    def __init__(self, presence: Presence, rooms: Rooms, conn: Connection) -> None:
        self.presence, self.rooms, self.conn = presence, rooms, conn

    async def handle(self, message: p.Message) -> None:
        await USER_TABLE[type(message)](self, message)

    async def on_ring(self, m: Any) -> None:
        room = await self.rooms.get(m.room)
        await self.rooms.check(Action.RING, room, self.conn.user)  # raises Gone/Forbidden: an error reply
        self.presence.ring(self.conn, m.user_id, room.public())

    async def on_answer(self, m: Any) -> None:
        ring = self.presence.answer(self.conn, m.ring_id, m.accepted)
        if m.accepted and ring.caller.user.id == ring.room["host"]["id"]:
            self.rooms.invite(ring.room["code"], self.conn.user.id)

    async def on_cancel(self, m: Any) -> None:
        self.presence.cancel(self.conn, m.ring_id)

    async def on_ping(self, m: Any) -> None:
        self.conn.send(p.Pong())

    async def on_pong(self, m: Any) -> None:
        pass


USER_TABLE: dict[type[p.Message], Callable[[UserHandlers, Any], Awaitable[None]]] = {
    p.Ring: UserHandlers.on_ring, p.RingAnswer: UserHandlers.on_answer, p.RingCancel: UserHandlers.on_cancel,
    p.Ping: UserHandlers.on_ping, p.Pong: UserHandlers.on_pong,
}


def user_handlers(presence: Presence, rooms: Rooms, conn: Connection) -> Handler:
    """The handler of a user (presence/ringing) connection."""
    return UserHandlers(presence, rooms, conn).handle
