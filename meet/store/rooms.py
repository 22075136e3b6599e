"""Queries for rooms, stays (attendance/call history) and chat messages (with FTS5 search)."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from meet.store.records import Call, Message, Room, Standing, Stay
from meet.store.sql import all_as, fetch_one, one_as, transaction

# The columns update_room may set; anything else is a programming error, refused even under -O.
UPDATABLE = frozenset({"title", "locked", "max_participants", "guests", "lobby", "reactions"})

ROOM_SELECT = (
    "SELECT r.id, r.code, r.title, r.host_id, u.username AS host_username, r.created_at,"
    " r.ended_at, r.locked, r.max_participants, r.guests, r.lobby, r.reactions"
    " FROM rooms r JOIN users u ON u.id = r.host_id"
)


def person(person_id: int) -> tuple[str, int]:
    """The column and id a person is stored under: members by ``user_id``, guests (negative
    ids, see meet.connection.UserRef) by ``guest_id``."""
    return ("guest_id", -person_id) if person_id < 0 else ("user_id", person_id)


def create_room(
    db: sqlite_utils.Database,
    code: str,
    title: str,
    host_id: int,
    now: float,
    max_participants: int,
    guests: str = "lobby",
) -> Room:
    """Insert a room; sqlite3.IntegrityError when the code is already used."""
    db.execute(
        "INSERT INTO rooms (code, title, host_id, created_at, max_participants, guests) VALUES (?, ?, ?, ?, ?, ?)",
        (code, title, host_id, now, max_participants, guests),
    )
    room = room_by_code(db, code)
    if room is None:  # just inserted in this connection: only a broken database gets here
        raise RuntimeError(f"room {code!r} vanished after insert")
    return room


def room_by_code(db: sqlite_utils.Database, code: str) -> Room | None:
    """The room with this code, or None."""
    return one_as(Room, db, f"{ROOM_SELECT} WHERE r.code = ?", (code,))


def rooms_hosted(db: sqlite_utils.Database, host_id: int, limit: int, before: int | None) -> list[Room]:
    """Rooms of one host, newest first, paginated by room id."""
    return all_as(
        Room,
        db,
        f"{ROOM_SELECT} WHERE r.host_id = ? AND r.id < ? ORDER BY r.id DESC LIMIT ?",
        (host_id, 2**62 if before is None else before, limit),
    )


def update_room(db: sqlite_utils.Database, room_id: int, changes: dict[str, Any]) -> None:
    """Set some of title, locked, max_participants; ValueError for any other column."""
    unknown = set(changes) - UPDATABLE
    if unknown:  # column names go into the SQL text: never let an unchecked one through
        raise ValueError(f"update_room cannot set {sorted(unknown)}")
    if changes:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        db.execute(f"UPDATE rooms SET {assignments} WHERE id = ?", (*changes.values(), room_id))


def end_room(db: sqlite_utils.Database, room_id: int, now: float) -> None:
    """Mark the room ended and close every open stay in it."""
    with transaction(db):
        db.execute("UPDATE rooms SET ended_at = ? WHERE id = ? AND ended_at IS NULL", (now, room_id))
        db.execute("UPDATE stays SET left_at = ? WHERE room_id = ? AND left_at IS NULL", (now, room_id))


def open_stay(db: sqlite_utils.Database, room_id: int, person_id: int, now: float, grace: float) -> int:
    """Start a stay, or continue the last one if it is open or ended within ``grace`` seconds."""
    column, key = person(person_id)
    with transaction(db):
        last = fetch_one(
            db,
            f"SELECT id, left_at FROM stays WHERE room_id = ? AND {column} = ? ORDER BY id DESC LIMIT 1",
            (room_id, key),
        )
        if last is not None and (last["left_at"] is None or last["left_at"] >= now - grace):
            db.execute("UPDATE stays SET left_at = NULL WHERE id = ?", (last["id"],))
            return int(last["id"])
        cursor = db.execute(
            f"INSERT INTO stays (room_id, {column}, joined_at) VALUES (?, ?, ?)", (room_id, key, now)
        )
        return int(cursor.lastrowid or 0)


def close_stay(db: sqlite_utils.Database, stay_id: int, now: float) -> None:
    db.execute("UPDATE stays SET left_at = ? WHERE id = ? AND left_at IS NULL", (now, stay_id))


def close_open_stays(db: sqlite_utils.Database, now: float) -> int:
    """Close stays left open by a previous run (crash or shutdown)."""
    return int(db.execute("UPDATE stays SET left_at = ? WHERE left_at IS NULL", (now,)).rowcount)


def add_message(
    db: sqlite_utils.Database, room_id: int, person_id: int, username: str, text: str, now: float
) -> Message:
    """Store a chat message (by a member or a guest) and return it."""
    column, key = person(person_id)
    cursor = db.execute(
        f"INSERT INTO messages (room_id, {column}, username, text, created_at) VALUES (?, ?, ?, ?, ?)",
        (room_id, key, username, text, now),
    )
    return Message(id=int(cursor.lastrowid or 0), user_id=person_id, username=username, text=text, created_at=now)


# A guest's messages carry its negative person id (see person()).
MESSAGE_COLUMNS = "m.id, COALESCE(m.user_id, -m.guest_id) AS user_id, m.username, m.text, m.created_at"


def recent_messages(db: sqlite_utils.Database, room_id: int, limit: int) -> list[Message]:
    """The last ``limit`` messages, oldest first (replayed to people who join)."""
    rows = all_as(
        Message,
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
) -> list[Message]:
    """Messages of a room, newest first, paginated by id, optionally full-text filtered."""
    upper = 2**62 if before is None else before
    if q and fts_query(q):
        return all_as(
            Message,
            db,
            f"SELECT {MESSAGE_COLUMNS} FROM messages_fts f JOIN messages m ON m.id = f.rowid"
            " WHERE messages_fts MATCH ? AND m.room_id = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?",
            (fts_query(q), room_id, upper, limit),
        )
    return all_as(
        Message,
        db,
        f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.room_id = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?",
        (room_id, upper, limit),
    )


def calls_of(db: sqlite_utils.Database, user_id: int, limit: int, before: int | None) -> list[Call]:
    """A user's stays, newest first, with their room."""
    return all_as(
        Call,
        db,
        "SELECT s.id, s.joined_at, s.left_at, r.code, r.title, r.host_id FROM stays s"
        " JOIN rooms r ON r.id = s.room_id WHERE s.user_id = ? AND s.id < ? ORDER BY s.id DESC LIMIT ?",
        (user_id, 2**62 if before is None else before, limit),
    )


