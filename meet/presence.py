"""Who is online (has a user channel open) and ringing them into a meeting.

A ring goes to every open channel of the callee; the first answer wins and the callee's
other prompts are withdrawn. Unanswered rings expire after ``ring_timeout`` seconds; the
timers run in a nursery that :meth:`Presence.run` owns, started from the root nursery.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from meet import protocol as p
from meet.connection import CLOSE_GOING_AWAY, Connection, UserRef


@dataclass
class PendingRing:
    ring_id: str
    caller: Connection
    callee_id: int
    room: dict[str, Any]
    timer: trio.CancelScope = field(default_factory=trio.CancelScope)


RoomLookup = Callable[[str], Awaitable[dict[str, Any]]]


class Presence:
    """Online users and pending rings."""

    def __init__(self, ring_timeout: float) -> None:
        self.ring_timeout = ring_timeout
        self.channels: dict[int, dict[str, Connection]] = {}
        self.rings: dict[str, PendingRing] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the ring timers until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def online(self) -> list[dict[str, Any]]:
        return [next(iter(conns.values())).user.public() for conns in self.channels.values() if conns]

    def connect(self, conn: Connection) -> None:
        """Register a user channel: it gets the roster; others learn the user came online."""
        others = [user for user in self.online() if user["id"] != conn.user.id]  # same for every tab
        conn.send(p.Presence(online=others))
        conns = self.channels.setdefault(conn.user.id, {})
        first = not conns
        conns[conn.id] = conn
        if first:
            self._broadcast(p.Online(user=conn.user.public()), exclude_user=conn.user.id)

    def disconnect(self, conn: Connection) -> None:
        conns = self.channels.get(conn.user.id, {})
        if conns.pop(conn.id, None) is None:
            return  # already disconnected (on abort)
        if not conns:
            self.channels.pop(conn.user.id, None)
            self._broadcast(p.Offline(user_id=conn.user.id))
        for ring in [r for r in self.rings.values() if r.caller is conn]:
            self._withdraw(ring)

    def _broadcast(self, message: p.Message, exclude_user: int | None = None) -> None:
        frame = p.encode(message)
        for user_id, conns in list(self.channels.items()):
            if user_id != exclude_user:
                for conn in list(conns.values()):
                    conn.send_frame(frame)

    def _send_user(self, user_id: int, message: p.Message, exclude: Connection | None = None) -> None:
        for conn in list(self.channels.get(user_id, {}).values()):
            if conn is not exclude:
                conn.send(message)

    def ring(self, caller: Connection, callee_id: int, room: dict[str, Any]) -> None:
        """Ring every channel of ``callee_id`` about ``room`` (a room record, already checked)."""
        if callee_id == caller.user.id:
            raise p.ProtocolError("invalid_message", "you cannot ring yourself")
        if not self.channels.get(callee_id):
            raise p.ProtocolError("user_offline", "that user is not online")
        assert self._nursery is not None, "Presence.run must be started first"
        ring = PendingRing(secrets.token_urlsafe(9), caller, callee_id, room)
        self.rings[ring.ring_id] = ring
        caller.send(p.Ringing(ring_id=ring.ring_id, user_id=callee_id, room=room["code"]))
        self._send_user(callee_id, p.IncomingCall(ring_id=ring.ring_id, from_=caller.user.public(), room=room))
        self._nursery.start_soon(self._expire, ring)

    async def _expire(self, ring: PendingRing) -> None:
        with ring.timer:
            await trio.sleep(self.ring_timeout)
            if self.rings.pop(ring.ring_id, None) is ring:
                timeout = p.RingTimeout(ring_id=ring.ring_id, user_id=ring.callee_id)
                ring.caller.send(timeout)
                self._send_user(ring.callee_id, timeout)

    def answer(self, conn: Connection, ring_id: str, accepted: bool) -> PendingRing:
        """The callee answers; the caller hears it and the callee's other prompts close."""
        ring = self.rings.get(ring_id)
        if ring is None or ring.callee_id != conn.user.id:
            raise p.ProtocolError("unknown_ring", "no such ring is waiting for you")
        del self.rings[ring_id]
        ring.timer.cancel()
        ring.caller.send(p.RingAnswer(ring_id=ring_id, accepted=accepted, user_id=conn.user.id))
        self._send_user(ring.callee_id, p.RingCancel(ring_id=ring_id), exclude=conn)
        return ring

    def cancel(self, conn: Connection, ring_id: str) -> None:
        """The caller hangs up before an answer."""
        ring = self.rings.get(ring_id)
        if ring is None or ring.caller is not conn:
            raise p.ProtocolError("unknown_ring", "no such ring of yours is waiting")
        self._withdraw(ring)

    def _withdraw(self, ring: PendingRing) -> None:
        self.rings.pop(ring.ring_id, None)
        ring.timer.cancel()
        self._send_user(ring.callee_id, p.RingCancel(ring_id=ring.ring_id))

    def shutdown(self) -> None:
        for conns in self.channels.values():
            for conn in conns.values():
                conn.abort(CLOSE_GOING_AWAY, "server shutting down")


__all__ = ["Presence", "UserRef"]
