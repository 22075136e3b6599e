"""Rooms: their records, who is in them right now, and what participants may do.

Plain Python over trio and the store: no Quart, no media stack. The signaling layer calls
``join``/``leave`` and the action methods; everything sent to clients goes through each
participant's non-blocking :class:`~meet.connection.Connection`.
"""

from __future__ import annotations

import secrets
import sqlite3
import string
from typing import Any

import trio

from meet import protocol as p
from meet.clock import Clock
from meet.config import RoomsConfig, RtcConfig
from meet.connection import CLOSE_ENDED, CLOSE_FORBIDDEN, CLOSE_GOING_AWAY, Connection, UserRef
from meet.errors import BadRequest, Forbidden, Gone, NotFound, Unavailable
from meet.live import LiveRoom, Participant
from meet.media import MediaRouter, RelayFailure
from meet.store import Store
from meet.store import rooms as q
from meet.turn import IceServers

CHAT_REPLAY = 50
TITLE_MAX = 120


def new_code() -> str:
    """A room code like ``abc-defg-hij``: 26^10 ≈ 1.4e14 possibilities."""
    letters = [secrets.choice(string.ascii_lowercase) for _ in range(10)]
    return f"{''.join(letters[:3])}-{''.join(letters[3:7])}-{''.join(letters[7:])}"


def room_json(row: dict[str, Any]) -> dict[str, Any]:
    """The public shape of a room record."""
    return {
        "code": row["code"],
        "title": row["title"],
        "host": {"id": row["host_id"], "username": row["host_username"]},
        "created_at": row["created_at"],
        "status": "ended" if row["ended_at"] is not None else "open",
        "ended_at": row["ended_at"],
        "locked": bool(row["locked"]),
        "max_participants": row["max_participants"],
    }


def message_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "user": {"id": row["user_id"], "username": row["username"]},
        "text": row["text"],
        "created_at": row["created_at"],
    }


