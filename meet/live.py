"""Live rooms: who is in a meeting right now, and the frames sent to all of them.

Shared by the rooms service (``meet.rooms``) and the media routing (``meet.media``), which
both act on the same live state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meet import protocol as p
from meet.connection import Connection, UserRef
from meet.store.records import Room


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

    def public(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "user": self.user.public(),
            "role": self.role,
            "joined_at": self.joined_at,
            "audio": self.audio,
            "video": self.video,
            "screen": self.screen,
            "hand": self.hand,
        }


@dataclass
class LiveRoom:
    """A room with people in it (or joining)."""

    room: Room  # the record as last read (updated when the host changes it)
    mode: str = "mesh"
    peers: dict[str, Participant] = field(default_factory=dict)
    # The peer ids still joining: admitted (their seat is held) but not yet in ``peers``.
    joining: set[str] = field(default_factory=set)

    def broadcast(self, message: p.Message, exclude: str | None = None) -> None:
        frame = p.encode(message)  # once, not once per member
        for peer_id, peer in list(self.peers.items()):
            if peer_id != exclude:
                peer.conn.send_frame(frame)
