"""Queries of the administration: users with their state, rooms by search, the audit log.

Plain sync functions taking the ``sqlite_utils.Database``; call them through ``Store.run``.
Searches are substring matches (``LIKE`` with the wildcards of the search escaped) and come
back as one page plus the total of matches, so a page can show "41–60 of 312".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from meet.errors import Conflict, NotFound
from meet.store.accounts import USER_COLUMNS, User, revoke_all_sessions, user_by_id
from meet.store.records import Room
from meet.store.rooms import ROOM_SELECT
from meet.store.sql import all_as, fetch_all, fetch_one, transaction


@dataclass(frozen=True)
class AdminUser:
    """An account as an admin sees it: its state too (never the password hash)."""

    user: User
    disabled_at: float | None

    def public(self) -> dict[str, Any]:
        return {
            **self.user.public(),
            "last_login_at": self.user.last_login_at,
            "disabled": self.disabled_at is not None,
            "disabled_at": self.disabled_at,
        }


@dataclass(frozen=True)
class AuditEntry:
    """One admin action: who did it (as they were called then), what, to what, when."""

    id: int
    created_at: float
    admin_id: int | None
    admin_username: str
    action: str
    target: str
    detail: str  # JSON

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.created_at,
            "admin": {"id": self.admin_id, "username": self.admin_username},
            "action": self.action,
            "target": self.target,
            "detail": json.loads(self.detail or "{}"),
        }


def like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere; its own % and _ match only themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _admin_user(row: dict[str, Any]) -> AdminUser:
    disabled_at = row.pop("disabled_at")
    return AdminUser(User(**row), disabled_at)


def search_users(db: sqlite_utils.Database, text: str, limit: int, offset: int) -> tuple[int, list[AdminUser]]:
    """Users whose username or email contains ``text`` (all when empty), by id; and the total."""
    where = "WHERE username LIKE ? ESCAPE '\\' OR email LIKE ? ESCAPE '\\'"
    params: tuple[Any, ...] = (like(text), like(text))
    total_row = fetch_one(db, f"SELECT COUNT(*) AS n FROM users {where}", params)
    rows = fetch_all(
        db, f"SELECT {USER_COLUMNS}, disabled_at FROM users {where} ORDER BY id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return int(total_row["n"] if total_row else 0), [_admin_user(row) for row in rows]


def admin_user(db: sqlite_utils.Database, user_id: int) -> AdminUser:
    """One user with their state; NotFound when there is no such user."""
    row = fetch_one(db, f"SELECT {USER_COLUMNS}, disabled_at FROM users WHERE id = ?", (user_id,))
    if row is None:
        raise NotFound(f"There is no user {user_id}.", code="user_not_found")
    return _admin_user(row)


def keep_an_admin(db: sqlite_utils.Database, user_id: int) -> None:
    """Conflict when ``user_id`` is the last active (enabled) admin: taking their rights away,
    disabling or deleting them would leave nobody able to administer the server. (Each admin
    is kept from acting on themselves; this also settles two admins acting on each other at once.)"""
    row = fetch_one(
        db,
        "SELECT SUM(id = ?) AS target, SUM(id != ?) AS others FROM users WHERE is_admin AND disabled_at IS NULL",
        (user_id, user_id),
    )
    if row is not None and row["target"] and not row["others"]:
        raise Conflict("This is the last active admin of the server.", code="last_admin")


def set_flag(db: sqlite_utils.Database, user_id: int, column: str, value: bool) -> AdminUser:
    """Set ``verified`` or ``is_admin``."""
    if column not in ("verified", "is_admin"):
        raise ValueError(column)
    with transaction(db):
        admin_user(db, user_id)
        if column == "is_admin" and not value:
            keep_an_admin(db, user_id)
        db.execute(f"UPDATE users SET {column} = ? WHERE id = ?", (int(value), user_id))
    return admin_user(db, user_id)


def set_disabled(db: sqlite_utils.Database, user_id: int, now: float | None) -> AdminUser:
    """Disable (``now``) or enable (None) a user; disabling revokes every session of theirs."""
    with transaction(db):
        current = admin_user(db, user_id)
        if now is not None:
            keep_an_admin(db, user_id)
            revoke_all_sessions(db, user_id, now)
            if current.disabled_at is not None:
                now = current.disabled_at  # disabling twice keeps the first time
        db.execute("UPDATE users SET disabled_at = ? WHERE id = ?", (now, user_id))
    return admin_user(db, user_id)


def delete_user_by_id(db: sqlite_utils.Database, user_id: int) -> User:
    """Remove a user (and by cascade their sessions, rooms, …); returns what they were."""
    with transaction(db):
        user = user_by_id(db, user_id)
        if user is None:
            raise NotFound(f"There is no user {user_id}.", code="user_not_found")
        keep_an_admin(db, user_id)
        db.execute("DELETE FROM users WHERE id = ?", (user_id,))
    return user


def search_rooms(
    db: sqlite_utils.Database, text: str, live: list[str], limit: int, offset: int
) -> tuple[int, list[Room]]:
    """Rooms whose code, title or host's name contains ``text``: the ``live`` codes first,
    then the newest; and the total of matches."""
    where = (
        " WHERE r.code LIKE ? ESCAPE '\\' OR r.title LIKE ? ESCAPE '\\' OR u.username LIKE ? ESCAPE '\\'"
    )
    params: tuple[Any, ...] = (like(text),) * 3
    total_row = fetch_one(
        db, "SELECT COUNT(*) AS n FROM rooms r JOIN users u ON u.id = r.host_id" + where, params
    )
    order = " ORDER BY r.code IN (SELECT value FROM json_each(?)) DESC, r.id DESC LIMIT ? OFFSET ?"
    rooms = all_as(Room, db, ROOM_SELECT + where + order, (*params, json.dumps(live), limit, offset))
    return int(total_row["n"] if total_row else 0), rooms


def add_audit(
    db: sqlite_utils.Database, now: float, admin: User, action: str, target: str, detail: dict[str, Any]
) -> None:
    """Record one admin action."""
    db.execute(
        "INSERT INTO admin_audit (created_at, admin_id, admin_username, action, target, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (now, admin.id, admin.username, action, target, json.dumps(detail, sort_keys=True)),
    )


def audit_page(db: sqlite_utils.Database, limit: int, offset: int) -> tuple[int, list[AuditEntry]]:
    """The audit log, newest first; and its length."""
    total_row = fetch_one(db, "SELECT COUNT(*) AS n FROM admin_audit")
    entries = all_as(
        AuditEntry, db,
        "SELECT id, created_at, admin_id, admin_username, action, target, detail FROM admin_audit"
        " ORDER BY id DESC LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return int(total_row["n"] if total_row else 0), entries


def database_bytes(db: sqlite_utils.Database) -> int:
    """The database's size: its pages (the WAL file comes on top until a checkpoint)."""
    row = db.execute("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").fetchone()
    return int(row[0])
