"""The database handle: one SQLite connection, used by one thread at a time.

Every query runs through :meth:`Store.run`, which hands a sync function the
``sqlite_utils.Database`` in a worker thread. A capacity limiter of one serialises the
calls, so the connection is never shared concurrently and the event loop never blocks on
SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
import trio

from meet.errors import StoreError
from meet.store.migrations import LATEST, MIGRATIONS

T = TypeVar("T")


def connect(path: Path) -> sqlite_utils.Database:
    """Open the SQLite file with the pragmas meet relies on."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
    """Owner of the SQLite connection; run queries with :meth:`run`."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self._limiter = trio.CapacityLimiter(1)
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` in a worker thread, one call at a time."""
        if self._closed:
            raise StoreError("the database is closed")
        return await trio.to_thread.run_sync(lambda: fn(self.db, *args), limiter=self._limiter)

    async def close(self) -> None:
        """Wait for the running call, then close the connection."""
        async with self._limiter:
            if not self._closed:
                self._closed = True
                self.db.conn.close()


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
