"""Revoked sign-ins lose their WebSockets, and a handler's crash never takes a socket down.

Revocations inside the server (sign-out, password reset) poke the session guard, so the
sockets close at once; these tests run with a 30 s heartbeat, so a close seen within a few
seconds can only come from the poke. Revocations by another process (the ``meet user`` CLI
writing the same SQLite file) are caught by the guard's next pass, one per ``ping_interval``:
those tests count the guard's passes instead of measuring time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
from conftest import PASSWORD, Outbox, User, make_config, make_room, make_user, run_cli
from wsclient import WS, connect, join, room_ws_url, user_ws_url

from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer

SLOW_HEARTBEAT = {"ping_interval": 30.0, "idle_timeout": 60.0}
FAST_HEARTBEAT = {"ping_interval": 0.3, "idle_timeout": 30.0}
POKE_WAIT = 5.0  # far below the 30 s pass: a close within it came from the poke


@pytest.fixture
def rooms_settings() -> dict[str, Any]:
    return SLOW_HEARTBEAT


@pytest.fixture
def config(tmp_path: Path, rooms_settings: dict[str, Any]) -> Config:
    return make_config(tmp_path, rooms=rooms_settings, auth={"mail_max_per_window": 50})


async def signed_out(ws: WS, timeout: float) -> None:
    """The socket gets ``error`` ``signed_out`` (possibly after other frames), then 4401."""
    frames, code = await ws.frames_then_close(timeout)
    assert code == 4401, (code, frames)
    errors = [f for f in frames if f["type"] == "error"]
    assert errors and errors[-1]["code"] == "signed_out" and errors[-1]["message"], frames


async def test_logout_closes_room_and_presence_sockets_at_once(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    room = await make_room(client, alice)
    async with join(server.url, room, bob.token) as (b, _), join(server.url, room, alice.token) as (a, wa):
        await b.expect("peer-joined")
        async with connect(user_ws_url(server.url), alice.token) as presence:
            await presence.expect("presence")
            r = await client.post("/api/auth/logout", headers=alice.auth)
            assert r.status_code == 200, r.text
            with trio.fail_after(POKE_WAIT):
                await signed_out(a, POKE_WAIT)
                await signed_out(presence, POKE_WAIT)
        # the others see her leave and carry on
        assert await b.until("peer-left") == {"type": "peer-left", "peer_id": wa["peer_id"]}
        await b.send({"type": "chat", "text": "still here"})
        assert (await b.until("chat"))["message"]["text"] == "still here"
        watched = [c for conns in server.services.sessions.by_session.values() for c in conns]
        assert [c.user.id for c in watched] == [bob.id]  # alice's sockets were forgotten


async def test_other_sessions_of_the_user_stay_open(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    r = await client.post("/api/auth/login", json={"login": "alice", "password": PASSWORD})
    other = r.json()["token"]
    async with connect(user_ws_url(server.url), alice.token) as mine, connect(user_ws_url(server.url), other) as kept:
        await mine.expect("presence")
        await kept.expect("presence")
        await client.post("/api/auth/logout", headers=alice.auth)
        await signed_out(mine, POKE_WAIT)
        await kept.assert_idle()  # the guard's pass ran and left the other sign-in alone


async def test_password_reset_closes_every_socket_of_the_user(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, alice: User
) -> None:
    r = await client.post("/api/auth/login", json={"login": "alice", "password": PASSWORD})
    second = r.json()["token"]
    async with connect(user_ws_url(server.url), alice.token) as one, connect(user_ws_url(server.url), second) as two:
        await one.expect("presence")
        await two.expect("presence")
        r = await client.post("/api/auth/forgot", json={"email": "alice@example.org"})
        assert r.status_code == 202, r.text
        token = parse_qs(urlsplit(outbox.link("alice@example.org")).query)["token"][0]
        r = await client.post("/api/auth/reset", json={"token": token, "password": "a brand new password"})
        assert r.status_code == 200, r.text
        await signed_out(one, POKE_WAIT)
        await signed_out(two, POKE_WAIT)


@pytest.mark.parametrize("rooms_settings", [FAST_HEARTBEAT])
async def test_cli_set_password_closes_sockets_within_one_heartbeat(
    tmp_path: Path, server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    guard = server.services.sessions
    async with connect(user_ws_url(server.url), alice.token) as a:
        await a.expect("presence")  # listed before bob comes: bob arrives as `online`, not in her roster
        async with connect(user_ws_url(server.url), bob.token) as b:
            await b.expect("presence")
            await a.expect("online")
            await run_cli(tmp_path, "user", "set-password", "alice", "--password-stdin", stdin=b"another password\n")
            revoked_at_pass = guard.passes
            await signed_out(a, timeout=10)
            # closed by the first pass that started after the CLI's commit (one still running
            # then may finish first without seeing it): within one ping_interval
            assert guard.passes - revoked_at_pass <= 2
            assert await b.until("offline") == {"type": "offline", "user_id": alice.id}
            await b.assert_idle()


@pytest.mark.parametrize("rooms_settings", [FAST_HEARTBEAT])
async def test_cli_delete_closes_sockets_within_one_heartbeat(
    tmp_path: Path, server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    guard = server.services.sessions
    room = await make_room(client, alice)
    async with join(server.url, room, alice.token) as (a, _), join(server.url, room, bob.token) as (b, wb):
        await a.expect("peer-joined")
        await run_cli(tmp_path, "user", "delete", "bob")
        revoked_at_pass = guard.passes
        await signed_out(b, timeout=10)
        assert guard.passes - revoked_at_pass <= 2
        assert await a.until("peer-left") == {"type": "peer-left", "peer_id": wb["peer_id"]}
        await a.send({"type": "chat", "text": "bob is gone"})
        assert (await a.until("chat"))["message"]["text"] == "bob is gone"


async def test_deleted_users_chat_gets_an_error_and_the_room_keeps_working(
    tmp_path: Path, server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, alice: User, bob: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before the guard's next pass (30 s away) the deleted user's chat fails on the foreign
    key: that is an ``error`` ``internal_error`` reply, never a 1011 close."""
    room = await make_room(client, alice)
    async with join(server.url, room, alice.token) as (a, _), join(server.url, room, bob.token) as (b, _wb):
        await a.expect("peer-joined")
        await run_cli(tmp_path, "user", "delete", "bob")
        await b.send({"type": "chat", "text": "am I still here?"})
        await b.expect_error("internal_error")
        await b.assert_idle()  # still open, still answering
        logged = [r for r in caplog.records if r.name == "meet.signaling"]
        assert len(logged) == 1 and logged[0].exc_info is not None  # once, with the traceback
        assert "FOREIGN KEY" in caplog.text
        await a.send({"type": "chat", "text": "the room works"})
        for ws in (a, b):
            assert (await ws.until("chat"))["message"]["text"] == "the room works"
        server.services.sessions.poke()  # what the next pass would find
        await signed_out(b, POKE_WAIT)


