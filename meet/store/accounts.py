"""Queries for users, sessions, email codes and password resets.

Plain sync functions taking the ``sqlite_utils.Database``; call them through
``Store.run``. Functions that read then write do so in one IMMEDIATE transaction so two
requests can never both consume the same code or token.
"""

from __future__ import annotations

import hmac
import sqlite3

import sqlite_utils

from meet.errors import Conflict, NotFound
from meet.store.sql import Row, transaction
from meet.store.sql import fetch_all as _all
from meet.store.sql import fetch_one as _one

USER_COLUMNS = (
    "id, username, email, password_hash, verified, is_admin, created_at, last_login_at"
)


def user_by_id(db: sqlite_utils.Database, user_id: int) -> Row | None:
    return _one(db, f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,))


def user_by_email(db: sqlite_utils.Database, email: str) -> Row | None:
    return _one(db, f"SELECT {USER_COLUMNS} FROM users WHERE email = ?", (email,))


def user_by_login(db: sqlite_utils.Database, login: str) -> Row | None:
    """Find a user by email (when ``login`` holds an @) or username, case-insensitively."""
    column = "email" if "@" in login else "username"
    return _one(db, f"SELECT {USER_COLUMNS} FROM users WHERE {column} = ?", (login,))


def list_users(db: sqlite_utils.Database) -> list[Row]:
    return _all(db, f"SELECT {USER_COLUMNS} FROM users ORDER BY id")


def signup_user(
    db: sqlite_utils.Database, username: str, email: str, password_hash: str, now: float
) -> Row:
    """Create an unverified user, or take over the unverified account holding ``email``.

    Raises Conflict when the username belongs to someone else or the email is verified.
    """
    with transaction(db):
        by_email = user_by_email(db, email)
        if by_email is not None and by_email["verified"]:
            raise Conflict("That email address is already registered.", code="email_taken", field="email")
        by_name = _one(db, "SELECT id FROM users WHERE username = ?", (username,))
        if by_name is not None and (by_email is None or by_name["id"] != by_email["id"]):
            raise Conflict("That username is taken.", code="username_taken", field="username")
        if by_email is None:
            user_id = db.execute(
                "INSERT INTO users (username, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (username, email, password_hash, now),
            ).lastrowid
        else:
            user_id = by_email["id"]
            db.execute(
                "UPDATE users SET username = ?, email = ?, password_hash = ?, created_at = ? WHERE id = ?",
                (username, email, password_hash, now, user_id),
            )
            db.execute("DELETE FROM email_codes WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
    user = user_by_id(db, int(user_id or 0))
    assert user is not None
    return user


def add_user(
    db: sqlite_utils.Database,
    username: str,
    email: str,
    password_hash: str,
    now: float,
    verified: bool,
    is_admin: bool,
) -> Row:
    """Insert a user directly (admin CLI); Conflict when the name or email is taken."""
    with transaction(db):
        if _one(db, "SELECT id FROM users WHERE username = ?", (username,)):
            raise Conflict("That username is taken.", code="username_taken", field="username")
        if _one(db, "SELECT id FROM users WHERE email = ?", (email,)):
            raise Conflict("That email address is already registered.", code="email_taken", field="email")
        user_id = db.execute(
            "INSERT INTO users (username, email, password_hash, verified, is_admin, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (username, email, password_hash, int(verified), int(is_admin), now),
        ).lastrowid
    user = user_by_id(db, int(user_id or 0))
    assert user is not None
    return user


def delete_user(db: sqlite_utils.Database, login: str) -> None:
    """Remove a user and (by cascade) everything that hangs off it."""
    with transaction(db):
        user = user_by_login(db, login)
        if user is None:
            raise NotFound(f"No user {login!r}.", code="user_not_found")
        db.execute("DELETE FROM users WHERE id = ?", (user["id"],))


def set_password(db: sqlite_utils.Database, user_id: int, password_hash: str) -> None:
    db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


def record_login(
    db: sqlite_utils.Database,
    user_id: int,
    token_hash: str,
    now: float,
    expires_at: float,
    user_agent: str,
    new_password_hash: str | None,
) -> None:
    """Create a session (and store a rehashed password) for a successful sign-in."""
    with transaction(db):
        db.execute(
            "INSERT INTO sessions (user_id, token_hash, created_at, expires_at, last_seen_at, user_agent)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, token_hash, now, expires_at, now, user_agent[:256]),
        )
        db.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (now, user_id))
        if new_password_hash is not None:
            set_password(db, user_id, new_password_hash)


