"""Queries for guest passes: people let into one room with only a name (no account row)."""

from __future__ import annotations

import sqlite_utils

from meet.store.records import Guest
from meet.store.sql import one_as

GUEST_SELECT = "SELECT id, room_id, name, address, created_at, expires_at, revoked_at, removed FROM guests"


def create_guest(
    db: sqlite_utils.Database, room_id: int, name: str, token_hash: str, address: str, now: float, expires_at: float
) -> Guest:
    """Record a new guest pass (its token is kept only as a keyed hash)."""
    cursor = db.execute(
        "INSERT INTO guests (room_id, name, token_hash, address, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (room_id, name, token_hash, address, now, expires_at),
    )
    guest = one_as(Guest, db, f"{GUEST_SELECT} WHERE id = ?", (cursor.lastrowid,))
    if guest is None:  # just inserted in this connection: only a broken database gets here
        raise RuntimeError("guest pass vanished after insert")
    return guest


def guest_by_token(db: sqlite_utils.Database, token_hash: str) -> Guest | None:
    """The pass a token belongs to, whatever its state (the caller checks validity)."""
    return one_as(Guest, db, f"{GUEST_SELECT} WHERE token_hash = ?", (token_hash,))


def removed_from(db: sqlite_utils.Database, room_id: int, address: str) -> bool:
    """Whether a host removed a guest who came from ``address`` from this room."""
    row = db.execute(
        "SELECT EXISTS (SELECT 1 FROM guests WHERE room_id = ? AND address = ? AND removed)", (room_id, address)
    ).fetchone()
    return bool(row[0])


def revoke_guest(db: sqlite_utils.Database, guest_id: int, now: float) -> None:
    """End a pass (denied at the lobby, or the meeting ended): its token no longer opens the room."""
    db.execute("UPDATE guests SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, guest_id))


def revoke_room_guests(db: sqlite_utils.Database, room_id: int, now: float) -> int:
    """End every pass of a room (the meeting ended)."""
    return int(
        db.execute("UPDATE guests SET revoked_at = ? WHERE room_id = ? AND revoked_at IS NULL", (now, room_id)).rowcount
    )
