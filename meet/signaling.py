"""WebSocket clients: one loop per client, fed by its bounded action queue.

For each client three tasks share one nursery: the reader parses frames at the edge and
dispatches them, the writer drains the client's queue into the socket (all that is queued in
one write), and the heartbeat pings and drops clients that went silent. The socket is anything
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
        throttled: Callable[[str], None] | None = None,
    ) -> None:
        self.socket, self.conn, self.settings = socket, conn, settings
        self.parse, self.handle = parse, handle
        self.throttled = throttled  # told "rate_limited" for each frame over the rate (metrics)
        self.bucket = TokenBucket(settings.message_rate, settings.message_burst)
        self.last_heard = trio.current_time()
        self.strikes = 0

    async def run(self) -> None:
        with self.conn.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader)
                nursery.start_soon(self._heartbeat)
                await self._writer()
                nursery.cancel_scope.cancel()
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

    async def _heartbeat(self) -> None:
        interval, timeout = self.settings.ping_interval, self.settings.idle_timeout
        next_ping = trio.current_time() + interval
        while True:
            await trio.sleep_until(min(next_ping, self.last_heard + timeout))
            now = trio.current_time()
            if now >= self.last_heard + timeout:
                self.conn.abort(CLOSE_TIMEOUT, "no message within the heartbeat timeout")
                return
            if now >= next_ping:
                self.conn.send(p.Ping())
                next_ping = now + interval


def room_handlers(rooms: Rooms, peer: Participant) -> Handler:
    """The dispatch table of a room connection."""
    conn = peer.conn

    def live() -> Any:
        room = rooms.room_of(peer)
        if room is None:
            raise p.ProtocolError("not_in_room", "you are no longer in this room")
        return room

    async def on_signal(m: Any) -> None:
        if m.to == RELAY_PEER:
            await rooms.media.signal(live(), peer, m.data)
        else:
            rooms.signal(live(), peer, m)

    async def on_chat(m: Any) -> None:
        await rooms.chat(live(), peer, m)

    async def on_state(m: Any) -> None:
        rooms.state(live(), peer, m)

    async def on_kick(m: Any) -> None:
        await rooms.kick(live(), peer, m)

    async def on_mute(m: Any) -> None:
        rooms.mute(live(), peer, m)

    async def on_end(m: Any) -> None:
        await rooms.end_by(live(), peer)

    async def on_mute_all(m: Any) -> None:
        rooms.mute_all(live(), peer)

    async def on_lower_hand(m: Any) -> None:
        rooms.lower_hand(live(), peer, m)

    async def on_admit(m: Any) -> None:
        await rooms.answer_knock(live(), peer, m.id, admitted=True)

    async def on_deny(m: Any) -> None:
        await rooms.answer_knock(live(), peer, m.id, admitted=False)

    async def on_promote(m: Any) -> None:
        rooms.promote(live(), peer, m)

    async def on_demote(m: Any) -> None:
        rooms.demote(live(), peer, m)

    async def on_react(m: Any) -> None:
        rooms.react(live(), peer, m)

    async def on_view(m: Any) -> None:
        await rooms.media.view(live(), peer, m)

    async def on_ping(m: Any) -> None:
        conn.send(p.Pong())

    async def on_pong(m: Any) -> None:
        pass  # arriving at all is what the heartbeat needs

    table: dict[type[p.Message], Handler] = {
        p.Signal: on_signal, p.Chat: on_chat, p.State: on_state, p.Kick: on_kick, p.Mute: on_mute,
        p.End: on_end, p.MuteAll: on_mute_all, p.LowerHand: on_lower_hand, p.Admit: on_admit, p.Deny: on_deny,
        p.Promote: on_promote, p.Demote: on_demote, p.React: on_react, p.View: on_view, p.Ping: on_ping,
        p.Pong: on_pong,
    }

    async def handle(message: p.Message) -> None:
        await table[type(message)](message)

    return handle


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
            self._handle = room_handlers(self.rooms, self.peer)
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


def user_handlers(presence: Presence, rooms: Rooms, conn: Connection) -> Handler:
    """The dispatch table of a user (presence/ringing) connection."""

    async def on_ring(m: Any) -> None:
        room = await rooms.get(m.room)
        await rooms.check(Action.RING, room, conn.user)  # raises Gone/Forbidden: an error reply
        presence.ring(conn, m.user_id, room.public())

    async def on_answer(m: Any) -> None:
        ring = presence.answer(conn, m.ring_id, m.accepted)
        if m.accepted and ring.caller.user.id == ring.room["host"]["id"]:
            rooms.invite(ring.room["code"], conn.user.id)

    async def on_cancel(m: Any) -> None:
        presence.cancel(conn, m.ring_id)

    async def on_ping(m: Any) -> None:
        conn.send(p.Pong())

    async def on_pong(m: Any) -> None:
        pass

    table: dict[type[p.Message], Handler] = {
        p.Ring: on_ring, p.RingAnswer: on_answer, p.RingCancel: on_cancel, p.Ping: on_ping, p.Pong: on_pong,
    }

    async def handle(message: p.Message) -> None:
        await table[type(message)](message)

    return handle
