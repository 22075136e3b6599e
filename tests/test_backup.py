"""``meet backup`` under write load, ``meet restore`` (and its refusals), the data folder lock."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from conftest import User, make_config

from meet.backup import DataInUse, hold_data_lock, read_backup
from meet.config import Config, render_toml
from meet.errors import MeetError
from meet.server import RunningServer


def write_config(config: Config, path: Path) -> Path:
    path.write_text(render_toml(config, mask_secrets=False))
    return path


async def meet_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m meet ARGS`` as its own process, as an operator would."""
    return await trio.run_process(
        [sys.executable, "-m", "meet", *args], check=False, capture_stdout=True, capture_stderr=True
    )


def room_codes(database: Path) -> set[str]:
    conn = sqlite3.connect(database)
    try:
        return {row[0] for row in conn.execute("SELECT code FROM rooms")}
    finally:
        conn.close()


class Writer:
    """Creates rooms over HTTP until stopped; remembers every acknowledged (201) one."""

    def __init__(self, client: httpx.AsyncClient, user: User) -> None:
        self.client, self.user = client, user
        self.acked: list[str] = []
        self.enough = trio.Event()
        self.stop = False

    async def run(self) -> None:
        while not self.stop:
            r = await self.client.post("/api/rooms", json={"title": "Load"}, headers=self.user.auth)
            assert r.status_code == 201, r.text
            self.acked.append(r.json()["room"]["code"])
            if len(self.acked) >= 30:
                self.enough.set()


async def test_backup_under_write_load_restores_every_acknowledged_row(
    server: RunningServer, config: Config, client: httpx.AsyncClient, alice: User, tmp_path: Path
) -> None:
    cfg = write_config(config, tmp_path / "meet.toml")
    target = tmp_path / "backups" / "nightly"
    writers = [Writer(client, alice), Writer(httpx.AsyncClient(base_url=server.url, timeout=10), alice)]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for writer in writers:
                nursery.start_soon(writer.run)
            for writer in writers:
                await writer.enough.wait()
            before = {code for w in writers for code in w.acked}  # acknowledged before the backup began
            done = await meet_cli("backup", "--config", str(cfg), str(target))
            during = sum(len(w.acked) for w in writers) - len(before)
            refused = await meet_cli("restore", "--config", str(cfg), "--force", str(target))
            for writer in writers:
                writer.stop = True
        await writers[1].client.aclose()
    assert done.returncode == 0, done.stderr
    assert during > 0, "the server took no writes while the backup ran"
    # restore refuses while the server holds the data folder, even with --force, and changes nothing
    assert refused.returncode == 1 and b"is running" in refused.stderr
    assert {p.name for p in target.parent.iterdir()} == {"nightly"}  # no partial folder left behind
    assert set(read_backup(target)) == {"meet.db", "secret_key"}
    assert target.stat().st_mode & 0o777 == 0o700
    assert {f.stat().st_mode & 0o777 for f in target.iterdir()} == {0o600}

    # the drill: restore into a fresh data folder and find every acknowledged row there
    fresh = make_config(tmp_path / "fresh")
    restored = await meet_cli("restore", "--config", str(write_config(fresh, tmp_path / "fresh.toml")), str(target))
    assert restored.returncode == 0, restored.stderr
    codes = room_codes(fresh.database_path)
    assert before <= codes
    assert codes <= {code for w in writers for code in w.acked}
    assert (fresh.data_dir / "secret_key").read_bytes() == (config.data_dir / "secret_key").read_bytes()
    assert (fresh.data_dir / "secret_key").stat().st_mode & 0o777 == 0o600


def test_restore_refuses_existing_data_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from meet.cli import main

    source = make_config(tmp_path / "a")
    _seed(source.database_path, "first-room")
    cfg = write_config(source, tmp_path / "a.toml")
    assert main(["backup", "--config", str(cfg), str(tmp_path / "b1")]) == 0
    assert main(["backup", "--config", str(cfg), str(tmp_path / "b1")]) == 1  # never overwritten
    assert "secret key" not in capsys.readouterr().err  # the key lives in the data folder (none made yet)
    keyed = make_config(tmp_path / "k", auth={"secret_key": "k" * 40})
    _seed(keyed.database_path, "keyed-room")
    assert main(["backup", "--config", str(write_config(keyed, tmp_path / "k.toml")), str(tmp_path / "bk")]) == 0
    assert "the secret key is set in the config" in capsys.readouterr().err

    other = make_config(tmp_path / "c")
    _seed(other.database_path, "other-room")
    other_cfg = write_config(other, tmp_path / "c.toml")
    assert main(["restore", "--config", str(other_cfg), str(tmp_path / "b1")]) == 1
    assert room_codes(other.database_path) == {"other-room"}
    assert main(["restore", "--config", str(other_cfg), "--force", str(tmp_path / "b1")]) == 0
    assert room_codes(other.database_path) == {"first-room"}
    kept = list(other.data_dir.glob("pre-restore-*.db"))
    assert len(kept) == 1 and room_codes(kept[0]) == {"other-room"}

    # a damaged database (a likely reason to restore) is replaced too, and kept aside as it was
    other.database_path.write_bytes(b"damaged" * 1000)
    assert main(["restore", "--config", str(other_cfg), str(tmp_path / "b1")]) == 1  # still data: --force
    assert main(["restore", "--config", str(other_cfg), "--force", str(tmp_path / "b1")]) == 0
    assert room_codes(other.database_path) == {"first-room"}
    assert b"damaged" * 1000 in [p.read_bytes() for p in other.data_dir.glob("pre-restore-*.db")]


def test_tampered_backup_is_refused(tmp_path: Path) -> None:
    from meet.cli import main

    source = make_config(tmp_path / "a")
    _seed(source.database_path, "first-room")
    assert main(["backup", "--config", str(write_config(source, tmp_path / "a.toml")), str(tmp_path / "b")]) == 0
    with (tmp_path / "b" / "meet.db").open("r+b") as fh:
        fh.seek(200)
        fh.write(b"x")
    with pytest.raises(MeetError, match="checksum"):
        read_backup(tmp_path / "b")


def test_a_second_holder_of_the_data_lock_is_refused(tmp_path: Path) -> None:
    with hold_data_lock(tmp_path), pytest.raises(DataInUse), hold_data_lock(tmp_path):
        pass
    with hold_data_lock(tmp_path):  # released when the first holder is done
        pass


def _seed(database: Path, code: str) -> None:
    """A migrated database with one user and one room (as the server would leave it)."""
    from meet.store.db import connect, migrate

    db = connect(database)
    migrate(db, 0.0)
    db.execute("INSERT INTO users (username, email, password_hash, created_at) VALUES ('u', 'u@x', 'h', 0)")
    db.execute("INSERT INTO rooms (code, title, host_id, created_at, max_participants) VALUES (?, 't', 1, 0, 5)", (code,))
    db.conn.close()


def test_a_damaged_database_gives_an_error_line_and_no_backup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from meet.cli import main

    config = make_config(tmp_path)
    config.data_dir.mkdir()
    config.database_path.write_bytes(b"this is not a database" * 100)
    assert main(["backup", "--config", str(write_config(config, tmp_path / "meet.toml")), str(tmp_path / "b")]) == 1
    assert "meet: database error: cannot back up" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".b", "b"))]  # nothing half-written left
