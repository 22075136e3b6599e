"""``meet backup`` and ``meet restore``, and the data folder's lock.

A backup is a folder: ``meet.db`` (an online copy made with SQLite's backup API while the server
keeps running), ``secret_key`` (when the key lives in the data folder — a key set inline or by
``secret_key_file`` is part of your configuration, and is backed up with it) and ``backup.json``
(when, what, SHA-256 of each file). It is assembled in a hidden temporary folder next to PATH and
renamed into place only once complete and checked, so a folder named PATH is always a whole
backup; an interrupted run leaves at most a ``.PATH.partial-*`` folder behind.

The running server holds an exclusive ``flock`` on ``data_dir/meet.lock`` for its lifetime
(:func:`hold_data_lock`); ``restore`` takes the same lock, so it cannot overwrite a running
server's data, and a second server cannot start on the same data.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from meet import __version__
from meet.config import Config
from meet.errors import MeetError, StoreError
from meet.store import backup as db_backup

LOCK_FILE = "meet.lock"
DATABASE = "meet.db"
SECRET = "secret_key"
MANIFEST = "backup.json"
SECRET_ELSEWHERE = (
    "note: the secret key is set in the config (secret_key or secret_key_file), not in the data folder: "
    "back that up too"
)


class DataInUse(MeetError):
    """The data folder is locked by a running server."""


@contextlib.contextmanager
def hold_data_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data folder's exclusive lock, or raise :class:`DataInUse` at once."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataInUse(
                f"a meet server is running on {data_dir} (it holds {data_dir / LOCK_FILE}); stop it first"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.asynccontextmanager
async def data_lock(data_dir: Path) -> AsyncIterator[None]:
    """:func:`hold_data_lock` for ``async with`` (the server's start-up)."""
    with hold_data_lock(data_dir):
        yield


def _secret_in_data_dir(config: Config) -> Path | None:
    """The generated key file, when that is where the key comes from."""
    if config.auth.secret_key or config.auth.secret_key_file:
        return None
    return config.data_dir / SECRET


@dataclass
class BackupResult:
    """What ``backup`` wrote."""

    path: Path
    files: dict[str, str]  # name -> sha256
    schema: int
    notes: list[str]


def backup(config: Config, path: Path) -> BackupResult:
    """Write a complete backup folder at ``path`` (which must not exist yet)."""
    if path.exists():
        raise MeetError(f"{path} already exists; choose a new name (backups are never overwritten)")
    if not config.database_path.is_file():
        raise MeetError(f"there is no database at {config.database_path} to back up")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        schema = db_backup.copy_database(config.database_path, partial / DATABASE)
        secret = _secret_in_data_dir(config)
        if secret is not None and secret.is_file():
            _copy_private(secret, partial / SECRET)
        notes = [] if secret is not None else [SECRET_ELSEWHERE]
        files = {p.name: _sha256(p) for p in sorted(partial.iterdir())}
        manifest = {"meet": __version__, "created_at": time.time(), "schema": schema, "files": files}
        _write_private(partial / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _fsync_all(partial)
        partial.rename(path)  # the moment it becomes a backup: all or nothing
        _fsync_dir(path.parent)
    except sqlite3.Error as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise StoreError(f"cannot back up {config.database_path}: {exc}") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return BackupResult(path, files, schema, notes)


def read_backup(path: Path) -> dict[str, str]:
    """Check a backup folder against its manifest; return its files and checksums."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files: dict[str, str] = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise MeetError(f"{path} is not a meet backup (no readable {MANIFEST})") from None
    if DATABASE not in files:
        raise MeetError(f"{path}: the manifest lists no {DATABASE}")
    for name, digest in files.items():
        if name not in (DATABASE, SECRET) or not (path / name).is_file() or _sha256(path / name) != digest:
            raise MeetError(f"{path}: {name} is missing or does not match its checksum; not restoring")
    return files


def restore(config: Config, path: Path, *, force: bool = False) -> list[str]:
    """Put a backup back into the configured data folder; return notes on what was done.

    Refuses while a server holds the data folder's lock, and, without ``force``, when the
    database already holds users or rooms or the key file differs. With ``force`` the current
    database is first copied to ``data_dir/pre-restore-<time>.db``.
    """
    files = read_backup(path)
    notes: list[str] = []
    with hold_data_lock(config.data_dir):
        secret = _secret_in_data_dir(config)
        _check_overwrite(config, path, files, secret, force)
        if config.database_path.is_file() and force:
            keep = _keep_aside(config)
            notes.append(f"the previous database was kept as {keep}")
        try:
            db_backup.restore_database(path / DATABASE, config.database_path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot restore into {config.database_path}: {exc}") from None
        notes.append(f"restored the database into {config.database_path}")
        if SECRET in files and secret is not None:
            _replace_private(path / SECRET, secret)
            notes.append(f"restored the secret key into {secret}")
        elif SECRET in files:
            notes.append("the backup holds a secret_key file, but this config sets the key itself: left alone")
    return notes


def _check_overwrite(config: Config, path: Path, files: dict[str, str], secret: Path | None, force: bool) -> None:
    if force:
        return
    if db_backup.has_data(config.database_path):
        raise MeetError(f"{config.database_path} already holds data; pass --force to replace it")
    if SECRET in files and secret is not None and secret.is_file() and _sha256(secret) != files[SECRET]:
        raise MeetError(f"{secret} holds a different key; pass --force to replace it")


def _keep_aside(config: Config) -> Path:
    """Copy the database about to be replaced (and its WAL) as they are: no server runs (the
    lock is held), so the files are a consistent set, and a damaged database — a likely reason
    to restore — is kept too, for a later look."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    keep, n = config.data_dir / f"pre-restore-{stamp}.db", 1
    while keep.exists():  # two restores within a second keep both
        n += 1
        keep = config.data_dir / f"pre-restore-{stamp}-{n}.db"
    for suffix in ("", "-wal"):
        source = Path(f"{config.database_path}{suffix}")
        if source.is_file():
            _copy_private(source, Path(f"{keep}{suffix}"))
    return keep


def _copy_private(source: Path, target: Path) -> None:
    """Copy into a new file readable by meet's user only (0600 from the start)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


def _write_private(target: Path, data: bytes) -> None:
    """A new file readable by meet's user only (0600 from the start)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _replace_private(source: Path, target: Path) -> None:
    """Write ``target`` (0600) via a temporary file and a rename: never a half-written key."""
    temp = target.with_name(f".{target.name}.restoring")
    temp.unlink(missing_ok=True)
    _copy_private(source, temp)
    os.replace(temp, target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_all(folder: Path) -> None:
    for file in folder.iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
