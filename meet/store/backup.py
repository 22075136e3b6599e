"""SQLite's online backup API: a consistent copy of a database another process is writing.

``Connection.backup`` with ``pages=-1`` copies every page in one step inside one read
transaction: in WAL mode the server keeps writing meanwhile (readers never block writers), and
the copy is the database as of one committed transaction — never half of one.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from meet.errors import StoreError
from meet.store.db import schema_version
from meet.store.migrations import LATEST


def copy_database(source: Path, target: Path) -> int:
    """Copy ``source`` into a new file ``target`` (0600) and check the copy; return its schema version."""
    # Read-write, though it only reads: a read-only connection cannot recover a WAL left by a crash.
    src = sqlite3.connect(source)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dest = sqlite3.connect(target)
        try:
            src.backup(dest, pages=-1)
            dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            return check_database(dest)
        finally:
            dest.close()
    finally:
        src.close()


def check_database(conn: sqlite3.Connection) -> int:
    """Raise :class:`StoreError` unless ``conn`` holds an intact meet database this version can run."""
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    if problems != ["ok"]:
        raise StoreError(f"the database copy is damaged: {'; '.join(problems[:3])}")
    version = _version(conn)
    if version == 0:
        raise StoreError("the file is not a meet database (no migrations table)")
    if version > LATEST:
        raise StoreError(f"the backup's schema is version {version}, newer than this meet understands ({LATEST})")
    return version


def _version(conn: sqlite3.Connection) -> int:
    import sqlite_utils

    return schema_version(sqlite_utils.Database(conn))


def restore_database(backup: Path, target: Path) -> None:
    """Replace the database at ``target`` with ``backup``'s content (no server may run on it).

    The copy is made into a new file beside the target (SQLite's backup API, so the result is
    a database written by SQLite, whatever state the target is in — a damaged target too), then
    the target's -wal and -shm are removed (a stale WAL must never be applied to the new file)
    and the new file is renamed over the target.
    """
    src = sqlite3.connect(f"{backup.as_uri()}?mode=ro", uri=True)
    try:
        check_database(src)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.restoring")
        for leftover in (temp, *_sidecars(temp)):
            leftover.unlink(missing_ok=True)
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        dest = sqlite3.connect(temp)
        try:
            src.backup(dest, pages=-1)
        finally:
            dest.close()
    finally:
        src.close()
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for sidecar in _sidecars(target):
        sidecar.unlink(missing_ok=True)
    os.replace(temp, target)


def _sidecars(database: Path) -> tuple[Path, Path]:
    return Path(f"{database}-wal"), Path(f"{database}-shm")


def has_data(path: Path) -> bool:
    """Whether ``path`` is a database holding at least one user or room."""
    if not path.is_file():
        return False
    conn = sqlite3.connect(path)
    try:
        if _version(conn) == 0:
            return path.stat().st_size > 0
        return any(conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() for table in ("users", "rooms"))
    except sqlite3.Error:
        return True  # unreadable: not ours to throw away without --force
    finally:
        conn.close()
