"""Queries for users, sessions, email codes and password resets.

Plain sync functions taking the ``sqlite_utils.Database``; call them through
``Store.run``. Functions that read then write do so in one IMMEDIATE transaction so two
requests can never both consume the same code or token.
"""

from __future__ import annotations

import hmac
import sqlite3
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from meet.errors import BadRequest, Conflict, NotFound
from meet.store.sql import all_as, one_as, transaction
from meet.store.sql import fetch_one as _one

USER_COLUMNS = "id, username, email, verified, is_admin, created_at, last_login_at"


@dataclass(frozen=True)
class User:
    """An account as the rest of the program sees it: never with the password hash."""

    id: int
    username: str
    email: str
    verified: bool
    is_admin: bool
    created_at: float
    last_login_at: float | None = None

    def __post_init__(self) -> None:
        # SQLite stores booleans as 0/1.
        object.__setattr__(self, "verified", bool(self.verified))
        object.__setattr__(self, "is_admin", bool(self.is_admin))

    def public(self) -> dict[str, Any]:
        """The JSON shape of ``{"user": …}`` for the signed-in user."""
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "verified": self.verified,
            "is_admin": self.is_admin,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Credentials:
    """A user with their password hash: only the sign-in check reads it."""

    user: User
    password_hash: str


@dataclass(frozen=True)
class Signup:
    """What a sign-up did: created ``user``, or found the address already registered to it."""

    user: User
    created: bool


def user_by_id(db: sqlite_utils.Database, user_id: int) -> User | None:
    return one_as(User, db, f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,))


def user_by_email(db: sqlite_utils.Database, email: str) -> User | None:
    return one_as(User, db, f"SELECT {USER_COLUMNS} FROM users WHERE email = ?", (email,))


def _login_column(login: str) -> str:
    return "email" if "@" in login else "username"


def user_by_login(db: sqlite_utils.Database, login: str) -> User | None:
    """Find a user by email (when ``login`` holds an @) or username, case-insensitively."""
    sql = f"SELECT {USER_COLUMNS} FROM users WHERE {_login_column(login)} = ?"
    return one_as(User, db, sql, (login,))


def credentials_by_login(db: sqlite_utils.Database, login: str) -> Credentials | None:
    """The user behind ``login`` (email or username) with their password hash, for sign-in."""
    sql = f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE {_login_column(login)} = ?"
    row = _one(db, sql, (login,))
    if row is None:
        return None
    password_hash = row.pop("password_hash")
    return Credentials(User(**row), password_hash)


def is_disabled(db: sqlite_utils.Database, user_id: int) -> bool:
    """Whether an admin disabled the account (it may not sign in)."""
    row = _one(db, "SELECT disabled_at FROM users WHERE id = ?", (user_id,))
    return row is not None and row["disabled_at"] is not None


def list_users(db: sqlite_utils.Database) -> list[User]:
    return all_as(User, db, f"SELECT {USER_COLUMNS} FROM users ORDER BY id")


def _take_invitation(db: sqlite_utils.Database, token_hash: str, email: str, now: float) -> int:
    """The id of the live invitation ``token_hash`` for ``email``; BadRequest otherwise."""
    row = _one(
        db,
        "SELECT id FROM invitations WHERE token_hash = ? AND email = ? AND used_at IS NULL AND expires_at > ?",
        (token_hash, email, now),
    )
    if row is None:
        raise BadRequest(
            "This invitation is invalid, expired, already used or meant for another email address.",
            code="invalid_invitation",
            field="invite",
        )
    return int(row["id"])


def signup_user(
    db: sqlite_utils.Database,
    username: str,
    email: str,
    password_hash: str,
    now: float,
    invitation_hash: str | None = None,
) -> Signup:
    """Create an unverified user; never touch an existing account.

    Conflict when the username is taken (usernames are public). When ``email`` is registered
    already, nothing is written and the owner is returned (``created`` False): the caller
    answers as if the account were new and mails the owner. With ``invitation_hash``, the
    invitation must be live and for ``email``; it is used up in the same transaction.
    """
    with transaction(db):
        invitation = None if invitation_hash is None else _take_invitation(db, invitation_hash, email, now)
        if _one(db, "SELECT id FROM users WHERE username = ?", (username,)):
            raise Conflict("That username is taken.", code="username_taken", field="username")
        owner = user_by_email(db, email)
        if owner is not None:
            return Signup(owner, created=False)
        user_id = int(
            db.execute(
                "INSERT INTO users (username, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (username, email, password_hash, now),
            ).lastrowid
            or 0
        )
        if invitation is not None:
            db.execute(
                "UPDATE invitations SET used_at = ?, user_id = ? WHERE id = ?", (now, user_id, invitation)
            )
        user = user_by_id(db, user_id)
    if user is None:
        raise NotFound("The new account vanished.", code="user_not_found")
    return Signup(user, created=True)


def add_invitation(
    db: sqlite_utils.Database, email: str, token_hash: str, now: float, expires_at: float
) -> None:
    """Store a single-use invitation for ``email`` (only its keyed hash)."""
    with transaction(db):
        if _one(db, "SELECT id FROM users WHERE email = ?", (email,)):
            raise Conflict("That email address already has an account.", code="email_taken", field="email")
        db.execute(
            "INSERT INTO invitations (email, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (email, token_hash, now, expires_at),
        )


