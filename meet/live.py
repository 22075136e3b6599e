"""Live rooms: who is in a meeting right now, who hosts it, who waits in its lobby, and the
frames sent to all of them.

Shared by the rooms service (``meet.rooms``), its host powers (``meet.hosting``), the lobby
(``meet.lobby``) and the media routing (``meet.media``), which all act on the same live state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from meet import protocol as p
from meet import wire
from meet.connection import Connection, UserRef
from meet.store.records import Room

HOST, COHOST, PARTICIPANT = "host", "cohost", "guest"  # roles; "guest" is the historical name of a participant
HOSTING = (HOST, COHOST)


@dataclass
class Participant:
    """One connection in a room (a person with two tabs is two participants)."""

    peer_id: str
    code: str
    conn: Connection
    role: str
    joined_at: float
    stay_id: int
    audio: bool = True
    video: bool = True
    screen: bool = False
    hand: bool = False

    @property
    def user(self) -> UserRef:
        return self.conn.user

    @property
    def hosting(self) -> bool:
        """Has host powers (the host or a co-host)."""
        return self.role in HOSTING

    def public(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "user": self.user.public(),
            "role": self.role,
            "guest": self.user.guest,
            "joined_at": self.joined_at,
            "audio": self.audio,
            "video": self.video,
            "screen": self.screen,
            "hand": self.hand,
        }


@dataclass
class Knock:
    """Someone waiting in the lobby for a host's answer."""

    conn: Connection
    since: float
    decided: trio.Event = field(default_factory=trio.Event)
    outcome: str = ""  # set with ``decided``: "admitted", "denied" or "ended"
    told_host_present: bool | None = None  # what its last ``lobby`` message said

    @property
    def id(self) -> str:
        return self.conn.id

    def message(self) -> p.Knock:
        user = self.conn.user
        return p.Knock(id=self.id, name=user.username, guest=user.guest)


@dataclass
class LiveRoom:
    """A room with people in it (or joining, or waiting in its lobby)."""

    room: Room  # the record as last read (updated when a host changes it)
    mode: str = "mesh"
    peers: dict[str, Participant] = field(default_factory=dict)
    # The peer ids still joining: admitted (their seat is held) but not yet in ``peers``.
    joining: set[str] = field(default_factory=set)
    # Who holds the host role now: the creator, or whoever it passed to while they were away.
    host_id: int = 0
    cohosts: set[int] = field(default_factory=set)  # user ids
    knocks: dict[str, Knock] = field(default_factory=dict)  # by connection id, oldest first
    speaker: str | None = None  # relay mode: the dominant speaker's peer id (the relay judges it)

    def __post_init__(self) -> None:
        if not self.host_id:
            self.host_id = self.room.host_id

    @property
    def idle(self) -> bool:
        """Nobody in it, joining it or waiting at its door: the live state can go."""
        return not self.peers and not self.joining and not self.knocks

    def role_of(self, user: UserRef) -> str:
        if user.id == self.host_id:
            return HOST
        return COHOST if user.id in self.cohosts else PARTICIPANT

    def tabs(self, user_id: int) -> list[Participant]:
        """Every connection of one person in the room."""
        return [peer for peer in self.peers.values() if peer.user.id == user_id]

    def hosting(self) -> list[Participant]:
        """The connections with host powers (they answer knocks)."""
        return [peer for peer in self.peers.values() if peer.hosting]

    def broadcast(self, message: p.Message, exclude: str | None = None) -> None:
        frame = wire.frame(message)  # once, not once per member
        for peer_id, peer in list(self.peers.items()):
            if peer_id != exclude:
                peer.conn.send_frame(frame)

    def tell_hosting(self, message: p.Message) -> None:
        """Send to the hosts and co-hosts present."""
        frame = wire.frame(message)
        for peer in self.hosting():
            peer.conn.send_frame(frame)

    def tell_participants(self, message: p.Message) -> None:
        """Send to everyone present without host powers."""
        frame = wire.frame(message)
        for peer in list(self.peers.values()):
            if not peer.hosting:
                peer.conn.send_frame(frame)
