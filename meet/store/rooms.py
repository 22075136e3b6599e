"""Queries for rooms, stays (attendance/call history) and chat messages (with FTS5 search)."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from meet.store.sql import Row, transaction
from meet.store.sql import fetch_all as _all
from meet.store.sql import fetch_one as _one

ROOM_SELECT = (
    "SELECT r.id, r.code, r.title, r.host_id, u.username AS host_username, r.created_at,"
    " r.ended_at, r.locked, r.max_participants FROM rooms r JOIN users u ON u.id = r.host_id"
)


def create_room(
    db: sqlite_utils.Database, code: str, title: str, host_id: int, now: float, max_participants: int
) -> Row:
    """Insert a room; sqlite3.IntegrityError when the code is already used."""
    db.execute(
        "INSERT INTO rooms (code, title, host_id, created_at, max_participants) VALUES (?, ?, ?, ?, ?)",
        (code, title, host_id, now, max_participants),
    )
    room = room_by_code(db, code)
    assert room is not None
    return room


def room_by_code(db: sqlite_utils.Database, code: str) -> Row | None:
    return _one(db, f"{ROOM_SELECT} WHERE r.code = ?", (code,))


def rooms_hosted(db: sqlite_utils.Database, host_id: int, limit: int, before: int | None) -> list[Row]:
    """Rooms of one host, newest first, paginated by room id."""
    return _all(
        db,
        f"{ROOM_SELECT} WHERE r.host_id = ? AND r.id < ? ORDER BY r.id DESC LIMIT ?",
        (host_id, 2**62 if before is None else before, limit),
    )


def update_room(db: sqlite_utils.Database, room_id: int, changes: dict[str, Any]) -> None:
    allowed = {"title", "locked", "max_participants"}
    assert set(changes) <= allowed
    if changes:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        db.execute(f"UPDATE rooms SET {assignments} WHERE id = ?", (*changes.values(), room_id))


def end_room(db: sqlite_utils.Database, room_id: int, now: float) -> None:
    """Mark the room ended and close every open stay in it."""
    with transaction(db):
        db.execute("UPDATE rooms SET ended_at = ? WHERE id = ? AND ended_at IS NULL", (now, room_id))
        db.execute("UPDATE stays SET left_at = ? WHERE room_id = ? AND left_at IS NULL", (now, room_id))


def open_stay(db: sqlite_utils.Database, room_id: int, user_id: int, now: float, grace: float) -> int:
    """Start a stay, or continue the last one if it is open or ended within ``grace`` seconds."""
    with transaction(db):
        last = _one(
            db,
            "SELECT id, left_at FROM stays WHERE room_id = ? AND user_id = ? ORDER BY id DESC LIMIT 1",
            (room_id, user_id),
        )
        if last is not None and (last["left_at"] is None or last["left_at"] >= now - grace):
            db.execute("UPDATE stays SET left_at = NULL WHERE id = ?", (last["id"],))
            return int(last["id"])
        cursor = db.execute(
            "INSERT INTO stays (room_id, user_id, joined_at) VALUES (?, ?, ?)", (room_id, user_id, now)
        )
        return int(cursor.lastrowid or 0)


def close_stay(db: sqlite_utils.Database, stay_id: int, now: float) -> None:
    db.execute("UPDATE stays SET left_at = ? WHERE id = ? AND left_at IS NULL", (now, stay_id))


def close_open_stays(db: sqlite_utils.Database, now: float) -> int:
    """Close stays left open by a previous run (crash or shutdown)."""
    return int(db.execute("UPDATE stays SET left_at = ? WHERE left_at IS NULL", (now,)).rowcount)


def took_part(db: sqlite_utils.Database, room_id: int, user_id: int) -> bool:
    return _one(db, "SELECT 1 AS x FROM stays WHERE room_id = ? AND user_id = ? LIMIT 1", (room_id, user_id)) is not None


def add_message(
    db: sqlite_utils.Database, room_id: int, user_id: int, username: str, text: str, now: float
) -> Row:
    cursor = db.execute(
        "INSERT INTO messages (room_id, user_id, username, text, created_at) VALUES (?, ?, ?, ?, ?)",
        (room_id, user_id, username, text, now),
    )
    return {"id": cursor.lastrowid, "user_id": user_id, "username": username, "text": text, "created_at": now}


MESSAGE_COLUMNS = "m.id, m.user_id, m.username, m.text, m.created_at"


def recent_messages(db: sqlite_utils.Database, room_id: int, limit: int) -> list[Row]:
    """The last ``limit`` messages, oldest first (replayed to people who join)."""
    rows = _all(
        db,
        f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.room_id = ? ORDER BY m.id DESC LIMIT ?",
        (room_id, limit),
    )
    return rows[::-1]


def fts_query(text: str) -> str:
    """Turn free text into a safe FTS5 query: every word must appear, the last as a prefix."""
    # FTS5 reads the query up to a NUL, which would leave a quote unterminated.
    words = [w.replace('"', '""') for w in text.replace("\x00", " ").split()]
    if not words:
        return ""
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def search_messages(
    db: sqlite_utils.Database, room_id: int, limit: int, before: int | None, q: str | None
) -> list[Row]:
    """Messages of a room, newest first, paginated by id, optionally full-text filtered."""
    upper = 2**62 if before is None else before
    if q and fts_query(q):
        return _all(
            db,
            f"SELECT {MESSAGE_COLUMNS} FROM messages_fts f JOIN messages m ON m.id = f.rowid"
            " WHERE messages_fts MATCH ? AND m.room_id = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?",
            (fts_query(q), room_id, upper, limit),
        )
    return _all(
        db,
        f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.room_id = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?",
        (room_id, upper, limit),
    )


def calls_of(db: sqlite_utils.Database, user_id: int, limit: int, before: int | None) -> list[Row]:
    """A user's stays, newest first, with their room."""
    return _all(
        db,
        "SELECT s.id, s.joined_at, s.left_at, r.code, r.title, r.host_id FROM stays s"
        " JOIN rooms r ON r.id = s.room_id WHERE s.user_id = ? AND s.id < ? ORDER BY s.id DESC LIMIT ?",
        (user_id, 2**62 if before is None else before, limit),
    )


def attendance(db: sqlite_utils.Database, room_id: int) -> list[Row]:
    """Every stay in a room with its user, in order of joining."""
    return _all(
        db,
        "SELECT s.user_id, u.username, s.joined_at, s.left_at FROM stays s"
        " JOIN users u ON u.id = s.user_id WHERE s.room_id = ? ORDER BY s.joined_at, s.id",
        (room_id,),
    )


def ban(db: sqlite_utils.Database, room_id: int, user_id: int, now: float) -> None:
    """Keep a removed person out of this room for good."""
    db.execute(
        "INSERT OR IGNORE INTO room_bans (room_id, user_id, created_at) VALUES (?, ?, ?)", (room_id, user_id, now)
    )


def admission_facts(db: sqlite_utils.Database, room_id: int, user_id: int, since: float) -> tuple[bool, bool]:
    """(banned, was here recently): a stay still open or ended after ``since``."""
    banned = _one(db, "SELECT 1 AS x FROM room_bans WHERE room_id = ? AND user_id = ?", (room_id, user_id))
    recent = _one(
        db,
        "SELECT 1 AS x FROM stays WHERE room_id = ? AND user_id = ? AND (left_at IS NULL OR left_at >= ?) LIMIT 1",
        (room_id, user_id, since),
    )
    return banned is not None, recent is not None