def add_user(
    db: sqlite_utils.Database,
    username: str,
    email: str,
    password_hash: str,
    now: float,
    verified: bool,
    is_admin: bool,
) -> User:
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
    if user is None:
        raise NotFound("The new account vanished.", code="user_not_found")
    return user


def delete_user(db: sqlite_utils.Database, login: str) -> None:
    """Remove a user and (by cascade) everything that hangs off it."""
    with transaction(db):
        user = user_by_login(db, login)
        if user is None:
            raise NotFound(f"No user {login!r}.", code="user_not_found")
        db.execute("DELETE FROM users WHERE id = ?", (user.id,))


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


@dataclass(frozen=True)
class LiveSession:
    """A live session as the session cache keeps it: until when it lasts, and the session
    epoch read *before* it (see :func:`lookup_session`)."""

    id: int
    user: User
    expires_at: float
    epoch: int


def session_epoch(db: sqlite_utils.Database) -> int:
    """The session epoch (migration 8): moves on with every change that ends a session or
    changes what it carries."""
    row = db.execute("SELECT epoch FROM session_epoch WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def lookup_session(db: sqlite_utils.Database, token_hash: str, now: float) -> tuple[int, LiveSession | None]:
    """(epoch, live session or None), the epoch read first.

    Read in this order, the pair is safe to cache without a transaction: a revocation
    committed before the epoch read is seen by the session read (None); one committed after
    it moves the epoch past the one returned, so the cache drops the entry.
    """
    epoch = session_epoch(db)
    found = _session_row(db, token_hash, now)
    if found is None:
        return epoch, None
    row, user = found
    return epoch, LiveSession(row["id"], user, row["expires_at"], epoch)


def session_user(db: sqlite_utils.Database, token_hash: str, now: float) -> tuple[int, User] | None:
    """(session id, user) for a live session, or None when unknown, revoked, expired or its
    account disabled (a sign-in racing the disable must not leave a usable session)."""
    found = _session_row(db, token_hash, now)
    return None if found is None else (found[0]["id"], found[1])


def _session_row(db: sqlite_utils.Database, token_hash: str, now: float) -> tuple[dict[str, Any], User] | None:
    """The live session's row and its user; records ``last_seen_at`` (at most once a minute)."""
    row = _one(
        db,
        "SELECT s.id, s.user_id, s.last_seen_at, s.expires_at FROM sessions AS s JOIN users AS u ON u.id = s.user_id"
        " WHERE s.token_hash = ? AND s.revoked_at IS NULL AND s.expires_at > ? AND u.disabled_at IS NULL",
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
    return None if user is None else (row, user)


def live_sessions(db: sqlite_utils.Database, session_ids: list[int], now: float) -> set[int]:
    """Which of ``session_ids`` are still valid: not revoked, not expired, user still there and
    not disabled."""
    cursor = db.execute(
        "SELECT s.id FROM sessions AS s JOIN users AS u ON u.id = s.user_id"
        " WHERE s.id IN (SELECT value FROM json_each(?)) AND s.revoked_at IS NULL AND s.expires_at > ?"
        " AND u.disabled_at IS NULL",
        (_json_list(session_ids), now),
    )
    return {int(row[0]) for row in cursor.fetchall()}


def _json_list(values: list[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


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
) -> User | None:
    """Mark the user verified when ``code_hash`` matches their live code.

    A wrong code counts an attempt; the code is burnt at ``max_attempts``.
    Returns the verified user, or None.
    """
    with transaction(db):
        user = user_by_email(db, email)
        if user is None or user.verified:
            return None
        code = _one(
            db,
            "SELECT id, code_hash, attempts FROM email_codes"
            " WHERE user_id = ? AND used_at IS NULL AND expires_at > ? AND attempts < ?",
            (user.id, now, max_attempts),
        )
        if code is None:
            return None
        if not hmac.compare_digest(code["code_hash"], code_hash):
            db.execute("UPDATE email_codes SET attempts = attempts + 1 WHERE id = ?", (code["id"],))
            return None
        db.execute("UPDATE email_codes SET used_at = ? WHERE id = ?", (now, code["id"]))
        db.execute("UPDATE users SET verified = 1 WHERE id = ?", (user.id,))
    return user_by_id(db, user.id)


def verify_link(db: sqlite_utils.Database, user_id: int, link_nonce: str, now: float) -> User | None:
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
    """Delete sessions, codes, reset tokens and invitations that can no longer be used."""
    cutoff = now - grace
    total = 0
    with transaction(db):
        for sql in (
            "DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ?",
            "DELETE FROM email_codes WHERE expires_at < ? OR used_at < ?",
            "DELETE FROM password_resets WHERE expires_at < ? OR used_at < ?",
            "DELETE FROM invitations WHERE expires_at < ? OR used_at < ?",
        ):
            total += db.execute(sql, (cutoff, cutoff)).rowcount
    return total
