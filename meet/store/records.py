"""Typed records the room queries return (frozen: a record is a snapshot of the database).

Field names match the selected columns, so ``store.sql.one_as(Room, …)`` builds them. The
``public()`` methods give the JSON shapes clients see (documented in docs/protocol.md and the
README); they must not change without updating both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meet.config import GUEST_MODES


@dataclass(frozen=True)
class Room:
    """A meeting as stored: its code, title, host, lock, capacity and whether it ended."""

    id: int
    code: str
    title: str
    host_id: int
    host_username: str
    created_at: float
    ended_at: float | None
    locked: bool
    max_participants: int
    guests: str = "lobby"  # GUEST_MODES: may people without an account join, and how
    lobby: bool = False  # signed-in people who are not hosts wait in the lobby too
    reactions: bool = True  # participants may send emoji reactions

    def __post_init__(self) -> None:
        for flag in ("locked", "lobby", "reactions"):
            object.__setattr__(self, flag, bool(getattr(self, flag)))  # SQLite stores 0/1
        if self.guests not in GUEST_MODES:
            raise ValueError(f"unknown guests mode {self.guests!r}")

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def public(self) -> dict[str, Any]:
        """The room as clients see it (``room`` in replies and in ``welcome``)."""
        return {
            "code": self.code,
            "title": self.title,
            "host": {"id": self.host_id, "username": self.host_username},
            "created_at": self.created_at,
            "status": "ended" if self.ended else "open",
            "ended_at": self.ended_at,
            "locked": self.locked,
            "max_participants": self.max_participants,
            "guests": self.guests,
            "lobby": self.lobby,
            "reactions": self.reactions,
        }


@dataclass(frozen=True)
class Message:
    """A chat message; ``username`` is kept as it was when the message was sent."""

    id: int
    user_id: int  # a guest's is negative (see meet.connection.UserRef); 0 for a deleted account
    username: str
    text: str
    created_at: float

    def public(self) -> dict[str, Any]:
        """The message as clients see it (history pages, ``welcome`` replay, ``chat``)."""
        user: dict[str, Any] = {"id": self.user_id, "username": self.username}
        if self.user_id < 0:
            user["guest"] = True
        return {"id": self.id, "user": user, "text": self.text, "created_at": self.created_at}


@dataclass(frozen=True)
class Stay:
    """One continuous presence of a person in a room (attendance report rows)."""

    user_id: int  # negative for a guest
    username: str
    joined_at: float
    left_at: float | None


@dataclass(frozen=True)
class Call:
    """One of my stays with the room it was in (call history rows)."""

    id: int
    joined_at: float
    left_at: float | None
    code: str
    title: str
    host_id: int


@dataclass(frozen=True)
class Standing:
    """What the store knows about one person in one room, for the access rules."""

    banned: bool  # removed by the host, for good
    recent: bool  # has a stay still open or closed within the reconnect grace
    took_part: bool  # has ever had a stay in the room


@dataclass(frozen=True)
class Guest:
    """A guest pass: a name let into one room by a signed, revocable token."""

    id: int
    room_id: int
    name: str
    address: str
    created_at: float
    expires_at: float
    revoked_at: float | None
    removed: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "removed", bool(self.removed))

    def valid(self, now: float) -> bool:
        """Not revoked and not expired."""
        return self.revoked_at is None and now < self.expires_at
