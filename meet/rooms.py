"""Rooms: their records, who is in them right now, and what participants may do.

Plain Python over trio and the store: no Quart, no media stack. The signaling layer calls
``join``/``leave`` and the action methods; everything sent to clients goes through each
participant's non-blocking :class:`~meet.connection.Connection`.
"""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
import string
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import trio

from meet import protocol as p
from meet.authz import Action, Facts, allowed, check
from meet.clock import Clock
from meet.config import GUEST_MODES, RoomsConfig, RtcConfig
from meet.connection import CLOSE_ENDED, CLOSE_FORBIDDEN, CLOSE_GOING_AWAY, Connection, UserRef
from meet.errors import BadRequest, Gone, NotFound, Unavailable
from meet.hosting import Hosting, facts_in
from meet.invitations import Invitations
from meet.live import PARTICIPANT, LiveRoom, Participant
from meet.lobby import Lobby
from meet.media import MediaRouter, RelayFailure
from meet.store import Store
from meet.store import guests as guest_passes
from meet.store import rooms as q
from meet.store.group import GroupCommit
from meet.store.records import Message, Room
from meet.turn import IceServers

if TYPE_CHECKING:
    from meet.metrics import Metrics

CHAT_REPLAY = 50
TITLE_MAX = 120


def new_code() -> str:
    """A room code like ``abc-defg-hij``: 26^10 ≈ 1.4e14 possibilities."""
    letters = [secrets.choice(string.ascii_lowercase) for _ in range(10)]
    return f"{''.join(letters[:3])}-{''.join(letters[3:7])}-{''.join(letters[7:])}"


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
        self.media = MediaRouter(rtc, clock=clock)  # the relay bridge is attached by the server when it runs
        self.invited = Invitations(clock)  # rung in by the host past a lock
        self.lobby = Lobby(clock, settings.lobby_timeout)
        self.hosting = Hosting(self.lobby)
        # Told (user id, True) when a signed-in person's first connection enters any room and
        # (user id, False) when their last one leaves: presence shows them "in a meeting".
        self.meeting_listener: Callable[[int, bool], None] | None = None
        self.meetings: Counter[int] = Counter()  # room connections per signed-in user
        self.metrics: Metrics | None = None  # joins, leaves and chat are counted (set by the server)
        # Chat messages from concurrent senders share a transaction (the server runs the writer).
        self.chat_log: GroupCommit[Message] = GroupCommit(store, q.add_message)

    # -- records --------------------------------------------------------------------------

    async def create(self, host: UserRef, title: str | None, max_participants: int | None) -> Room:
        title = self._check_title(title if title is not None else f"{host.username}'s meeting")
        capacity = self._check_capacity(max_participants)
        for _ in range(5):
            try:
                return await self.store.run(
                    q.create_room, new_code(), title, host.id, self.clock.now(), capacity, self.settings.guests
                )
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

    async def get(self, code: str) -> Room:
        """The room record; NotFound for an unknown code."""
        room = await self.store.run(q.room_by_code, code.lower()[:32])
        if room is None:
            raise NotFound("There is no meeting with that code.", code="room_not_found")
        return room

    async def hosted(self, host: UserRef, limit: int, before: int | None) -> list[dict[str, Any]]:
        """Rooms ``host`` created, newest first, with how many people are in each now."""
        rooms = await self.store.run(q.rooms_hosted, host.id, limit, before)
        return [{**r.public(), "id": r.id, "participants": len(self.participants(r.code))} for r in rooms]

    def participants(self, code: str) -> list[dict[str, Any]]:
        live = self.live.get(code)
        return [peer.public() for peer in live.peers.values()] if live else []

    async def describe(self, room: Room, user: UserRef) -> dict[str, Any]:
        """The room for ``user``: with who is in it now, or ``participants_hidden`` (the reason
        code) when the access rules keep that from them."""
        facts = await self.facts(room, user)
        check(Action.VIEW, facts)
        seeing = allowed(Action.SEE_PARTICIPANTS, facts)
        if not seeing.allowed:
            return {**room.public(), "participants_hidden": seeing.code}
        return {**room.public(), "participants": self.participants(room.code)}

    # -- access ---------------------------------------------------------------------------

    async def facts(self, room: Room, user: UserRef) -> Facts:
        """Everything the access rules need about ``user`` and ``room``: the record, the
        store (banned, here within ``reconnect_grace``, ever took part) and the live state."""
        since = self.clock.now() - self.settings.reconnect_grace
        standing = await self.store.run(q.standing, room.id, user.id, since)
        live = self.live.get(room.code)
        present = (len(live.peers) + len(live.joining)) if live else 0
        return Facts.of(
            room, user.id, standing,
            rung_in=self.invited.holds(room.code, user.id),
            full=present >= self.media.capacity(room.max_participants),
            host_id=live.host_id if live else None,
            cohost=live is not None and user.id in live.cohosts,
        )

    async def check(self, action: Action, room: Room, user: UserRef) -> None:
        """Raise Forbidden/Gone (stable codes, see ``meet.authz``) unless ``user`` may do ``action``."""
        check(action, await self.facts(room, user))

    async def check_admission(self, room: Room, user: UserRef) -> bool:
        """Raise Gone/Forbidden when ``user`` may not enter now; else whether they will wait
        in the lobby first.

        A locked room still lets in its host, people rung in by the host, and people who were
        in it within ``reconnect_grace`` (a dropped connection must not lock someone out).
        """
        facts = await self.facts(room, user)
        check(Action.JOIN, facts)
        return not allowed(Action.SKIP_LOBBY, facts).allowed

    @staticmethod
    def _host_power(action: Action, live: LiveRoom, peer: Participant) -> None:
        """Host powers used from inside the room: decided on the live roles, no I/O."""
        check(action, facts_in(live, peer.user))

    def _live_facts(self, room: Room, user: UserRef) -> Facts:
        live = self.live.get(room.code)
        return facts_in(live, user) if live is not None else Facts.of(room, user.id)

    async def update(self, room: Room, user: UserRef, changes: dict[str, Any]) -> Room:
        """Hosts and co-hosts: change title, lock, capacity, guests, lobby or reactions;
        participants are told."""
        check(Action.UPDATE, self._live_facts(room, user))
        clean = {key: SETTINGS[key](self, value) for key, value in changes.items()}
        await self.store.run(q.update_room, room.id, clean)
        fresh = await self.get(room.code)
        live = self.live.get(room.code)
        if live is not None:
            live.room = fresh
            live.broadcast(p.RoomUpdated(room=fresh.public()))
            # Opened up (guests "open", lobby off): whoever waits and no longer has to goes in.
            self.lobby.admit_where(live, lambda u: allowed(Action.SKIP_LOBBY, Facts.of(fresh, u.id)).allowed, user)
        return fresh

    def _check_guests(self, value: Any) -> str:
        if value not in GUEST_MODES:
            raise BadRequest(
                f"guests must be one of {', '.join(GUEST_MODES)}.", code="invalid_guests", field="guests"
            )
        return str(value)

    async def end(self, room: Room, user: UserRef) -> Room:
        """The host only: end the meeting and close every connection with ``room-ended``."""
        check(Action.END, self._live_facts(room, user))
        if not room.ended:
            await self.store.run(q.end_room, room.id, self.clock.now())
            await self.store.run(guest_passes.revoke_room_guests, room.id, self.clock.now())
        self.invited.drop_room(room.code)
        live = self.live.pop(room.code, None)
        if live is not None:
            if self.metrics is not None:
                self.metrics.leaves.inc(len(live.peers))  # their own leave finds the room gone
            self.lobby.close(live)
            await self.media.ended(live)
            for peer in live.peers.values():
                peer.conn.send(p.RoomEnded())
                peer.conn.finish(CLOSE_ENDED, "the meeting has ended")
        return await self.get(room.code)

    # -- presence in a room ---------------------------------------------------------------

    async def join(self, code: str, conn: Connection) -> Participant:
        """Admit a connection: stay opened, ``welcome`` queued, others told. Raises if refused."""
        room = await self.get(code)
        if await self.check_admission(room, conn.user):
            room = await self._through_lobby(room, conn)
        live = self._live_for(room)
        live.joining.add(conn.id)  # holds the seat across the awaits below
        try:
            try:
                await self.media.on_join(live, conn.id)
            except RelayFailure as exc:
                raise Unavailable(f"The media relay is not available: {exc}", code="relay_unavailable") from None
            now = self.clock.now()
            stay_id = await self.store.run(q.open_stay, room.id, conn.user.id, now, self.settings.reconnect_grace)
            history = await self.store.run(q.recent_messages, room.id, CHAT_REPLAY)
        except BaseException:
            live.joining.discard(conn.id)
            await self._abandon(live, conn.id)
            raise
        live.joining.discard(conn.id)
        if self.live.get(room.code) is not live:  # ended while we were waiting
            await self._abandon(live, conn.id)
            await self._close_stay_if_gone(room.id, conn.user.id, stay_id)
            raise Gone("This meeting has ended.", code="room_ended")
        peer = Participant(
            peer_id=conn.id, code=room.code, conn=conn, role=PARTICIPANT, joined_at=now, stay_id=stay_id
        )
        self.hosting.arrive(live, peer)
        conn.send(self._welcome(live, peer, history))
        live.broadcast(p.PeerJoined(peer=peer.public()))
        live.peers[peer.peer_id] = peer
        self.hosting.entered(live, peer)
        self.invited.discard(room.code, conn.user.id)  # used: from now on the reconnect grace applies
        self._in_meeting(conn.user, +1)
        if self.metrics is not None:
            self.metrics.joins.inc()
        return peer

    def in_lobby(self, code: str, conn: Connection) -> bool:
        """Whether ``conn`` waits in the lobby of room ``code``."""
        return self.lobby.waiting(self.live.get(code.lower()), conn)

    def _live_for(self, room: Room) -> LiveRoom:
        return self.live.setdefault(room.code, LiveRoom(room, mode=self.media.initial_mode()))

    async def _through_lobby(self, room: Room, conn: Connection) -> Room:
        """Knock and wait until a host answers. Once let in, the admission rules run again, the
        host's yes standing in for the lock (the meeting may have ended or filled meanwhile)."""
        live = self._live_for(room)
        try:
            await self.lobby.wait(live, conn)
        finally:
            if self.live.get(room.code) is live and live.idle:
                del self.live[room.code]
        facts = await self.facts(live.room, conn.user)
        check(Action.JOIN, dataclasses.replace(facts, rung_in=True))
        return live.room

    def _in_meeting(self, user: UserRef, change: int) -> None:
        """Count a member's room connections; tell the listener on the first and the last."""
        if user.guest:
            return
        count = self.meetings[user.id] = self.meetings[user.id] + change
        if count <= 0:
            del self.meetings[user.id]
        if self.meeting_listener is not None and ((change > 0 and count == 1) or (change < 0 and count == 0)):
            self.meeting_listener(user.id, count == 1)

    async def _abandon(self, live: LiveRoom, peer_id: str) -> None:
        """A join failed (or was cancelled) half-way: undo what it set up, the relay included."""
        code = live.room.code
        discarded = self.live.get(code) is not live  # the meeting ended meanwhile
        if not discarded and live.idle:
            del self.live[code]
            discarded = True
        with trio.CancelScope(shield=True):  # a cancelled join must still free its relay peer
            await self.media.abandon(live, peer_id, release=discarded and not live.joining)

    def _welcome(self, live: LiveRoom, peer: Participant, history: list[Message]) -> p.Welcome:
        return p.Welcome(
            peer_id=peer.peer_id,
            user=peer.user.public(),
            role=peer.role,
            room=live.room.public(),
            peers=[other.public() for other in live.peers.values()],
            messages=[m.public() for m in history],
            ice_servers=self.ice.for_user(peer.user.id),
            mode=live.mode,
            speaker=live.speaker if live.speaker in live.peers else None,
        )

    async def leave(self, peer: Participant) -> None:
        """Remove a participant (any reason); closes the stay when it was their last tab."""
        live = self.room_of(peer)
        if live is None:
            # The room ended (and was dropped) while they were in it: the stay is closed.
            return
        del live.peers[peer.peer_id]
        if self.metrics is not None:
            self.metrics.leaves.inc()
        live.broadcast(p.PeerLeft(peer_id=peer.peer_id))
        self._in_meeting(peer.user, -1)
        if not live.tabs(peer.user.id):
            self.hosting.depart(live, peer.user)
        emptied = not live.peers and not live.joining  # people may still wait in the lobby
        if live.idle:
            del self.live[peer.code]
        await self.media.on_leave(live, peer, emptied)
        await self._close_stay_if_gone(live.room.id, peer.user.id, peer.stay_id, live)

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

    def modes(self) -> Iterator[tuple[str, int]]:
        """The media mode and participant count of each live room (metrics read it)."""
        for live in list(self.live.values()):
            yield live.mode, len(live.peers)

    async def relay_event(self, message: dict[str, Any]) -> None:
        """An event from the relay bridge (an offer, the track map, a failure)."""
        self.media.event(self.live.get(str(message.get("room"))), message)

    async def relay_lost(self, lost: dict[str, list[str]]) -> None:
        """A relay worker died: its participants (room code -> peer ids) reconnect."""
        for code, peer_ids in lost.items():
            live = self.live.get(code)
            if live is not None:
                self.media.lost(live, peer_ids)

    def shutdown(self) -> None:
        """Close every room connection with 1001 so clients reconnect to the next run."""
        for live in self.live.values():
            for peer in live.peers.values():
                peer.conn.abort(CLOSE_GOING_AWAY, "server shutting down")
            for knock in live.knocks.values():  # waiting in the lobby: knock again after the restart
                knock.conn.abort(CLOSE_GOING_AWAY, "server shutting down")

    # -- what participants do -------------------------------------------------------------

    def signal(self, live: LiveRoom, peer: Participant, message: p.Signal) -> None:
        target = live.peers.get(message.to)
        if target is None or target is peer:
            raise p.ProtocolError("unknown_peer", f"no peer '{message.to[:40]}' in this room")
        target.conn.send(p.SignalFrom(from_=peer.peer_id, data=message.data))

    async def chat(self, live: LiveRoom, peer: Participant, message: p.Chat) -> None:
        """Store the message, then broadcast it (the echo means it is stored).

        The broadcast runs as the row's commit callback: broadcasts follow the order of the
        ids even when several messages were committed together.
        """

        def posted(stored: Message) -> None:
            live.broadcast(p.ChatPosted(message=stored.public()))
            if self.metrics is not None:
                self.metrics.chat.inc()

        await self.chat_log.add(
            live.room.id, peer.user.id, peer.user.username, message.text, self.clock.now(), then=posted
        )

    def state(self, live: LiveRoom, peer: Participant, message: p.State) -> None:
        for key, value in message.changes().items():
            setattr(peer, key, value)
        live.broadcast(self._state_of(peer), exclude=peer.peer_id)

    @staticmethod
    def _state_of(peer: Participant) -> p.StateChanged:
        return p.StateChanged(peer_id=peer.peer_id, audio=peer.audio, video=peer.video, screen=peer.screen, hand=peer.hand)

    @staticmethod
    def _peer(live: LiveRoom, peer_id: str) -> Participant:
        target = live.peers.get(peer_id)
        if target is None:
            raise p.ProtocolError("unknown_peer", f"no peer '{peer_id[:40]}' in this room")
        return target

    def _host_target(self, action: Action, live: LiveRoom, peer: Participant, peer_id: str) -> Participant:
        self._host_power(action, live, peer)
        return self._peer(live, peer_id)

    async def kick(self, live: LiveRoom, peer: Participant, message: p.Kick) -> None:
        """Remove a person (every tab of theirs) and keep them out of this room."""
        target = self._host_target(Action.KICK, live, peer, message.peer_id)
        if target.user.id in (live.room.host_id, live.host_id):
            raise p.ProtocolError("invalid_message", "the host cannot be removed")
        await self.store.run(q.ban, live.room.id, target.user.id, self.clock.now())
        self.invited.discard(live.room.code, target.user.id)
        for other in list(live.peers.values()):
            if other.user.id == target.user.id:
                other.conn.send(p.Kicked())
                other.conn.finish(CLOSE_FORBIDDEN, "removed by the host")

    def invite(self, code: str, user_id: int) -> None:
        """Let ``user_id`` past the lock of room ``code`` (they accepted the host's ring)."""
        self.invited.add(code, user_id)

    def mute(self, live: LiveRoom, peer: Participant, message: p.Mute) -> None:
        target = self._host_target(Action.MUTE, live, peer, message.peer_id)
        target.conn.send(p.MuteRequest(by=peer.user.public()))

    def mute_all(self, live: LiveRoom, peer: Participant) -> None:
        """Ask everyone but the hosts and co-hosts to mute."""
        self._host_power(Action.MUTE, live, peer)
        live.tell_participants(p.MuteRequest(by=peer.user.public(), all=True))

    def lower_hand(self, live: LiveRoom, peer: Participant, message: p.LowerHand) -> None:
        """Lower someone's hand; everyone (them included) gets their new ``state``."""
        target = self._host_target(Action.LOWER_HAND, live, peer, message.peer_id)
        target.hand = False
        live.broadcast(self._state_of(target))

    async def answer_knock(self, live: LiveRoom, peer: Participant, knock_id: str, admitted: bool) -> None:
        """A host lets someone in from the lobby, or turns them away (a guest's pass is withdrawn)."""
        self._host_power(Action.ADMIT, live, peer)
        knock = self.lobby.answer(live, knock_id, admitted, by=peer.user)
        if not admitted and knock.conn.user.guest:
            await self.store.run(guest_passes.revoke_guest, knock.conn.user.guest_id, self.clock.now())

    def promote(self, live: LiveRoom, peer: Participant, message: p.Promote) -> None:
        self.hosting.promote(live, peer, self._peer(live, message.peer_id), message.role)

    def demote(self, live: LiveRoom, peer: Participant, message: p.Demote) -> None:
        self.hosting.demote(live, peer, self._peer(live, message.peer_id))

    def react(self, live: LiveRoom, peer: Participant, message: p.React) -> None:
        """An emoji reaction, to everyone (the sender too, so every screen shows the same)."""
        check(Action.REACT, Facts.of(live.room, peer.user.id))
        live.broadcast(p.Reaction(peer_id=peer.peer_id, emoji=message.emoji))

    async def end_by(self, live: LiveRoom, peer: Participant) -> None:
        await self.end(live.room, peer.user)


async def close_stale_stays(store: Store, now: float) -> int:
    """At start: stays a previous run left open are closed (their people are gone)."""
    return await store.run(q.close_open_stays, now)


# PATCH /api/rooms/{code}: each setting's check, giving the value to store.
SETTINGS: dict[str, Callable[[Rooms, Any], Any]] = {
    "title": Rooms._check_title,
    "locked": lambda rooms, value: int(bool(value)),
    "max_participants": Rooms._check_capacity,
    "guests": Rooms._check_guests,
    "lobby": lambda rooms, value: int(bool(value)),
    "reactions": lambda rooms, value: int(bool(value)),
}
