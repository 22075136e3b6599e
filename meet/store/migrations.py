"""Numbered schema migrations, applied in order at start and recorded in ``migrations``.

Never edit a migration that has shipped: add a new one. Each entry is (version, name, SQL).
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "accounts",
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL COLLATE NOCASE UNIQUE,
            email TEXT NOT NULL COLLATE NOCASE UNIQUE,
            password_hash TEXT NOT NULL,
            verified INTEGER NOT NULL DEFAULT 0,
            is_admin INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL
        );
        CREATE INDEX sessions_user ON sessions(user_id);
        CREATE TABLE email_codes (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            code_hash TEXT NOT NULL,
            link_nonce TEXT NOT NULL,
            expires_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            used_at REAL
        );
        CREATE INDEX email_codes_user ON email_codes(user_id);
        CREATE TABLE password_resets (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            nonce_hash TEXT NOT NULL UNIQUE,
            expires_at REAL NOT NULL,
            used_at REAL
        );
        """,
    ),
    (
        2,
        "session activity",
        """
        ALTER TABLE users ADD COLUMN last_login_at REAL;
        ALTER TABLE sessions ADD COLUMN last_seen_at REAL;
        ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
        """,
    ),
    (
        3,
        "rooms, stays and chat",
        """
        CREATE TABLE rooms (
            id INTEGER PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            host_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            ended_at REAL,
            locked INTEGER NOT NULL DEFAULT 0,
            max_participants INTEGER NOT NULL
        );
        CREATE INDEX rooms_host ON rooms(host_id, id);
        CREATE TABLE stays (
            id INTEGER PRIMARY KEY,
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            joined_at REAL NOT NULL,
            left_at REAL
        );
        CREATE INDEX stays_user ON stays(user_id, id);
        CREATE INDEX stays_room ON stays(room_id, user_id);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
            username TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX messages_room ON messages(room_id, id);
        CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='id');
        CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END
        """,
    ),
    (
        4,
        "room bans",
        """
        CREATE TABLE room_bans (
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            PRIMARY KEY (room_id, user_id)
        )
        """,
    ),
    (
        5,
        "invitations",
        """
        CREATE TABLE invitations (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL COLLATE NOCASE,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL,
            user_id INTEGER REFERENCES users(id) ON DELETE SET NULL
        );
        CREATE INDEX invitations_email ON invitations(email)
        """,
    ),
    (
        6,
        "guests and room settings",
        """
        ALTER TABLE rooms ADD COLUMN guests TEXT NOT NULL DEFAULT 'lobby';
        ALTER TABLE rooms ADD COLUMN lobby INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE rooms ADD COLUMN reactions INTEGER NOT NULL DEFAULT 1;
        CREATE TABLE guests (
            id INTEGER PRIMARY KEY,
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            address TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL,
            removed INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX guests_room ON guests(room_id, address);
        CREATE TABLE stays_new (
            id INTEGER PRIMARY KEY,
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
            guest_id INTEGER REFERENCES guests(id) ON DELETE CASCADE,
            joined_at REAL NOT NULL,
            left_at REAL,
            CHECK ((user_id IS NULL) <> (guest_id IS NULL))
        );
        INSERT INTO stays_new (id, room_id, user_id, joined_at, left_at)
            SELECT id, room_id, user_id, joined_at, left_at FROM stays;
        DROP TABLE stays;
        ALTER TABLE stays_new RENAME TO stays;
        CREATE INDEX stays_user ON stays(user_id, id);
        CREATE INDEX stays_room ON stays(room_id, user_id);
        CREATE INDEX stays_guest ON stays(guest_id);
        ALTER TABLE messages ADD COLUMN guest_id INTEGER REFERENCES guests(id) ON DELETE SET NULL
        """,
    ),
    (
        7,
        "administration",
        """
        ALTER TABLE users ADD COLUMN disabled_at REAL;
        CREATE TABLE admin_audit (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            admin_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
            admin_username TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}'
        )
        """,
    ),
    (
        8,
        "session epoch",
        # One counter that every change ending a session, or changing what a signed-in
        # session carries (meet.accounts.Session: the user's name, email, flags), moves on,
        # in the same transaction, whichever process or connection commits it: the CLI, the
        # admin pages, a manual sqlite3 session. The in-memory session cache (meet/session_cache.py)
        # trusts its entries only while the counter stays where it was when they were read.
        # Triggers rather than calls in each query: a future revoking query cannot forget it.
        # New sign-ins, last_seen_at and last_login_at do not move it (no cached entry can
        # be wrong about them); nor does anything outside users and sessions (chat, rooms).
        """
        CREATE TABLE session_epoch (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            epoch INTEGER NOT NULL
        );
        INSERT INTO session_epoch (id, epoch) VALUES (1, 0);
        CREATE TRIGGER session_epoch_session_changed
            AFTER UPDATE OF user_id, token_hash, expires_at, revoked_at ON sessions BEGIN
            UPDATE session_epoch SET epoch = epoch + 1 WHERE id = 1;
        END;
        CREATE TRIGGER session_epoch_session_deleted AFTER DELETE ON sessions BEGIN
            UPDATE session_epoch SET epoch = epoch + 1 WHERE id = 1;
        END;
        CREATE TRIGGER session_epoch_user_changed
            AFTER UPDATE OF id, username, email, verified, is_admin, created_at, disabled_at ON users BEGIN
            UPDATE session_epoch SET epoch = epoch + 1 WHERE id = 1;
        END;
        CREATE TRIGGER session_epoch_user_deleted AFTER DELETE ON users BEGIN
            UPDATE session_epoch SET epoch = epoch + 1 WHERE id = 1;
        END
        """,
    ),
]

LATEST = MIGRATIONS[-1][0]
