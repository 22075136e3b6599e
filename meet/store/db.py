"""The database handle: one SQLite connection, used by one thread at a time.

Every query runs through :meth:`Store.run`, which hands a sync function the
``sqlite_utils.Database`` in a worker thread. A capacity limiter of one serialises the
calls, so the connection is never shared concurrently and the event loop never blocks on
SQLite.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
import trio

from meet.clock import Clock, SystemClock
from meet.errors import StorageFull, StoreError
from meet.store.migrations import LATEST, MIGRATIONS

T = TypeVar("T")

log = logging.getLogger("meet.store")

FULL_LOG_INTERVAL = 60.0  # seconds between two "disk is full" log lines


def connect(path: Path) -> sqlite_utils.Database:
    """Open the SQLite file with the pragmas meet relies on.

    A new data folder is private to meet's user (0700) and a new database file 0600; SQLite
    gives the -wal and -shm files the database file's mode.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA synchronous=NORMAL")
    return sqlite_utils.Database(conn)


def schema_version(db: sqlite_utils.Database) -> int:
    """The highest applied migration (0 for a new database)."""
    if "migrations" not in db.table_names():
        return 0
    row = db.execute("SELECT MAX(version) FROM migrations").fetchone()
    return int(row[0] or 0)


def split_statements(sql: str) -> list[str]:
    """Split a script into statements; a trigger body's inner ';' does not end one."""
    statements, buffer = [], ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \n;"):
        statements.append(buffer.strip())
    return statements


def migrate(db: sqlite_utils.Database, now: float) -> list[int]:
    """Apply pending migrations, each in its own transaction; return the versions applied."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    current = schema_version(db)
    if current > LATEST:
        raise StoreError(
            f"the database schema is version {current}, newer than this meet understands "
            f"({LATEST}); upgrade meet or restore a backup"
        )
    applied = []
    for version, name, sql in MIGRATIONS:
        if version <= current:
            continue
        # executescript would COMMIT on its own; run the statements inside one transaction.
        with db.conn:
            db.conn.execute("BEGIN")
            for statement in split_statements(sql):
                db.conn.execute(statement)
            db.conn.execute(
                "INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, now),
            )
        applied.append(version)
    return applied


class Store:
    """Owner of the SQLite connection; run queries with :meth:`run`.

    A write that fails because the disk is full becomes :class:`StorageFull` (503
    ``storage_full``) here, in one place. The store remembers that writes are failing until a
    later call changes the database again (``/api/ready`` probes for it) and logs the condition
    at most once per :data:`FULL_LOG_INTERVAL` seconds of ``clock``.
    """

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock | None = None) -> None:
        self.db = db
        self.clock: Clock = clock or SystemClock()
        self.full_since: float | None = None  # first failed write of the current episode
        self._last_full_log: float | None = None
        self.path = _main_file(db)  # named in the "disk is full" log line and /api/ready
        self._limiter = trio.CapacityLimiter(1)
        self._closed = False
        # Told each call's duration in seconds, in the database thread (the server's metrics).
        self.observe: Callable[[float], None] | None = None

    @property
    def full(self) -> bool:
        """Writes are failing because the disk is full (until one succeeds again)."""
        return self.full_since is not None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` in a worker thread, one call at a time."""
        if self._closed:
            raise StoreError("the database is closed")
        return await trio.to_thread.run_sync(self._call, fn, args, limiter=self._limiter)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        changes = self.db.conn.total_changes
        started = time.perf_counter()
        try:
            result = fn(self.db, *args)
        except sqlite3.Error as exc:
            # A COMMIT that fails with SQLITE_FULL leaves the transaction open; every later
            # BEGIN would then fail too, so writes could never recover.
            if self.db.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.conn.execute("ROLLBACK")
            if not self._is_disk_full(exc):
                raise
            self._note_full(exc)
            raise StorageFull() from exc
        finally:
            if self.observe is not None:
                self.observe(time.perf_counter() - started)
        if self.full_since is not None and self.db.conn.total_changes != changes:
            log.warning("the database accepts writes again (disk space was freed)")
            self.full_since = self._last_full_log = None
        return result

    def _is_disk_full(self, exc: sqlite3.Error) -> bool:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
            return True
        if "database or disk is full" in str(exc):
            return True
        # An I/O error is a full disk only when the disk really is (nearly) full: ENOSPC while
        # syncing or growing the WAL index surfaces as SQLITE_IOERR_*.
        return code is not None and code & 0xFF == sqlite3.SQLITE_IOERR and _nearly_full(self.path)

    def _note_full(self, exc: sqlite3.Error) -> None:
        now = self.clock.now()
        if self.full_since is None:
            self.full_since = now
        if self._last_full_log is None or now - self._last_full_log >= FULL_LOG_INTERVAL:
            self._last_full_log = now
            log.error(
                "cannot write to the database %s: the disk is full (%s). Requests that save "
                "anything get 503 storage_full; reads still work. Free space on that disk: "
                "meet recovers by itself, no restart needed. (Logged at most once a minute.)",
                self.path, exc,
            )

    async def probe_write(self) -> None:
        """Learn whether writes work again: raises :class:`StorageFull` while they do not.

        The probe commits a transaction that needs a few new pages (a row it deletes again), so
        neither slack left in the WAL file nor a rewrite of an existing page fools it.
        """
        if _nearly_full(self.path):
            raise StorageFull()
        await self.run(_probe)

    async def close(self) -> None:
        """Wait for the running call, then close the connection."""
        async with self._limiter:
            if not self._closed:
                self._closed = True
                self.db.conn.close()


def _probe(db: sqlite_utils.Database) -> None:
    """Write ~16 KiB (overflow pages) and take it back, in one committed transaction."""
    db.conn.execute("BEGIN IMMEDIATE")
    db.conn.execute("INSERT INTO migrations (version, name, applied_at) VALUES (-1, printf('%.*c', 16384, 'x'), 0)")
    db.conn.execute("DELETE FROM migrations WHERE version = -1")
    db.conn.execute("COMMIT")


def _main_file(db: sqlite_utils.Database) -> str:
    """The main database file ('' for an in-memory database)."""
    for _seq, name, file in db.conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return str(file)
    return ""


def _nearly_full(path: str, margin: int = 1024 * 1024) -> bool:
    """Less than ``margin`` bytes are available on the filesystem holding ``path``."""
    if not path:
        return False
    try:
        return shutil.disk_usage(os.path.dirname(path) or ".").free < margin
    except OSError:
        return False


@asynccontextmanager
async def open_store(path: Path, now: float) -> AsyncIterator[Store]:
    """Open (creating and migrating as needed) the database at ``path``."""
    db = await trio.to_thread.run_sync(connect, path)
    store = Store(db)
    try:
        await store.run(migrate, now)
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.close()