def session_user(db: sqlite_utils.Database, token_hash: str, now: float) -> tuple[int, Row] | None:
    """(session id, user) for a live session, or None when unknown, revoked or expired."""
    row = _one(
        db,
        "SELECT id, user_id, last_seen_at FROM sessions"
        " WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?",
        (token_hash, now),
    )
    if row is None:
        return None
    if row["last_seen_at"] is None or now - row["last_seen_at"] > 60:
        # Recorded at most once a minute: a write per request would serialise every reader.
        try:
            db.execute("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (now, row["id"]))
        except sqlite3.OperationalError as exc:
            # Only a hint: on a full disk, signed-in reads must keep working.
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_FULL:
                raise
    user = user_by_id(db, row["user_id"])
    return None if user is None else (row["id"], user)


def revoke_session(db: sqlite_utils.Database, session_id: int, now: float) -> None:
    db.execute(
        "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, session_id)
    )


def revoke_all_sessions(db: sqlite_utils.Database, user_id: int, now: float) -> None:
    db.execute(
        "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (now, user_id)
    )


def replace_email_code(
    db: sqlite_utils.Database, user_id: int, code_hash: str, link_nonce: str, expires_at: float
) -> None:
    """Store a new verification code; any earlier code of that user dies."""
    with transaction(db):
        db.execute("DELETE FROM email_codes WHERE user_id = ?", (user_id,))
        db.execute(
            "INSERT INTO email_codes (user_id, code_hash, link_nonce, expires_at) VALUES (?, ?, ?, ?)",
            (user_id, code_hash, link_nonce, expires_at),
        )


def verify_code(
    db: sqlite_utils.Database, email: str, code_hash: str, now: float, max_attempts: int
) -> Row | None:
    """Mark the user verified when ``code_hash`` matches their live code.

    A wrong code counts an attempt; the code is burnt at ``max_attempts``.
    Returns the verified user, or None.
    """
    with transaction(db):
        user = user_by_email(db, email)
        if user is None or user["verified"]:
            return None
        code = _one(
            db,
            "SELECT id, code_hash, attempts FROM email_codes"
            " WHERE user_id = ? AND used_at IS NULL AND expires_at > ? AND attempts < ?",
            (user["id"], now, max_attempts),
        )
        if code is None:
            return None
        if not hmac.compare_digest(code["code_hash"], code_hash):
            db.execute("UPDATE email_codes SET attempts = attempts + 1 WHERE id = ?", (code["id"],))
            return None
        db.execute("UPDATE email_codes SET used_at = ? WHERE id = ?", (now, code["id"]))
        db.execute("UPDATE users SET verified = 1 WHERE id = ?", (user["id"],))
    return user_by_id(db, user["id"])


def verify_link(db: sqlite_utils.Database, user_id: int, link_nonce: str, now: float) -> Row | None:
    """Mark the user verified when ``link_nonce`` names their live code; None otherwise."""
    with transaction(db):
        code = _one(
            db,
            "SELECT id FROM email_codes WHERE user_id = ? AND link_nonce = ?"
            " AND used_at IS NULL AND expires_at > ?",
            (user_id, link_nonce, now),
        )
        if code is None:
            return None
        db.execute("UPDATE email_codes SET used_at = ? WHERE id = ?", (now, code["id"]))
        db.execute("UPDATE users SET verified = 1 WHERE id = ?", (user_id,))
    return user_by_id(db, user_id)


def add_reset(db: sqlite_utils.Database, user_id: int, nonce_hash: str, expires_at: float) -> None:
    db.execute(
        "INSERT INTO password_resets (user_id, nonce_hash, expires_at) VALUES (?, ?, ?)",
        (user_id, nonce_hash, expires_at),
    )


def consume_reset(
    db: sqlite_utils.Database, user_id: int, nonce_hash: str, password_hash: str, now: float
) -> bool:
    """Use a live reset token: set the password, kill every session and other reset tokens."""
    with transaction(db):
        row = _one(
            db,
            "SELECT id FROM password_resets WHERE user_id = ? AND nonce_hash = ?"
            " AND used_at IS NULL AND expires_at > ?",
            (user_id, nonce_hash, now),
        )
        if row is None:
            return False
        db.execute(
            "UPDATE password_resets SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
            (now, user_id),
        )
        set_password(db, user_id, password_hash)
        # The link reached the mailbox, so the address is proven too.
        db.execute("UPDATE users SET verified = 1 WHERE id = ?", (user_id,))
        revoke_all_sessions(db, user_id, now)
    return True


def purge_expired(db: sqlite_utils.Database, now: float, grace: float = 86400.0) -> int:
    """Delete sessions, codes and reset tokens that can no longer be used."""
    cutoff = now - grace
    total = 0
    with transaction(db):
        for sql in (
            "DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ?",
            "DELETE FROM email_codes WHERE expires_at < ? OR used_at < ?",
            "DELETE FROM password_resets WHERE expires_at < ? OR used_at < ?",
        ):
            total += db.execute(sql, (cutoff, cutoff)).rowcount
    return total
