"""A full disk: writes answer 503 ``storage_full`` (HTTP) or ``error`` ``storage_full``
(WebSocket, which stays open), reads keep working, ``/api/ready`` says 503, the condition is
logged once a minute, and everything recovers without a restart once space is freed.

The first test is the real thing: ``meet serve`` in its own mount namespace with its data folder
on a 4 MiB tmpfs that the test fills (through ``/proc/PID/root``) and frees. It needs root
(CI runs as root). The second runs in-process with a fake clock, making the database "full"
with SQLite's ``max_page_count`` (the same SQLITE_FULL error), to check the once-a-minute log.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import PASSWORD, User, make_room
from wsclient import WS, join

from meet.clock import FakeClock
from meet.server import RunningServer


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True, check=False
    )
    return probe.returncode == 0


@contextmanager
def serve_on_tmpfs(tmp_path: Path, size: str = "4m") -> Iterator[tuple[str, int, Path]]:
    """``meet serve`` with ``tmp_path/data`` on a fresh tmpfs in a private mount namespace.

    Yields (url, the server's pid, its stderr file). Files in the tmpfs are reached from here
    through ``/proc/PID/root``."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "meet.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{data}"\n\n[auth]\nrequire_verification = false\nargon2_time_cost = 1\n'
        'argon2_memory_kib = 64\nargon2_parallelism = 1\n\n[mail]\nbackend = "file"\n'
    )
    port = free_port()
    err = tmp_path / "serve.err"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEET_")}
    script = f'mount -t tmpfs -o size={size},mode=0700 tmpfs "$1" && shift && exec "$@"'
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", script, "sh", str(data),
             sys.executable, "-m", "meet", "serve", "--config", str(config), "--port", str(port)],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, err.read_text()
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        yield url, proc.pid, err
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def in_namespace(pid: int, data_dir: Path, sql: str) -> None:
    """Run SQL on the server's database from inside its mount namespace (SQLite resolves the
    ``/proc/PID/root`` symlink, so it cannot open the file from here)."""
    code = f"import sqlite3; c = sqlite3.connect({str(data_dir / 'meet.db')!r}); c.execute({sql!r}); c.commit()"
    subprocess.run(["nsenter", "-t", str(pid), "-m", sys.executable, "-c", code], check=True, timeout=30)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (65536, 4096, 512):  # then the last, partial blocks
            try:
                while f.write(b"\0" * chunk):
                    pass
            except OSError:
                pass
    return filler


