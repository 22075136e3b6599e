"""Signed-in sessions answered from memory (meet/session_cache.py), and every way one ends.

Each test warms the cache first (and checks the warm request really was answered from it),
then ends or changes the session by one path — sign-out, password reset, an admin's disable,
delete or promotion, the ``meet user`` CLI in another process, the session's own expiry — and
the very next request must see it. Without the invalidation each of them gets the cached
200 instead. The database calls are counted through the store's one seam, ``Store.run``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
from conftest import PASSWORD, Outbox, User, login, make_config, make_room, make_user, run_cli

from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer
from meet.session_cache import SessionCache


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, auth={"mail_max_per_window": 50})


class StoreCalls:
    """Counts the calls through ``Store.run`` (every query of the server goes through it)."""

    def __init__(self, server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        store = server.services.store
        run = store.run

        async def counted(fn: Any, *args: Any) -> Any:
            self.names.append(fn.__name__)
            return await run(fn, *args)

        monkeypatch.setattr(store, "run", counted)


async def me(client: httpx.AsyncClient, user: User) -> httpx.Response:
    return await client.get("/api/auth/me", headers=user.auth)


async def warm(server: RunningServer, client: httpx.AsyncClient, user: User) -> None:
    """Two requests: the first looks the session up, the second must be a cache hit."""
    cache = server.services.accounts.session_cache
    assert (await me(client, user)).status_code == 200
    hits = cache.hits
    r = await me(client, user)
    assert r.status_code == 200 and r.json()["user"]["username"] == user.username
    assert cache.hits == hits + 1, "the second request was not answered from the cache"


async def test_a_warm_session_makes_no_database_call(
    server: RunningServer, client: httpx.AsyncClient, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    await warm(server, client, alice)
    calls = StoreCalls(server, monkeypatch)
    for _ in range(20):
        assert (await me(client, alice)).status_code == 200
    assert calls.names == []
    # A token never seen is looked up (once per request: invalid answers are not kept).
    stranger = User(alice.id, "alice", alice.token[:-2] + ("AA" if not alice.token.endswith("AA") else "BB"))
    assert (await me(client, stranger)).status_code == 401
    assert (await me(client, stranger)).status_code == 401


async def test_ordinary_writes_keep_the_cache(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    await warm(server, client, alice)
    await make_room(client, bob)  # a room row
    await login(client, "bob")  # a session row, and users.last_login_at
    watch = server.services.accounts.epoch_watch
    reads = watch.reads
    calls = StoreCalls(server, monkeypatch)
    assert (await me(client, alice)).status_code == 200
    assert calls.names == [], "a write that revokes nothing dropped the cache"
    assert watch.reads == reads + 1  # those commits were noticed, and the epoch read once


async def test_logout_ends_the_cached_session_and_only_it(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    other = User(alice.id, "alice", await login(client, "alice"))
    await warm(server, client, alice)
    await warm(server, client, other)
    r = await client.post("/api/auth/logout", headers=alice.auth)
    assert r.status_code == 200, r.text
    assert (await me(client, alice)).status_code == 401
    assert (await me(client, other)).status_code == 200  # her other sign-in lives on


async def test_password_reset_ends_every_cached_session(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, alice: User
) -> None:
    await warm(server, client, alice)
    r = await client.post("/api/auth/forgot", json={"email": "alice@example.org"})
    assert r.status_code == 202, r.text
    token = parse_qs(urlsplit(outbox.link("alice@example.org")).query)["token"][0]
    r = await client.post("/api/auth/reset", json={"token": token, "password": "a brand new password"})
    assert r.status_code == 200, r.text
    assert (await me(client, alice)).status_code == 401


async def test_admin_changes_reach_the_next_request(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, bob: User
) -> None:
    made = await server.services.accounts.add_user("root", "root@example.org", PASSWORD, admin=True)
    root = User(made.id, "root", await login(client, "root"))
    carol = await make_user(client, outbox, "carol")
    for user in (bob, carol):
        await warm(server, client, user)
        assert (await me(client, user)).json()["user"]["is_admin"] is False

    async def patch(user: User, body: dict[str, Any]) -> None:
        r = await client.patch(f"/api/admin/users/{user.id}", json=body, headers=root.auth)
        assert r.status_code == 200, r.text

    await patch(bob, {"is_admin": True})  # what the session carries changed
    assert (await me(client, bob)).json()["user"]["is_admin"] is True
    await warm(server, client, bob)
    await patch(bob, {"disabled": True})
    assert (await me(client, bob)).status_code == 401
    await warm(server, client, carol)
    r = await client.delete(f"/api/admin/users/{carol.id}", headers=root.auth)
    assert r.status_code == 200, r.text
    assert (await me(client, carol)).status_code == 401


async def test_cli_in_another_process_ends_cached_sessions(
    tmp_path: Path, server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    for user in (alice, bob):
        await warm(server, client, user)
    await run_cli(tmp_path, "user", "delete", "bob")
    assert (await me(client, bob)).status_code == 401
    assert (await me(client, alice)).status_code == 200
    await warm(server, client, alice)
    await run_cli(tmp_path, "user", "set-password", "alice", "--password-stdin", stdin=b"another password\n")
    assert (await me(client, alice)).status_code == 401


async def test_a_cached_session_ends_at_its_expiry(
    server: RunningServer, client: httpx.AsyncClient, clock: FakeClock, config: Config, alice: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await warm(server, client, alice)
    clock.advance(59)
    calls = StoreCalls(server, monkeypatch)
    assert (await me(client, alice)).status_code == 200
    assert calls.names == []
    clock.advance(2)  # past the refresh: looked up again (which records last_seen_at)
    assert (await me(client, alice)).status_code == 200
    assert calls.names == ["lookup_session"]
    clock.advance(config.auth.session_days * 86400)
    assert (await me(client, alice)).status_code == 401


async def test_without_the_epoch_row_nothing_is_answered_from_memory(
    server: RunningServer, client: httpx.AsyncClient, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    await warm(server, client, alice)
    path = server.services.store.path
    await trio.to_thread.run_sync(_delete_epoch_row, path)  # by hand, as another process would
    calls = StoreCalls(server, monkeypatch)
    assert (await me(client, alice)).status_code == 200
    assert (await me(client, alice)).status_code == 200
    assert calls.names == ["lookup_session", "lookup_session"]  # looked up every time
    assert (await client.post("/api/auth/logout", headers=alice.auth)).status_code == 200
    assert (await me(client, alice)).status_code == 401


def _delete_epoch_row(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM session_epoch")


def test_the_cache_is_bounded_and_follows_the_epoch() -> None:
    clock = FakeClock(1000.0)
    epoch: list[int | None] = [7]
    cache: SessionCache[str] = SessionCache(clock.now, lambda: epoch[0], max_entries=2, refresh=60)
    for token in ("a", "b", "c"):
        cache.put(token, f"session {token}", expires_at=1030.0, epoch=7)
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") == "session c"
    cache.put("d", "session d", expires_at=2000.0, epoch=6)  # read before a revocation: not kept
    assert cache.get("d") is None
    clock.advance(30)
    assert cache.get("c") is None  # its session expired
    cache.put("e", "session e", expires_at=5000.0, epoch=7)
    assert cache.get("e") == "session e"
    clock.advance(60)
    assert cache.get("e") is None  # refreshed at least once a minute
    cache.put("e", "session e", expires_at=5000.0, epoch=7)
    epoch[0] = 8
    assert cache.get("e") is None and len(cache) == 0
    epoch[0] = None
    cache.put("f", "session f", expires_at=5000.0, epoch=8)
    assert cache.get("f") is None  # an epoch that cannot be known answers nothing from memory
