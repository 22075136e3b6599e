"""The lobby: people who must be let in wait on their room socket until a host answers.

Through the real server with WebSocket clients: a guest knocks and is admitted (``welcome`` on
the same socket) or denied (4403, its pass withdrawn); knocks expire (4408); nobody there to
answer; the knock reaches hosts who arrive later; a waiter who leaves; co-hosts answer; members
wait when the room's lobby is on, hosts and people reconnecting never; frames while waiting; the
meeting ending under a waiter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import Outbox, User, make_config, make_room, make_user
from wsclient import WS, connect, join, room_ws_url

from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer, open_server

LOBBY_TIMEOUT = 2.0  # one test lets a knock expire; the others answer long before


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path, auth={"mail_max_per_window": 50}, rooms={"lobby_timeout": LOBBY_TIMEOUT}
    )


async def guest_token(client: httpx.AsyncClient, code: str, name: str = "Ana") -> str:
    r = await client.post(f"/api/rooms/{code}/guest", json={"name": name})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


async def expect_lobby(ws: WS, host_present: bool) -> dict[str, Any]:
    frame = await ws.expect("lobby")
    assert frame["host_present"] is host_present, frame
    assert 0 < frame["timeout"] <= LOBBY_TIMEOUT
    return frame


async def test_a_guest_knocks_and_is_let_in(server: RunningServer, client: httpx.AsyncClient, alice: User) -> None:
    code = await make_room(client, alice)  # guests "lobby" is the default
    token = await guest_token(client, code)
    async with (
        join(server.url, code, alice.token) as (host, _),
        connect(room_ws_url(server.url, code), token) as guest,
    ):
        lobby = await expect_lobby(guest, host_present=True)
        assert lobby["room"]["code"] == code and lobby["room"]["title"] == "Standup"
        knock = await host.expect("knock")
        assert (knock["name"], knock["guest"]) == ("Ana", True)
        await guest.send({"type": "ping"})
        assert await guest.recv() == {"type": "pong"}, "the heartbeat goes on while waiting"
        await guest.send({"type": "chat", "text": "let me in"})
        await guest.expect_error("in_lobby")
        await host.send({"type": "admit", "id": knock["id"]})
        welcome = await guest.expect("welcome")
        assert welcome["peer_id"] == knock["id"] and welcome["user"]["guest"] is True
        ended = await host.expect("knock-ended")
        assert ended == {"type": "knock-ended", "id": knock["id"], "outcome": "admitted",
                         "by": {"id": alice.id, "username": "alice"}}
        assert (await host.expect("peer-joined"))["peer"]["peer_id"] == knock["id"]
        await guest.send({"type": "chat", "text": "thanks"})
        assert (await host.expect("chat"))["message"]["text"] == "thanks"
        await host.send({"type": "admit", "id": knock["id"]})
        await host.expect_error("unknown_knock")


async def test_a_denied_guest_is_closed_out_and_loses_its_pass(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    code = await make_room(client, alice)
    token = await guest_token(client, code)
    async with join(server.url, code, alice.token) as (host, _):
        async with connect(room_ws_url(server.url, code), token) as guest:
            await expect_lobby(guest, host_present=True)
            knock = await host.expect("knock")
            await host.send({"type": "deny", "id": knock["id"]})
            frames, close_code = await guest.frames_then_close()
            assert [f["code"] for f in frames if f["type"] == "error"] == ["denied"]
            assert close_code == 4403
            assert (await host.expect("knock-ended"))["outcome"] == "denied"
        async with connect(room_ws_url(server.url, code), token) as again:
            assert (await again.expect("error"))["code"] == "guest_expired"
            assert await again.closed() == 4401
        await host.assert_idle()


async def test_an_unanswered_knock_expires(server: RunningServer, client: httpx.AsyncClient, alice: User) -> None:
    code = await make_room(client, alice)
    token = await guest_token(client, code)
    async with (
        join(server.url, code, alice.token) as (host, _),
        connect(room_ws_url(server.url, code), token) as guest,
    ):
        await expect_lobby(guest, host_present=True)
        knock = await host.expect("knock")
        frames, close_code = await guest.frames_then_close(timeout=LOBBY_TIMEOUT + 10)
        assert ([f["code"] for f in frames if f["type"] == "error"], close_code) == (["lobby_timeout"], 4408)
        assert await host.expect("knock-ended") == {"type": "knock-ended", "id": knock["id"], "outcome": "expired"}


async def test_nobody_there_to_answer_then_a_host_arrives(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    code = await make_room(client, alice)
    token = await guest_token(client, code)
    async with connect(room_ws_url(server.url, code), token) as guest:
        await expect_lobby(guest, host_present=False)
        async with join(server.url, code, alice.token) as (host, welcome):
            assert welcome["peers"] == [], "waiters are not in the room"
            knock = await host.expect("knock")
            await expect_lobby(guest, host_present=True)
            await host.send({"type": "admit", "id": knock["id"]})
            await guest.expect("welcome")
            await host.until("peer-joined")


async def test_a_waiter_who_leaves_ends_the_knock(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    code = await make_room(client, alice)
    token = await guest_token(client, code)
    async with join(server.url, code, alice.token) as (host, _):
        async with connect(room_ws_url(server.url, code), token) as guest:
            await expect_lobby(guest, host_present=True)
            knock = await host.expect("knock")
        assert await host.expect("knock-ended") == {"type": "knock-ended", "id": knock["id"], "outcome": "left"}
        await host.send({"type": "admit", "id": knock["id"]})
        await host.expect_error("unknown_knock")


async def test_co_hosts_answer_knocks_and_participants_cannot(
    server: RunningServer, client: httpx.AsyncClient, alice: User, outbox: Outbox
) -> None:
    bob, carol = await make_user(client, outbox, "bob"), await make_user(client, outbox, "carol")
    code = await make_room(client, alice)
    token = await guest_token(client, code)
    async with (
        join(server.url, code, alice.token) as (host, _),
        join(server.url, code, bob.token) as (cohost, bw),
        join(server.url, code, carol.token) as (member, _),
    ):
        await host.until("peer-joined")
        await host.until("peer-joined")
        await host.send({"type": "promote", "peer_id": bw["peer_id"]})
        assert await cohost.until("role") == {"type": "role", "peer_id": bw["peer_id"], "role": "cohost"}
        async with connect(room_ws_url(server.url, code), token) as guest:
            await expect_lobby(guest, host_present=True)
            knock = await host.until("knock")
            assert await cohost.until("knock") == knock
            await member.send({"type": "admit", "id": knock["id"]})
            seen = [await member.recv() for _ in range(2)]  # the promotion, then the refusal
            assert [f["type"] for f in seen] == ["role", "error"] and seen[1]["code"] == "not_host", seen
            await cohost.send({"type": "admit", "id": knock["id"]})
            await guest.expect("welcome")
            ended = await host.until("knock-ended")
            assert (ended["outcome"], ended["by"]["username"]) == ("admitted", "bob")
        frames = [await member.recv()]
        while frames[-1]["type"] != "peer-joined":
            frames.append(await member.recv())
        assert frames[-1]["peer"]["guest"] is True
        assert not [f for f in frames if f["type"].startswith("knock")], "knocks go to hosts only"


async def test_members_wait_when_the_lobby_is_on(
    server: RunningServer, client: httpx.AsyncClient, alice: User, outbox: Outbox
) -> None:
    bob = await make_user(client, outbox, "bob")
    code = await make_room(client, alice)
    r = await client.patch(f"/api/rooms/{code}", json={"lobby": True}, headers=alice.auth)
    assert r.json()["room"]["lobby"] is True
    async with join(server.url, code, alice.token) as (host, _):  # the host never waits
        async with connect(room_ws_url(server.url, code), bob.token) as member:
            await expect_lobby(member, host_present=True)
            knock = await host.expect("knock")
            assert (knock["name"], knock["guest"]) == ("bob", False)
            await host.send({"type": "admit", "id": knock["id"]})
            assert (await member.expect("welcome"))["user"]["username"] == "bob"
            await host.until("peer-joined")
        await host.until("peer-left")
        # Back within the reconnect grace: straight in.
        async with join(server.url, code, bob.token) as (member, _):
            await host.until("peer-joined")
        # Guests "open" lets guests in directly, but the lobby setting still holds members.
        await client.patch(f"/api/rooms/{code}", json={"guests": "open"}, headers=alice.auth)
        async with join(server.url, code, await guest_token(client, code)) as (_guest, welcome):
            assert welcome["user"]["guest"] is True


async def test_ending_the_meeting_sends_waiters_away(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    code = await make_room(client, alice)
    token = await guest_token(client, code)
    async with connect(room_ws_url(server.url, code), token) as guest:
        await expect_lobby(guest, host_present=False)
        r = await client.post(f"/api/rooms/{code}/end", headers=alice.auth)
        assert r.status_code == 200
        frames, close_code = await guest.frames_then_close()
        assert ([f["code"] for f in frames if f["type"] == "error"], close_code) == (["room_ended"], 4410)


async def test_opening_the_room_lets_the_waiters_in(
    server: RunningServer, client: httpx.AsyncClient, alice: User, outbox: Outbox
) -> None:
    bob = await make_user(client, outbox, "bob")
    code = await make_room(client, alice, title="Open up")
    await client.patch(f"/api/rooms/{code}", json={"lobby": True}, headers=alice.auth)
    r = await client.post(f"/api/rooms/{code}/join", headers=bob.auth)  # the pre-flight says so
    assert (r.status_code, r.json()["lobby"]) == (200, True)
    assert (await client.post(f"/api/rooms/{code}/join", headers=alice.auth)).json()["lobby"] is False
    token = await guest_token(client, code)
    async with (
        join(server.url, code, alice.token) as (host, _),
        connect(room_ws_url(server.url, code), bob.token) as member,
        connect(room_ws_url(server.url, code), token) as guest,
    ):
        await expect_lobby(member, host_present=True)
        await expect_lobby(guest, host_present=True)
        member_knock, guest_knock = await host.expect("knock"), await host.expect("knock")
        # Lobby off: members no longer wait, guests (guests "lobby") still do.
        r = await client.patch(f"/api/rooms/{code}", json={"lobby": False}, headers=alice.auth)
        assert r.status_code == 200
        await member.expect("welcome")
        ended = await host.until("knock-ended")
        assert (ended["id"], ended["outcome"], ended["by"]["username"]) == (member_knock["id"], "admitted", "alice")
        await client.patch(f"/api/rooms/{code}", json={"guests": "open"}, headers=alice.auth)
        await guest.expect("welcome")
        assert (await host.until("knock-ended"))["id"] == guest_knock["id"]


async def test_shutdown_closes_the_lobby_too(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, rooms={"lobby_timeout": LOBBY_TIMEOUT})
    outbox = Outbox(config.outbox_dir)
    seen: dict[str, Any] = {}

    async def wait_in_lobby(url: str, code: str, token: str, waiting: trio.Event) -> None:
        async with connect(room_ws_url(url, code), token) as guest:
            await expect_lobby(guest, host_present=False)
            waiting.set()
            seen["guest"] = await guest.frames_then_close(timeout=15)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery, open_server(config, clock=clock) as running:
            async with httpx.AsyncClient(base_url=running.url) as c:
                alice = await make_user(c, outbox, "alice")
                code = await make_room(c, alice)
                token = await guest_token(c, code)
            waiting = trio.Event()
            nursery.start_soon(wait_in_lobby, running.url, code, token, waiting)
            await waiting.wait()
    assert seen["guest"] == ([], 1001), "told to come back after the restart, not left hanging"
