"""The SQLite store: migrations on real files, and the account queries through a real Store."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
import trio

from meet.errors import BadRequest, Conflict, NotFound, StoreError
from meet.store import Store, open_store
from meet.store import accounts as q
from meet.store import db as store_db
from meet.store import guests as gq
from meet.store import rooms as qr
from meet.store.accounts import User
from meet.store.db import migrate, schema_version
from meet.store.migrations import LATEST, MIGRATIONS
from meet.store.records import Call, Message, Room, Standing, Stay
from meet.store.sql import transaction

NOW = 1_800_000_000.0
DAY = 86400.0


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read with a separate, short-lived sqlite3 connection."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def columns(path: Path, table: str) -> list[str]:
    return [r[1] for r in rows(path, f"PRAGMA table_info({table})")]


async def get_user(store: Store, user_id: int) -> User:
    user = await store.run(q.user_by_id, user_id)
    assert user is not None
    return user


async def password_of(store: Store, login: str) -> str:
    found = await store.run(q.credentials_by_login, login)
    assert found is not None
    return found.password_hash


def create_v1_database(path: Path) -> None:
    """A database as meet 1-schema left it: only the first migration applied, one user."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        version, name, sql = MIGRATIONS[0]
        assert version == 1
        conn.executescript(sql)
        conn.execute("INSERT INTO migrations VALUES (?, ?, ?)", (version, name, NOW - 100 * DAY))
        conn.execute(
            "INSERT INTO users (username, email, password_hash, verified, is_admin, created_at)"
            " VALUES ('olga', 'olga@example.org', 'hash-olga', 1, 1, ?)",
            (NOW - 100 * DAY,),
        )
    finally:
        conn.close()


# -- migrations ----------------------------------------------------------------------------


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m[0] for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST == len(MIGRATIONS)


async def test_fresh_database_ends_at_latest(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "meet.db"
    async with open_store(path, NOW) as store:
        assert await store.run(schema_version) == LATEST
        journal = await store.run(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0])
        foreign_keys = await store.run(lambda db: db.execute("PRAGMA foreign_keys").fetchone()[0])
        assert journal == "wal"
        assert foreign_keys == 1
    assert rows(path, "SELECT version, name, applied_at FROM migrations ORDER BY version") == [
        (version, name, NOW) for version, name, _ in MIGRATIONS
    ]
    assert {"users", "sessions", "email_codes", "password_resets", "migrations"} <= {
        r[0] for r in rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }


async def test_version_1_database_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "meet.db"
    create_v1_database(path)
    assert "last_login_at" not in columns(path, "users")

    async with open_store(path, NOW) as store:
        assert await store.run(schema_version) == LATEST
        olga = await store.run(q.user_by_login, "OLGA")  # usernames compare case-insensitively
        assert olga is not None
        assert olga.email == "olga@example.org"
        assert await password_of(store, "olga") == "hash-olga"
        assert olga.verified is True and olga.is_admin is True
        assert olga.last_login_at is None
        # The new columns work: a sign-in can be recorded on the upgraded schema.
        await store.run(q.record_login, olga.id, "tok", NOW, NOW + DAY, "agent", None)
        assert (await get_user(store, olga.id)).last_login_at == NOW

    assert "last_login_at" in columns(path, "users")
    assert {"last_seen_at", "user_agent"} <= set(columns(path, "sessions"))
    history = rows(path, "SELECT version, applied_at FROM migrations ORDER BY version")
    assert history[0] == (1, NOW - 100 * DAY)  # the old row is untouched
    assert history[1:] == [(v, NOW) for v, _, _ in MIGRATIONS[1:]]


async def test_up_to_date_database_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "meet.db"
    async with open_store(path, NOW) as store:
        await store.run(q.add_user, "ann", "ann@example.org", "h", NOW, True, False)
    async with open_store(path, NOW + DAY) as store:
        assert await store.run(migrate, NOW + 2 * DAY) == []
        assert await store.run(q.user_by_login, "ann") is not None
    assert rows(path, "SELECT version, applied_at FROM migrations ORDER BY version") == [
        (v, NOW) for v, _, _ in MIGRATIONS
    ]


