"""Graceful shutdown of ``open_server``: in-flight requests finish, the listener closes at once,
slow requests are cut at ``graceful_timeout``, and the database is closed cleanly."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
import trio.testing
from conftest import PASSWORD, make_config

from meet.clock import FakeClock
from meet.config import Config
from meet.errors import StoreError
from meet.server import RunningServer, open_server
from meet.store.db import schema_version


class LoginGate:
    """Wraps ``Passwords.check`` of a running server: tells when a sign-in reached the
    password check and, when ``hold`` is set, keeps it there until ``release`` is set."""

    def __init__(self, running: RunningServer, monkeypatch: pytest.MonkeyPatch, *, hold: bool) -> None:
        self.entered = trio.Event()
        self.release = trio.Event()
        passwords = running.services.accounts.passwords
        original: Callable[..., Awaitable[Any]] = passwords.check

        async def check(*args: Any) -> Any:
            self.entered.set()
            if hold:
                await self.release.wait()
            return await original(*args)

        monkeypatch.setattr(passwords, "check", check)


def address(running: RunningServer) -> tuple[str, int]:
    parts = urlsplit(running.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def assert_refused(host: str, port: int) -> None:
    with pytest.raises(OSError):
        stream = await trio.open_tcp_stream(host, port)
        await stream.aclose()


def assert_database_closed_cleanly(config: Config, sessions: int) -> None:
    db = config.database_path
    # Closing the last connection checkpoints the WAL into the main file and removes it.
    assert not Path(f"{db}-wal").exists()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (sessions,)
    finally:
        conn.close()


async def post_login(url: str, results: list[httpx.Response | Exception], login: str = "alice") -> None:
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        try:
            results.append(await client.post("/api/auth/login", json={"login": login, "password": PASSWORD}))
        except httpx.TransportError as exc:
            results.append(exc)


async def test_slow_in_flight_request_completes(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sign-in whose (deliberately slow) argon2 check is running when the stop comes."""
    config = make_config(
        tmp_path,
        server={"graceful_timeout": 30.0},
        auth={"argon2_time_cost": 8, "argon2_memory_kib": 65536, "argon2_parallelism": 1},
    )
    results: list[httpx.Response | Exception] = []
    with trio.fail_after(30):
        async with open_server(config, clock=clock) as running:
            await running.services.accounts.add_user("alice", "alice@example.org", PASSWORD, admin=False)
            gate = LoginGate(running, monkeypatch, hold=False)
            host, port = address(running)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post_login, running.url, results)
                await gate.entered.wait()  # argon2 is now hashing in a worker thread
                running.stop.set()
            store = running.services.store
        # Leaving the block returned: the server has exited.

    assert len(results) == 1
    response = results[0]
    assert isinstance(response, httpx.Response), f"the in-flight request failed: {response!r}"
    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == "alice"
    await assert_refused(host, port)
    with pytest.raises(StoreError, match="closed"):
        await store.run(schema_version)
    assert_database_closed_cleanly(config, sessions=1)


async def test_listener_closes_at_once_while_requests_drain(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic ordering: the request is held in the handler until the listener is shut."""
    config = make_config(tmp_path, server={"graceful_timeout": 30.0})
    results: list[httpx.Response | Exception] = []
    with trio.fail_after(15):
        async with open_server(config, clock=clock) as running:
            await running.services.accounts.add_user("alice", "alice@example.org", PASSWORD, admin=False)
            host, port = address(running)
            # An idle keep-alive connection must not hold up the shutdown either.
            idle = httpx.AsyncClient(base_url=running.url, timeout=5)
            assert (await idle.get("/api/health")).status_code == 200
            gate = LoginGate(running, monkeypatch, hold=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post_login, running.url, results)
                await gate.entered.wait()
                running.stop.set()
                await trio.testing.wait_all_tasks_blocked()
                # Shutting down: no new connections, but the held request is still open.
                await assert_refused(host, port)
                assert results == []
                gate.release.set()
            await idle.aclose()

    assert len(results) == 1
    response = results[0]
    assert isinstance(response, httpx.Response), f"the in-flight request failed: {response!r}"
    assert response.status_code == 200, response.text
    assert_database_closed_cleanly(config, sessions=1)


async def test_unknown_user_in_flight_gets_401(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path, server={"graceful_timeout": 30.0})
    results: list[httpx.Response | Exception] = []
    with trio.fail_after(15):
        async with open_server(config, clock=clock) as running:
            gate = LoginGate(running, monkeypatch, hold=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post_login, running.url, results, "nobody")
                await gate.entered.wait()
                running.stop.set()
                await trio.testing.wait_all_tasks_blocked()
                gate.release.set()
    assert len(results) == 1
    response = results[0]
    assert isinstance(response, httpx.Response), f"the in-flight request failed: {response!r}"
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert_database_closed_cleanly(config, sessions=0)


async def test_requests_past_graceful_timeout_are_cut(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that never finishes does not keep the server alive past graceful_timeout."""
    config = make_config(tmp_path, server={"graceful_timeout": 0.5})
    results: list[httpx.Response | Exception] = []
    with trio.fail_after(10):
        async with open_server(config, clock=clock) as running:
            await running.services.accounts.add_user("alice", "alice@example.org", PASSWORD, admin=False)
            host, port = address(running)
            gate = LoginGate(running, monkeypatch, hold=True)  # never released
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post_login, running.url, results)
                await gate.entered.wait()
                running.stop.set()
                stopped_at = trio.current_time()
        exited_at = trio.current_time()

    assert exited_at - stopped_at >= 0.5
    assert len(results) == 1
    assert isinstance(results[0], httpx.TransportError), results[0]
    assert not gate.release.is_set()
    await assert_refused(host, port)
    assert_database_closed_cleanly(config, sessions=0)


async def test_leaving_the_block_stops_the_server(tmp_path: Path, clock: FakeClock) -> None:
    """No explicit stop: leaving ``open_server`` shuts it down and closes the database."""
    config = make_config(tmp_path)
    with trio.fail_after(10):
        async with open_server(config, clock=clock) as running:
            host, port = address(running)
            async with httpx.AsyncClient(base_url=running.url, timeout=5) as client:
                assert (await client.get("/api/ready")).status_code == 200
    assert running.stop.is_set()
    await assert_refused(host, port)
    assert_database_closed_cleanly(config, sessions=0)
