"""Meet's files are private to its user: the data folder, database (with -wal/-shm), the
generated secret and the mail outbox, whatever the process umask lets through."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORD, make_config

from meet.clock import FakeClock
from meet.server import open_server


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common default umask (022): files would be world-readable unless meet says otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_files_are_private(tmp_path: Path, clock: FakeClock, open_umask: None) -> None:
    config = make_config(tmp_path)
    async with open_server(config, clock=clock) as server, httpx.AsyncClient(base_url=server.url) as c:
        body = {"username": "alice", "email": "alice@example.org", "password": PASSWORD}
        assert (await c.post("/api/auth/signup", json=body)).status_code in (201, 202)
        db = config.database_path
        files = {
            config.data_dir: 0o700,
            db: 0o600,
            db.with_name(db.name + "-wal"): 0o600,
            db.with_name(db.name + "-shm"): 0o600,
            config.data_dir / "secret_key": 0o600,
            config.outbox_dir: 0o700,
        }
        mails = list(config.outbox_dir.glob("*.eml"))
        assert mails
        files.update({mail: 0o600 for mail in mails})
        found = {path: oct(mode(path)) for path in files}
    assert found == {path: oct(expected) for path, expected in files.items()}