def mark_future_version(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("INSERT INTO migrations VALUES (?, 'from the future', ?)", (LATEST + 1, NOW))
    finally:
        conn.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "meet.db"
    async with open_store(path, NOW):
        pass
    mark_future_version(path)
    with pytest.raises(StoreError) as info:
        async with open_store(path, NOW):
            pytest.fail("a newer schema must not be opened")
    message = str(info.value)
    assert f"version {LATEST + 1}" in message
    assert f"({LATEST})" in message
    # Nothing was changed or removed.
    assert rows(path, "SELECT MAX(version), COUNT(*) FROM migrations") == [(LATEST + 1, LATEST + 1)]


def run_meet(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEET_")}
    return subprocess.run(
        [sys.executable, "-m", "meet", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_newer_schema_cli(tmp_path: Path) -> None:
    config = tmp_path / "meet.toml"
    config.write_text(
        "[storage]\ndata_dir = 'data'\n"
        "[auth]\nargon2_time_cost = 1\nargon2_memory_kib = 64\nargon2_parallelism = 1\n"
    )
    path = tmp_path / "data" / "meet.db"
    async with open_store(path, NOW):
        pass
    mark_future_version(path)

    checked = await trio.to_thread.run_sync(run_meet, tmp_path, "check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "[storage]" in checked.stdout

    listed = await trio.to_thread.run_sync(run_meet, tmp_path, "user", "list", "--config", str(config))
    assert listed.returncode == 1
    assert "Traceback" not in listed.stderr
    assert "database error" in listed.stderr
    assert str(LATEST + 1) in listed.stderr and f"({LATEST})" in listed.stderr
    assert listed.stdout == ""


async def test_failed_migration_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "meet.db"
    async with open_store(path, NOW):
        pass
    broken = (
        LATEST + 1,
        "broken",
        "CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1)",
    )
    monkeypatch.setattr(store_db, "MIGRATIONS", [*MIGRATIONS, broken])
    monkeypatch.setattr(store_db, "LATEST", LATEST + 1)
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        async with open_store(path, NOW):
            pass
    tables = {r[0] for r in rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half_done" not in tables
    assert rows(path, "SELECT MAX(version) FROM migrations") == [(LATEST,)]


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    async with open_store(tmp_path / "meet.db", NOW) as store:
        pass
    with pytest.raises(StoreError, match="closed"):
        await store.run(schema_version)
    # Closing the last connection checkpoints the WAL away.
    assert not (tmp_path / "meet.db-wal").exists()


# -- account queries -----------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    async with open_store(tmp_path / "meet.db", NOW) as s:
        yield s


async def new_user(store: Store, name: str = "ann", verified: bool = False) -> User:
    return await store.run(q.add_user, name, f"{name}@example.org", f"hash-{name}", NOW, verified, False)


def count(db: sqlite_utils.Database, table: str) -> int:
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_add_user_conflicts_ignore_case(store: Store) -> None:
    await new_user(store, "ann")
    with pytest.raises(Conflict) as by_name:
        await store.run(q.add_user, "ANN", "other@example.org", "h", NOW, True, False)
    assert by_name.value.code == "username_taken"
    with pytest.raises(Conflict) as by_mail:
        await store.run(q.add_user, "other", "Ann@Example.org", "h", NOW, True, False)
    assert by_mail.value.code == "email_taken"
    assert len(await store.run(q.list_users)) == 1


async def test_delete_user_cascades(store: Store) -> None:
    user = await new_user(store)
    await store.run(q.record_login, user.id, "tok", NOW, NOW + DAY, "agent", None)
    await store.run(q.replace_email_code, user.id, "code", "nonce", NOW + 900)
    await store.run(q.add_reset, user.id, "reset", NOW + 3600)
    await store.run(q.delete_user, "ann@example.org")
    for table in ("users", "sessions", "email_codes", "password_resets"):
        assert await store.run(count, table) == 0, table
    with pytest.raises(NotFound):
        await store.run(q.delete_user, "ann")


async def test_signup_never_rewrites_an_existing_account(store: Store) -> None:
    first = await store.run(q.signup_user, "ann", "ann@example.org", "h1", NOW)
    assert first.created and first.user.username == "ann"
    await store.run(q.replace_email_code, first.user.id, "code", "nonce", NOW + 900)
    await store.run(q.record_login, first.user.id, "tok", NOW, NOW + DAY, "agent", None)
    for verified in (False, True):
        await store.run(lambda db, v=verified: db.execute("UPDATE users SET verified = ?", (int(v),)))
        again = await store.run(q.signup_user, "anna", "ANN@example.org", "h2", NOW + 10)
        assert not again.created and again.user.id == first.user.id
        assert (again.user.username, await password_of(store, "ann")) == ("ann", "h1")
        assert await store.run(count, "email_codes") == 1
        assert await store.run(q.session_user, "tok", NOW + 20) is not None
        assert await store.run(q.user_by_login, "anna") is None
    # A username of someone else is taken, whatever the email.
    with pytest.raises(Conflict, match="username"):
        await store.run(q.signup_user, "ANN", "zed@example.org", "h3", NOW)


async def test_invitations_are_single_use_bound_to_the_email_and_expire(store: Store) -> None:
    await store.run(q.add_invitation, "Zoe@example.org", "inv", NOW, NOW + DAY)
    for email, at in (("other@example.org", NOW), ("zoe@example.org", NOW + DAY)):
        with pytest.raises(BadRequest) as bad:
            await store.run(q.signup_user, "zoe", email, "h", at, "inv")
        assert bad.value.code == "invalid_invitation"
    with pytest.raises(BadRequest):
        await store.run(q.signup_user, "zoe", "zoe@example.org", "h", NOW, "forged")
    await new_user(store, "ann")
    with pytest.raises(Conflict):  # a refused sign-up leaves the invitation unused
        await store.run(q.signup_user, "ann", "zoe@example.org", "h", NOW, "inv")
    done = await store.run(q.signup_user, "zoe", "ZOE@example.org", "h", NOW + 1, "inv")
    assert done.created
    used = await store.run(lambda db: db.execute("SELECT used_at, user_id FROM invitations").fetchone())
    assert tuple(used) == (NOW + 1, done.user.id)
    with pytest.raises(BadRequest):
        await store.run(q.signup_user, "zoe2", "zoe@example.org", "h", NOW + 2, "inv")
    with pytest.raises(Conflict):  # no invitation for an address that has an account
        await store.run(q.add_invitation, "zoe@example.org", "inv2", NOW, NOW + DAY)


async def test_verify_code_burns_the_code_after_max_attempts(store: Store) -> None:
    user = await new_user(store)
    await store.run(q.replace_email_code, user.id, "right", "nonce", NOW + 900)
    for attempt in range(1, 6):
        assert await store.run(q.verify_code, "ann@example.org", "wrong", NOW, 5) is None
        attempts = await store.run(lambda db: db.execute("SELECT attempts FROM email_codes").fetchone()[0])
        assert attempts == attempt
    # The fifth wrong guess burnt it: even the right code no longer works.
    assert await store.run(q.verify_code, "ann@example.org", "right", NOW, 5) is None
    assert not (await get_user(store, user.id)).verified
    # A new code (resend) works again.
    await store.run(q.replace_email_code, user.id, "fresh", "nonce2", NOW + 900)
    verified = await store.run(q.verify_code, "ann@example.org", "fresh", NOW, 5)
    assert verified is not None and verified.verified


async def test_verify_code_succeeds_on_the_last_allowed_attempt(store: Store) -> None:
    user = await new_user(store)
    await store.run(q.replace_email_code, user.id, "right", "nonce", NOW + 900)
    for _ in range(4):
        assert await store.run(q.verify_code, "ann@example.org", "wrong", NOW, 5) is None
    row = await store.run(q.verify_code, "ANN@example.org", "right", NOW, 5)
    assert row is not None and row.verified
    # Used codes do not verify twice (and a verified user needs none).
    assert await store.run(q.verify_code, "ann@example.org", "right", NOW, 5) is None


async def test_verify_code_expires(store: Store) -> None:
    user = await new_user(store)
    await store.run(q.replace_email_code, user.id, "right", "nonce", NOW + 900)
    assert await store.run(q.verify_code, "ann@example.org", "right", NOW + 900, 5) is None
    assert await store.run(q.verify_code, "nobody@example.org", "right", NOW, 5) is None
    assert await store.run(q.verify_code, "ann@example.org", "right", NOW + 899, 5) is not None


async def test_replace_email_code_kills_the_previous_code(store: Store) -> None:
    user = await new_user(store)
    await store.run(q.replace_email_code, user.id, "old", "nonce-old", NOW + 900)
    await store.run(q.replace_email_code, user.id, "new", "nonce-new", NOW + 900)
    assert await store.run(q.verify_code, "ann@example.org", "old", NOW, 5) is None
    assert await store.run(q.verify_link, user.id, "nonce-old", NOW) is None
    assert await store.run(q.verify_link, user.id, "nonce-new", NOW) is not None
    assert await store.run(q.verify_link, user.id, "nonce-new", NOW) is None  # single use


async def test_consume_reset_is_single_use(store: Store) -> None:
    user = await new_user(store)
    uid = user.id
    await store.run(q.record_login, uid, "tok1", NOW, NOW + DAY, "a", None)
    await store.run(q.record_login, uid, "tok2", NOW, NOW + DAY, "b", None)
    await store.run(q.add_reset, uid, "reset-1", NOW + 3600)
    await store.run(q.add_reset, uid, "reset-2", NOW + 3600)

    assert await store.run(q.consume_reset, uid, "reset-1", "new-hash", NOW + 1) is True
    after = await get_user(store, uid)
    assert await password_of(store, "ann") == "new-hash"
    assert after.verified  # the mailbox was proven
    assert await store.run(q.session_user, "tok1", NOW + 2) is None
    assert await store.run(q.session_user, "tok2", NOW + 2) is None

    # The same token again, and the user's other outstanding token, are dead.
    assert await store.run(q.consume_reset, uid, "reset-1", "evil", NOW + 3) is False
    assert await store.run(q.consume_reset, uid, "reset-2", "evil", NOW + 3) is False
    assert await password_of(store, "ann") == "new-hash"


async def test_consume_reset_checks_owner_and_expiry(store: Store) -> None:
    ann = await new_user(store, "ann")
    bob = await new_user(store, "bob")
    await store.run(q.add_reset, ann.id, "reset-ann", NOW + 3600)
    assert await store.run(q.consume_reset, bob.id, "reset-ann", "evil", NOW) is False
    assert await store.run(q.consume_reset, ann.id, "reset-ann", "evil", NOW + 3600) is False
    assert await password_of(store, "ann") == "hash-ann"
    assert await store.run(q.consume_reset, ann.id, "reset-ann", "ok", NOW + 3599) is True


async def test_session_user_and_last_seen(store: Store) -> None:
    user = await new_user(store, verified=True)
    await store.run(q.record_login, user.id, "tok", NOW, NOW + DAY, "x" * 300, None)
    live = await store.run(q.session_user, "tok", NOW + 30)
    assert live is not None
    sid, found = live
    assert found.id == user.id

    def seen(db: sqlite_utils.Database) -> tuple[float, str]:
        return db.execute("SELECT last_seen_at, user_agent FROM sessions").fetchone()  # type: ignore[no-any-return]

    last_seen, agent = await store.run(seen)
    assert last_seen == NOW  # not rewritten within a minute
    assert len(agent) == 256
    await store.run(q.session_user, "tok", NOW + 61)
    assert (await store.run(seen))[0] == NOW + 61
    assert await store.run(q.session_user, "tok", NOW + DAY) is None  # expired
    await store.run(q.revoke_session, sid, NOW + 100)
    assert await store.run(q.session_user, "tok", NOW + 101) is None
    assert await store.run(q.session_user, "unknown", NOW) is None


async def test_purge_expired(store: Store) -> None:
    uid = (await new_user(store)).id
    now = NOW + 10 * DAY
    old, recent, future = now - 2 * DAY, now - 3600, now + DAY

    def seed(db: sqlite_utils.Database) -> None:
        sessions = [
            ("s-live", future, None),
            ("s-expired-old", old, None),  # gone
            ("s-expired-recent", recent, None),  # kept for the grace day
            ("s-revoked-old", future, old),  # gone
            ("s-revoked-recent", future, recent),  # kept
        ]
        for token, expires, revoked in sessions:
            db.execute(
                "INSERT INTO sessions (user_id, token_hash, created_at, expires_at, revoked_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (uid, token, old, expires, revoked),
            )
        for code, expires, used in [
            ("c-live", future, None),
            ("c-old", old, None),
            ("c-used-old", future, old),
        ]:
            db.execute(
                "INSERT INTO email_codes (user_id, code_hash, link_nonce, expires_at, used_at) VALUES (?, ?, ?, ?, ?)",
                (uid, code, code, expires, used),
            )
        for nonce, expires, used in [
            ("r-live", future, None),
            ("r-old", old, None),
            ("r-used-old", future, old),
        ]:
            db.execute(
                "INSERT INTO password_resets (user_id, nonce_hash, expires_at, used_at) VALUES (?, ?, ?, ?)",
                (uid, nonce, expires, used),
            )
        for token, expires, used in [
            ("i-live", future, None),
            ("i-old", old, None),
            ("i-used-old", future, old),
        ]:
            db.execute(
                "INSERT INTO invitations (email, token_hash, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?)",
                ("x@example.org", token, old, expires, used),
            )

    await store.run(seed)
    assert await store.run(q.purge_expired, now) == 8

    def remaining(db: sqlite_utils.Database) -> dict[str, set[str]]:
        return {
            "sessions": {r[0] for r in db.execute("SELECT token_hash FROM sessions")},
            "codes": {r[0] for r in db.execute("SELECT code_hash FROM email_codes")},
            "resets": {r[0] for r in db.execute("SELECT nonce_hash FROM password_resets")},
            "invitations": {r[0] for r in db.execute("SELECT token_hash FROM invitations")},
        }

    assert await store.run(remaining) == {
        "sessions": {"s-live", "s-expired-recent", "s-revoked-recent"},
        "codes": {"c-live"},
        "resets": {"r-live"},
        "invitations": {"i-live"},
    }
    assert await store.run(q.purge_expired, now) == 0
    assert await store.run(q.user_by_id, uid) is not None  # users are never purged


async def test_transaction_rolls_back_on_error(store: Store) -> None:
    def half(db: sqlite_utils.Database) -> None:
        with transaction(db):
            db.execute(
                "INSERT INTO users (username, email, password_hash, created_at) VALUES ('x', 'x@e.org', 'h', 0)"
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store.run(half)
    assert await store.run(q.list_users) == []
    # The connection is usable afterwards (no transaction left open).
    await new_user(store)
    assert len(await store.run(q.list_users)) == 1


# -- room queries --------------------------------------------------------------------------


def seed_user(db: sqlite_utils.Database, name: str) -> int:
    cursor = db.execute(
        "INSERT INTO users (username, email, password_hash, verified, created_at) VALUES (?, ?, 'h', 1, ?)",
        (name, f"{name}@example.org", NOW),
    )
    return int(cursor.lastrowid or 0)


async def test_room_queries_return_typed_records(store: Store) -> None:
    host = await store.run(seed_user, "hana")
    guest = await store.run(seed_user, "gus")
    room = await store.run(qr.create_room, "abc-defg-hij", "Standup", host, NOW, 8)
    assert room == Room(
        id=room.id, code="abc-defg-hij", title="Standup", host_id=host, host_username="hana",
        created_at=NOW, ended_at=None, locked=False, max_participants=8,
    )
    await store.run(qr.update_room, room.id, {"locked": 1, "title": "Daily"})
    locked = await store.run(qr.room_by_code, "abc-defg-hij")
    assert (locked.locked, locked.title, locked.ended) == (True, "Daily", False)  # 0/1 becomes a bool
    assert await store.run(qr.rooms_hosted, host, 10, None) == [locked]
    stay = await store.run(qr.open_stay, room.id, guest, NOW + 1, 30.0)
    posted = await store.run(qr.add_message, room.id, guest, "gus", "hi", NOW + 2)
    assert posted == Message(id=posted.id, user_id=guest, username="gus", text="hi", created_at=NOW + 2)
    assert await store.run(qr.recent_messages, room.id, 5) == [posted]
    assert await store.run(qr.search_messages, room.id, 5, None, "h") == [posted]
    await store.run(qr.close_stay, stay, NOW + 10)
    assert await store.run(qr.attendance, room.id) == [Stay(guest, "gus", NOW + 1, NOW + 10)]
    assert await store.run(qr.calls_of, guest, 5, None) == [Call(stay, NOW + 1, NOW + 10, room.code, "Daily", host)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        locked.title = "changed"  # type: ignore[misc]


async def test_standing_of_a_person_in_a_room(store: Store) -> None:
    host = await store.run(seed_user, "hana")
    guest = await store.run(seed_user, "gus")
    room = await store.run(qr.create_room, "abc-defg-hij", "Standup", host, NOW, 8)
    assert await store.run(qr.standing, room.id, guest, NOW) == Standing(banned=False, recent=False, took_part=False)
    stay = await store.run(qr.open_stay, room.id, guest, NOW, 30.0)
    assert await store.run(qr.standing, room.id, guest, NOW) == Standing(banned=False, recent=True, took_part=True)
    await store.run(qr.close_stay, stay, NOW + 5)
    assert await store.run(qr.standing, room.id, guest, NOW + 5) == Standing(False, True, True)  # left just now
    assert await store.run(qr.standing, room.id, guest, NOW + 6) == Standing(False, False, True)  # left before since
    await store.run(qr.ban, room.id, guest, NOW + 7)
    assert await store.run(qr.standing, room.id, guest, NOW + 6) == Standing(True, False, True)


async def test_update_room_refuses_other_columns(store: Store) -> None:
    host = await store.run(seed_user, "hana")
    thief = await store.run(seed_user, "tom")
    room = await store.run(qr.create_room, "abc-defg-hij", "Standup", host, NOW, 8)
    with pytest.raises(ValueError, match="host_id"):
        await store.run(qr.update_room, room.id, {"title": "x", "host_id": thief})
    assert await store.run(qr.room_by_code, room.code) == room  # nothing changed


def test_update_room_refuses_other_columns_under_python_O(tmp_path: Path) -> None:
    """``python -O`` strips asserts: the column check must be a real one."""
    script = (
        "import sqlite_utils, sys\n"
        "from meet.store.db import migrate\n"
        "from meet.store import rooms as qr\n"
        f"db = sqlite_utils.Database({str(tmp_path / 'o.db')!r})\n"
        "migrate(db, 0.0)\n"
        "db.execute(\"INSERT INTO users (username, email, password_hash, created_at) VALUES ('a', 'a@e.org', 'h', 0)\")\n"
        "room = qr.create_room(db, 'abc-defg-hij', 't', 1, 0.0, 5)\n"
        "try:\n"
        "    qr.update_room(db, room.id, {'host_id': 2})\n"
        "except ValueError:\n"
        "    sys.exit(0)\n"
        "sys.exit('update_room accepted host_id')\n"
    )
    command = [sys.executable, "-O", "-c", script]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def create_v5_database(path: Path) -> None:
    """A database as the schema before guests left it: a room with stays, chat and a ban."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(
            "CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for version, name, sql in MIGRATIONS[:5]:
            conn.executescript(sql)
            conn.execute("INSERT INTO migrations VALUES (?, ?, ?)", (version, name, NOW - DAY))
        conn.executescript(
            "INSERT INTO users (id, username, email, password_hash, created_at) VALUES (1, 'ann', 'a@x.org', 'h', 0);"
            "INSERT INTO rooms (id, code, title, host_id, created_at, locked, max_participants)"
            " VALUES (1, 'abc-defg-hij', 'Standup', 1, 0, 1, 9);"
            "INSERT INTO stays (id, room_id, user_id, joined_at, left_at) VALUES (7, 1, 1, 10, 20), (8, 1, 1, 30, NULL);"
            "INSERT INTO messages (room_id, user_id, username, text, created_at) VALUES (1, 1, 'ann', 'hello', 11);"
        )
    finally:
        conn.close()


async def test_version_5_database_gains_guests_and_keeps_stays(tmp_path: Path) -> None:
    path = tmp_path / "meet.db"
    create_v5_database(path)
    async with open_store(path, NOW) as store:
        assert await store.run(schema_version) == LATEST
        room = await store.run(qr.room_by_code, "abc-defg-hij")
        assert room is not None
        assert (room.locked, room.guests, room.lobby, room.reactions) == (True, "lobby", False, True)
        stays = await store.run(qr.attendance, room.id)
        assert [(s.user_id, s.username, s.joined_at, s.left_at) for s in stays] == [
            (1, "ann", 10, 20), (1, "ann", 30, None),
        ]
        # A guest's stay and chat live beside the members' (negative person ids).
        guest = await store.run(gq.create_guest, room.id, "Ana", "hash", "10.0.0.1", NOW, NOW + DAY)
        stay = await store.run(qr.open_stay, room.id, -guest.id, NOW, 30.0)
        await store.run(qr.add_message, room.id, -guest.id, "Ana", "hi", NOW)
        assert [m.public()["user"] for m in await store.run(qr.recent_messages, room.id, 10)] == [
            {"id": 1, "username": "ann"}, {"id": -guest.id, "username": "Ana", "guest": True},
        ]
        assert (await store.run(qr.attendance, room.id))[-1].user_id == -guest.id
        assert await store.run(qr.standing, room.id, -guest.id, NOW - 1) == Standing(
            banned=False, recent=True, took_part=True
        )
        assert stay > 8
    with pytest.raises(sqlite3.IntegrityError):  # a stay is a member's or a guest's, never both
        conn = sqlite3.connect(path)
        try:
            conn.execute("INSERT INTO stays (room_id, user_id, guest_id, joined_at) VALUES (1, 1, 1, 0)")
        finally:
            conn.close()