def attendance(db: sqlite_utils.Database, room_id: int) -> list[Stay]:
    """Every stay in a room with its member or guest, in order of joining (guests have
    negative ids and the name they gave)."""
    return all_as(
        Stay,
        db,
        "SELECT COALESCE(s.user_id, -s.guest_id) AS user_id, COALESCE(u.username, g.name) AS username,"
        " s.joined_at, s.left_at FROM stays s LEFT JOIN users u ON u.id = s.user_id"
        " LEFT JOIN guests g ON g.id = s.guest_id WHERE s.room_id = ? ORDER BY s.joined_at, s.id",
        (room_id,),
    )


def ban(db: sqlite_utils.Database, room_id: int, person_id: int, now: float) -> None:
    """Keep a removed person out of this room for good (a guest: its pass is revoked and
    marked removed, which also keeps its address from getting another for this room)."""
    if person_id < 0:
        db.execute(
            "UPDATE guests SET removed = 1, revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND room_id = ?",
            (now, -person_id, room_id),
        )
        return
    db.execute(
        "INSERT OR IGNORE INTO room_bans (room_id, user_id, created_at) VALUES (?, ?, ?)", (room_id, person_id, now)
    )


def standing(db: sqlite_utils.Database, room_id: int, person_id: int, since: float) -> Standing:
    """Whether the person is banned from the room, was in it recently (a stay still open or
    closed at ``since`` or later) and ever took part, in one query. A guest is banned when
    the host removed it (its pass is marked ``removed``)."""
    column, key = person(person_id)
    bans = (
        "SELECT 1 FROM guests WHERE id = ?2 AND room_id = ?1 AND removed"
        if person_id < 0
        else "SELECT 1 FROM room_bans WHERE room_id = ?1 AND user_id = ?2"
    )
    banned, recent, took_part = db.execute(
        f"SELECT EXISTS ({bans}),"
        f" EXISTS (SELECT 1 FROM stays WHERE room_id = ?1 AND {column} = ?2 AND (left_at IS NULL OR left_at >= ?3)),"
        f" EXISTS (SELECT 1 FROM stays WHERE room_id = ?1 AND {column} = ?2)",
        (room_id, key, since),
    ).fetchone()
    return Standing(banned=bool(banned), recent=bool(recent), took_part=bool(took_part))