async def test_unexpected_error_outside_the_loop_gets_an_error_frame(
    server: RunningServer, client: httpx.AsyncClient, alice: User, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception escaping a WebSocket handler reaches the app's error handler, which used
    to touch ``request`` there and crash; now the client hears ``internal_error`` and 1011."""
    room = await make_room(client, alice)

    async def broken_join(*args: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(server.services.rooms, "join", broken_join)
    async with connect(room_ws_url(server.url, room), alice.token) as ws:
        frames, code = await ws.frames_then_close()
    assert frames == [{"type": "error", "code": "internal_error", "message": "Something went wrong on the server."}]
    assert code == 1011
    assert "Not within a request context" not in caplog.text
    assert "injected fault" in caplog.text
    assert server.services.sessions.per_user == {}  # the refused socket was forgotten


async def test_bearer_clients_of_one_user_from_many_tabs(
    tmp_path: Path, server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    """Registration is per connection: closing some sockets of a session leaves the others watched."""
    carol = await make_user(client, outbox, "carol")
    async with connect(user_ws_url(server.url), carol.token) as one:
        await one.expect("presence")
        async with connect(user_ws_url(server.url), carol.token) as two:
            await two.expect("presence")
        await one.assert_idle()
        assert sum(len(c) for c in server.services.sessions.by_session.values()) == 1
        await client.post("/api/auth/logout", headers=carol.auth)
        await signed_out(one, POKE_WAIT)


async def test_expired_session_loses_its_socket_at_the_next_pass(
    server: RunningServer, clock: FakeClock, alice: User, bob: User
) -> None:
    async with connect(user_ws_url(server.url), alice.token) as a:
        await a.expect("presence")  # listed before bob comes: bob arrives as `online`, not in her roster
        async with connect(user_ws_url(server.url), bob.token) as b:
            await b.expect("presence")
            await a.expect("online")
            guard = server.services.sessions
            clock.advance(29 * 86400)  # [auth] session_days is 30
            checked = guard.passed
            guard.poke()  # stands in for the next periodic pass
            with trio.fail_after(POKE_WAIT):
                await checked.wait()
            await a.assert_idle()
            clock.advance(2 * 86400)
            server.services.sessions.poke()
            await signed_out(a, POKE_WAIT)
            await signed_out(b, POKE_WAIT)