async def api_user(c: httpx.AsyncClient, name: str) -> User:
    r = await c.post("/api/auth/signup", json={"username": name, "email": f"{name}@example.org", "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await c.post("/api/auth/login", json={"login": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return User(r.json()["user"]["id"], name, r.json()["token"])


async def chat_until_full(ws: WS, acked: list[str], tries: int = 90, pad: int = 0) -> dict[str, Any]:
    """Send chats until one is refused; the others are acknowledged (echoed) and recorded."""
    for i in range(tries):
        text = f"during {i} " + "x" * pad
        await ws.send({"type": "chat", "text": text})
        frame = await ws.recv()
        if frame["type"] == "error":
            return frame
        assert frame["type"] == "chat" and frame["message"]["text"] == text, frame
        acked.append(text)
    raise AssertionError(f"{tries} chats were all saved on a full disk")


async def all_texts(c: httpx.AsyncClient, user: User, code: str) -> list[str]:
    r = await c.get(f"/api/rooms/{code}/messages", params={"limit": 100}, headers=user.auth)
    assert r.status_code == 200, r.text
    return sorted(m["text"] for m in r.json()["messages"])


@pytest.mark.skipif(not can_mount(), reason="needs root and unshare -m to mount a small tmpfs")
async def test_full_disk_for_real(tmp_path: Path) -> None:
    with serve_on_tmpfs(tmp_path) as (url, pid, err):
        data_dir = tmp_path / "data"
        data = Path(f"/proc/{pid}/root{data_dir}")  # the server's tmpfs, seen from here
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            alice, bob, carol = await api_user(c, "alice"), await api_user(c, "bob"), await api_user(c, "carol")
            code = await make_room(c, alice)
            acked = ["before"]
            async with join(url, code, alice.token) as (a, _), join(url, code, bob.token) as (b, _), \
                    AsyncExitStack() as carols:
                await a.expect("peer-joined")
                _, wc = await carols.enter_async_context(join(url, code, carol.token))
                await a.expect("peer-joined")
                await b.expect("peer-joined")
                await a.send({"type": "chat", "text": "before"})
                await a.expect("chat")
                await b.expect("chat")
                # a sign-in older than a minute is refreshed on use: make that write due
                in_namespace(pid, data_dir, "UPDATE sessions SET last_seen_at = 0")
                filler = fill(data)

                refused = await chat_until_full(a, acked)
                assert refused["code"] == "storage_full" and "disk" in refused["message"], refused
                await a.assert_idle()  # the socket stays open
                r = await c.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "storage_full" and r.headers["Retry-After"] == "60"
                r = await c.get("/api/ready")
                assert r.status_code == 503 and "storage_full" in r.json()["reason"], r.text
                assert (await c.get("/api/health")).status_code == 200
                assert await all_texts(c, alice, code) == sorted(acked)  # reads keep working
                for text in acked[1:]:  # bob got exactly the saved ones
                    assert (await b.expect("chat"))["message"]["text"] == text
                await b.assert_idle()
                await carols.aclose()  # leaving cannot close the stay now: the others still see it
                for ws in (a, b):
                    assert await ws.expect("peer-left") == {"type": "peer-left", "peer_id": wc["peer_id"]}

                filler.unlink()
                r = await c.get("/api/ready")
                assert r.status_code == 200, r.text
                await a.send({"type": "chat", "text": "after"})
                for ws in (a, b):
                    assert (await ws.until("chat"))["message"]["text"] == "after"
                acked.append("after")
            r = await c.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
            assert r.status_code == 200, r.text
            assert await all_texts(c, alice, code) == sorted(acked)  # nothing acknowledged was lost
    log = err.read_text()
    assert log.count("the disk is full") == 1, log  # several failures, one line within a minute
    assert "accepts writes again" in log
    assert "Traceback" not in log, log


# -- in-process, with a fake clock --------------------------------------------------------


async def set_max_pages(server: RunningServer, extra: int | None) -> None:
    """Cap the database at its current size plus ``extra`` pages (None: lift the cap)."""

    def cap(db: Any) -> None:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + extra if extra is not None else 2**31 - 2}")

    await server.services.store.run(cap)


async def test_full_database_is_logged_once_a_minute_and_recovers(
    server: RunningServer, client: httpx.AsyncClient, clock: FakeClock, alice: User, bob: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert server.services.store.clock is clock  # the server's clock paces the log line
    code = await make_room(client, alice)
    acked: list[str] = []
    caplog.set_level(logging.ERROR, logger="meet.store")
    async with join(server.url, code, alice.token) as (a, _), join(server.url, code, bob.token) as (b, _):
        await a.expect("peer-joined")
        await set_max_pages(server, 0)
        refused = await chat_until_full(a, acked, pad=1500)
        assert refused["code"] == "storage_full"
        for _ in range(3):
            await a.send({"type": "chat", "text": "x" * 2000})
            await a.expect_error("storage_full")
        full_lines = [r for r in caplog.records if "the disk is full" in r.getMessage()]
        assert len(full_lines) == 1
        clock.advance(61)
        await a.send({"type": "chat", "text": "y" * 2000})
        await a.expect_error("storage_full")
        assert len([r for r in caplog.records if "the disk is full" in r.getMessage()]) == 2
        r = await client.get("/api/ready")
        assert r.status_code == 503 and r.json()["reason"].startswith("storage_full"), r.text
        for text in acked:  # bob got exactly the saved ones
            assert (await b.expect("chat"))["message"]["text"] == text
        await b.assert_idle()

        await set_max_pages(server, None)
        assert (await client.get("/api/ready")).status_code == 200
        with trio.fail_after(5):
            await a.send({"type": "chat", "text": "after"})
            assert (await b.until("chat"))["message"]["text"] == "after"
    assert await all_texts(client, alice, code) == sorted([*acked, "after"])
