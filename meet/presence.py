"""Who is online (has a user channel open, or is in a meeting) and ringing them into a meeting.

The roster lists every signed-in user with a user channel open or a connection in any meeting,
each entry ``{id, username, in_meeting}``. Rooms report meetings through
:meth:`Presence.meeting_changed` (wired as ``Rooms.meeting_listener``); someone in a meeting
without a user channel is looked up by id for their name first, in the nursery.

A ring goes to every open channel of the callee; the first answer wins and the callee's
other prompts are withdrawn. Unanswered rings expire after ``ring_timeout`` seconds; the
timers run in a nursery that :meth:`Presence.run` owns, started from the root nursery.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from meet import protocol as p
from meet import wire
from meet.connection import CLOSE_GOING_AWAY, Connection, UserRef
from meet.store import Store
from meet.store import accounts as account_queries


@dataclass
class PendingRing:
    ring_id: str
    caller: Connection
    callee_id: int
    room: dict[str, Any]
    timer: trio.CancelScope = field(default_factory=trio.CancelScope)


RoomLookup = Callable[[str], Awaitable[dict[str, Any]]]
NameLookup = Callable[[int], Awaitable[str | None]]  # a user id → their username (None: no such user)


def store_names(store: Store) -> NameLookup:
    """Look usernames up in the accounts table."""

    async def username(user_id: int) -> str | None:
        user = await store.run(account_queries.user_by_id, user_id)
        return user.username if user is not None else None

    return username


log = logging.getLogger(__name__)


class Presence:
    """Online users and pending rings."""

    def __init__(self, ring_timeout: float, names: NameLookup | None = None) -> None:
        self.ring_timeout = ring_timeout
        self.names = names
        self.channels: dict[int, dict[str, Connection]] = {}
        # Users in a meeting → their username; None while it is being looked up (not listed yet).
        self.meetings: dict[int, str | None] = {}
        self.rings: dict[str, PendingRing] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the ring timers and name look-ups until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None  # shut down: no new timers or look-ups

    def online(self) -> list[dict[str, Any]]:
        """The roster: everyone with a user channel open, then everyone else in a meeting."""
        ids = [user_id for user_id, conns in self.channels.items() if conns]
        ids += [user_id for user_id, name in self.meetings.items() if name is not None and user_id not in ids]
        return [self._entry(user_id) for user_id in ids]

    def _listed(self, user_id: int) -> bool:
        return bool(self.channels.get(user_id)) or self.meetings.get(user_id) is not None

    def _entry(self, user_id: int) -> dict[str, Any]:
        conns = self.channels.get(user_id)
        name = next(iter(conns.values())).user.username if conns else self.meetings.get(user_id)
        return {"id": user_id, "username": name, "in_meeting": user_id in self.meetings}

    def connect(self, conn: Connection) -> None:
        """Register a user channel: it gets the roster; others learn the user came online."""
        user_id = conn.user.id
        others = [user for user in self.online() if user["id"] != user_id]  # same for every tab
        conn.send(p.Presence(online=others))
        listed = self._listed(user_id)
        self.channels.setdefault(user_id, {})[conn.id] = conn
        if user_id in self.meetings and self.meetings[user_id] is None:
            self.meetings[user_id] = conn.user.username  # no need to wait for the lookup
        if not listed:
            self._broadcast(p.Online(user=self._entry(user_id)), exclude_user=user_id)

    def disconnect(self, conn: Connection) -> None:
        conns = self.channels.get(conn.user.id, {})
        if conns.pop(conn.id, None) is None:
            return  # already disconnected (on abort)
        if not conns:
            self.channels.pop(conn.user.id, None)
            if not self._listed(conn.user.id):  # still in a meeting: still listed
                self._broadcast(p.Offline(user_id=conn.user.id))
        for ring in [r for r in self.rings.values() if r.caller is conn]:
            self._withdraw(ring)

    def meeting_changed(self, user_id: int, in_meeting: bool) -> None:
        """A signed-in user entered their first meeting connection (True) or left their last
        (False): watchers see the entry change (``online`` again with the new ``in_meeting``),
        appear (in a meeting without a user channel) or go (``offline``)."""
        if in_meeting:
            conns = self.channels.get(user_id)
            self.meetings[user_id] = next(iter(conns.values())).user.username if conns else None
            if conns:
                self._broadcast(p.Online(user=self._entry(user_id)), exclude_user=user_id)
            elif self._nursery is not None:  # None only while shutting down: nobody is watching
                self._nursery.start_soon(self._name_and_list, user_id)
            return
        was_listed = self.meetings.pop(user_id, None) is not None
        if self.channels.get(user_id):
            self._broadcast(p.Online(user=self._entry(user_id)), exclude_user=user_id)
        elif was_listed:
            self._broadcast(p.Offline(user_id=user_id))

    async def _name_and_list(self, user_id: int) -> None:
        """List someone in a meeting who has no user channel, once their name is known."""
        try:
            name = await self.names(user_id) if self.names is not None else None
        except Exception:  # the roster must not take the server down; they stay unlisted
            log.exception("looking up user %d for presence failed", user_id)
            name = None
        if user_id not in self.meetings or self.meetings[user_id] is not None:
            return  # left meanwhile, or a user channel named them (and listed them) first
        if name is None:
            del self.meetings[user_id]  # no such user (deleted meanwhile): nothing to show
            return
        self.meetings[user_id] = name
        self._broadcast(p.Online(user=self._entry(user_id)), exclude_user=user_id)

    def _broadcast(self, message: p.Message, exclude_user: int | None = None) -> None:
        frame = wire.frame(message)
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