class Rooms:
    """The rooms service: records in the store, live participants in memory."""

    def __init__(
        self, store: Store, clock: Clock, settings: RoomsConfig, rtc: RtcConfig
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.rtc = rtc
        # The ice_servers each person gets: configured ones plus fresh TURN credentials.
        self.ice = IceServers(rtc, clock)
        self.live: dict[str, LiveRoom] = {}
        self.media = MediaRouter(rtc)  # the relay bridge is attached by the server when it runs
        # Rung in by the host (past a lock); kept while the server runs.
        self.invited: dict[str, set[int]] = {}

    # -- records --------------------------------------------------------------------------

    async def create(self, host: UserRef, title: str | None, max_participants: int | None) -> dict[str, Any]:
        title = self._check_title(title if title is not None else f"{host.username}'s meeting")
        capacity = self._check_capacity(max_participants)
        for _ in range(5):
            try:
                return await self.store.run(q.create_room, new_code(), title, host.id, self.clock.now(), capacity)
            except sqlite3.IntegrityError:
                continue  # a code collision: astronomically rare, try another
        raise RuntimeError("could not find a free room code")

    def _check_title(self, title: str) -> str:
        title = title.strip()
        if not 1 <= len(title) <= TITLE_MAX:
            raise BadRequest(f"Titles are 1–{TITLE_MAX} characters.", code="invalid_title", field="title")
        return title

    def _check_capacity(self, value: int | None) -> int:
        cap = self.settings.max_participants
        if value is None:
            return cap
        if not 2 <= value <= cap:
            raise BadRequest(
                f"max_participants must be between 2 and {cap}.", code="invalid_max_participants",
                field="max_participants",
            )
        return value

    async def get(self, code: str) -> dict[str, Any]:
        """The room record; NotFound for an unknown code."""
        row = await self.store.run(q.room_by_code, code.lower()[:32])
        if row is None:
            raise NotFound("There is no meeting with that code.", code="room_not_found")
        return row

    async def hosted(self, host: UserRef, limit: int, before: int | None) -> list[dict[str, Any]]:
        """Rooms ``host`` created, newest first, with how many people are in each now."""
        rows = await self.store.run(q.rooms_hosted, host.id, limit, before)
        return [{**room_json(r), "id": r["id"], "participants": len(self.participants(r["code"]))} for r in rows]

    def participants(self, code: str) -> list[dict[str, Any]]:
        live = self.live.get(code)
        return [peer.public() for peer in live.peers.values()] if live else []

    async def check_admission(self, row: dict[str, Any], user: UserRef) -> None:
        """Raise Gone/Forbidden when ``user`` may not enter now.

        A locked room still lets in its host, people rung in by the host, and people who were
        in it within ``reconnect_grace`` (a dropped connection must not lock someone out).
        """
        if row["ended_at"] is not None:
            raise Gone("This meeting has ended.", code="room_ended")
        is_host = user.id == row["host_id"]
        since = self.clock.now() - self.settings.reconnect_grace
        banned, recent = await self.store.run(q.admission_facts, row["id"], user.id, since)
        if banned and not is_host:
            raise Forbidden("The host removed you from this meeting.", code="removed")
        invited = user.id in self.invited.get(row["code"], set())
        if row["locked"] and not (is_host or invited or recent):
            raise Forbidden("The host has locked this meeting.", code="room_locked")
        live = self.live.get(row["code"])
        present = (len(live.peers) + len(live.joining)) if live else 0
        if present >= self.media.capacity(row["max_participants"]):
            raise Forbidden("This meeting is full.", code="room_full")

    @staticmethod
    def require_host(row: dict[str, Any], user: UserRef) -> None:
        if row["host_id"] != user.id:
            raise Forbidden("Only the host can do that.", code="not_host")

    async def update(self, row: dict[str, Any], user: UserRef, changes: dict[str, Any]) -> dict[str, Any]:
        """Host only: change title, lock or capacity; participants are told."""
        self.require_host(row, user)
        if row["ended_at"] is not None:
            raise Gone("This meeting has ended.", code="room_ended")
        clean: dict[str, Any] = {}
        if "title" in changes:
            clean["title"] = self._check_title(changes["title"])
        if "locked" in changes:
            clean["locked"] = int(changes["locked"])
        if "max_participants" in changes:
            clean["max_participants"] = self._check_capacity(changes["max_participants"])
        await self.store.run(q.update_room, row["id"], clean)
        fresh = await self.get(row["code"])
        live = self.live.get(row["code"])
        if live is not None:
            live.row = fresh
            live.broadcast(p.RoomUpdated(room=room_json(fresh)))
        return fresh

    async def end(self, row: dict[str, Any], user: UserRef) -> dict[str, Any]:
        """Host only: end the meeting and close every connection with ``room-ended``."""
        self.require_host(row, user)
        if row["ended_at"] is None:
            await self.store.run(q.end_room, row["id"], self.clock.now())
        live = self.live.pop(row["code"], None)
        if live is not None:
            await self.media.ended(live)
            for peer in live.peers.values():
                peer.conn.send(p.RoomEnded())
                peer.conn.finish(CLOSE_ENDED, "the meeting has ended")
        return await self.get(row["code"])

    # -- presence in a room ---------------------------------------------------------------

    async def join(self, code: str, conn: Connection) -> Participant:
        """Admit a connection: stay opened, ``welcome`` queued, others told. Raises if refused."""
        row = await self.get(code)
        await self.check_admission(row, conn.user)
        live = self.live.setdefault(row["code"], LiveRoom(row, mode=self.media.initial_mode()))
        live.joining.add(conn.id)  # holds the seat across the awaits below
        try:
            try:
                await self.media.on_join(live, conn.id)
            except RelayFailure as exc:
                raise Unavailable(f"The media relay is not available: {exc}", code="relay_unavailable") from None
            now = self.clock.now()
            stay_id = await self.store.run(q.open_stay, row["id"], conn.user.id, now, self.settings.reconnect_grace)
            history = await self.store.run(q.recent_messages, row["id"], CHAT_REPLAY)
        except BaseException:
            live.joining.discard(conn.id)
            await self._abandon(live, conn.id)
            raise
        live.joining.discard(conn.id)
        if self.live.get(row["code"]) is not live:  # ended while we were waiting
            await self._abandon(live, conn.id)
            await self._close_stay_if_gone(row["id"], conn.user.id, stay_id)
            raise Gone("This meeting has ended.", code="room_ended")
        role = "host" if conn.user.id == row["host_id"] else "guest"
        peer = Participant(
            peer_id=conn.id, code=row["code"], conn=conn, role=role, joined_at=now, stay_id=stay_id
        )
        conn.send(self._welcome(live, peer, history))
        live.broadcast(p.PeerJoined(peer=peer.public()))
        live.peers[peer.peer_id] = peer
        return peer

    async def _abandon(self, live: LiveRoom, peer_id: str) -> None:
        """A join failed (or was cancelled) half-way: undo what it set up, the relay included."""
        code = live.row["code"]
        discarded = self.live.get(code) is not live  # the meeting ended meanwhile
        if not discarded and not live.peers and not live.joining:
            del self.live[code]
            discarded = True
        with trio.CancelScope(shield=True):  # a cancelled join must still free its relay peer
            await self.media.abandon(live, peer_id, release=discarded and not live.joining)

    def _welcome(self, live: LiveRoom, peer: Participant, history: list[dict[str, Any]]) -> p.Welcome:
        return p.Welcome(
            peer_id=peer.peer_id,
            user=peer.user.public(),
            role=peer.role,
            room=room_json(live.row),
            peers=[other.public() for other in live.peers.values()],
            messages=[message_json(m) for m in history],
            ice_servers=self.ice.for_user(peer.user.id),
            mode=live.mode,
        )

    async def leave(self, peer: Participant) -> None:
        """Remove a participant (any reason); closes the stay when it was their last tab."""
        live = self.room_of(peer)
        if live is None:
            # The room ended (and was dropped) while they were in it: the stay is closed.
            return
        del live.peers[peer.peer_id]
        live.broadcast(p.PeerLeft(peer_id=peer.peer_id))
        emptied = not live.peers and not live.joining
        if emptied:
            del self.live[peer.code]
        await self.media.on_leave(live, peer, emptied)
        await self._close_stay_if_gone(live.row["id"], peer.user.id, peer.stay_id, live)

    async def _close_stay_if_gone(
        self, room_id: int, user_id: int, stay_id: int, live: LiveRoom | None = None
    ) -> None:
        if live is not None and any(other.user.id == user_id for other in live.peers.values()):
            return  # the same person is still here in another tab
        await self.store.run(q.close_stay, stay_id, self.clock.now())

    def room_of(self, peer: Participant) -> LiveRoom | None:
        """The live room ``peer`` is in, or None once it has left or the room ended."""
        live = self.live.get(peer.code)
        return live if live is not None and live.peers.get(peer.peer_id) is peer else None

    async def relay_event(self, message: dict[str, Any]) -> None:
        """An event from the relay bridge (an offer, the track map, a failure)."""
        self.media.event(self.live.get(str(message.get("room"))), message)

    async def relay_lost(self, codes: list[str]) -> None:
        """A relay worker died: the clients of its rooms reconnect."""
        for code in codes:
            live = self.live.get(code)
            if live is not None:
                self.media.lost(live)

    def shutdown(self) -> None:
        """Close every room connection with 1001 so clients reconnect to the next run."""
        for live in self.live.values():
            for peer in live.peers.values():
                peer.conn.abort(CLOSE_GOING_AWAY, "server shutting down")

    # -- what participants do -------------------------------------------------------------

    def signal(self, live: LiveRoom, peer: Participant, message: p.Signal) -> None:
        target = live.peers.get(message.to)
        if target is None or target is peer:
            raise p.ProtocolError("unknown_peer", f"no peer '{message.to[:40]}' in this room")
        target.conn.send(p.SignalFrom(from_=peer.peer_id, data=message.data))

    async def chat(self, live: LiveRoom, peer: Participant, message: p.Chat) -> None:
        row = await self.store.run(
            q.add_message, live.row["id"], peer.user.id, peer.user.username, message.text, self.clock.now()
        )
        live.broadcast(p.ChatPosted(message=message_json(row)))

    def state(self, live: LiveRoom, peer: Participant, message: p.State) -> None:
        for key, value in message.changes().items():
            setattr(peer, key, value)
        live.broadcast(
            p.StateChanged(peer_id=peer.peer_id, audio=peer.audio, video=peer.video, screen=peer.screen, hand=peer.hand),
            exclude=peer.peer_id,
        )

    def _host_target(self, live: LiveRoom, peer: Participant, peer_id: str) -> Participant:
        if peer.role != "host":
            raise p.ProtocolError("not_host", "only the host can do that")
        target = live.peers.get(peer_id)
        if target is None:
            raise p.ProtocolError("unknown_peer", f"no peer '{peer_id[:40]}' in this room")
        return target

    async def kick(self, live: LiveRoom, peer: Participant, message: p.Kick) -> None:
        """Remove a person (every tab of theirs) and keep them out of this room."""
        target = self._host_target(live, peer, message.peer_id)
        if target.user.id == live.row["host_id"]:
            raise p.ProtocolError("invalid_message", "the host cannot be removed")
        await self.store.run(q.ban, live.row["id"], target.user.id, self.clock.now())
        self.invited.get(live.row["code"], set()).discard(target.user.id)
        for other in list(live.peers.values()):
            if other.user.id == target.user.id:
                other.conn.send(p.Kicked())
                other.conn.finish(CLOSE_FORBIDDEN, "removed by the host")

    def invite(self, code: str, user_id: int) -> None:
        """Let ``user_id`` past the lock of room ``code`` (they accepted the host's ring)."""
        self.invited.setdefault(code, set()).add(user_id)

    def mute(self, live: LiveRoom, peer: Participant, message: p.Mute) -> None:
        target = self._host_target(live, peer, message.peer_id)
        target.conn.send(p.MuteRequest(by=peer.user.public()))

    async def end_by(self, live: LiveRoom, peer: Participant) -> None:
        if peer.role != "host":
            raise p.ProtocolError("not_host", "only the host can do that")
        await self.end(live.row, peer.user)


async def close_stale_stays(store: Store, now: float) -> int:
    """At start: stays a previous run left open are closed (their people are gone)."""
    return await store.run(q.close_open_stays, now)
