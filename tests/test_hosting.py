"""Running a meeting: co-hosts, the host role passing on, mute everyone, lowering hands,
reactions and the per-room settings — through the real server with WebSocket clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Outbox, User, make_config, make_room, make_user
from wsclient import WS, join

from meet.config import Config
from meet.server import RunningServer


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, auth={"mail_max_per_window": 50})


@pytest.fixture
async def people(client: httpx.AsyncClient, outbox: Outbox, alice: User) -> tuple[User, User, User]:
    return alice, await make_user(client, outbox, "bob"), await make_user(client, outbox, "carol")


async def next_of(ws: WS, type_: str) -> dict[str, Any]:
    """The next frame of ``type_``, refusing to skip an ``error`` on the way."""
    while True:
        frame = await ws.recv()
        assert frame["type"] != "error" or type_ == "error", frame
        if frame["type"] == type_:
            return frame


async def test_co_hosts_have_host_powers_but_ending(
    server: RunningServer, client: httpx.AsyncClient, people: tuple[User, User, User]
) -> None:
    alice, bob, carol = people
    code = await make_room(client, alice)
    async with (
        join(server.url, code, alice.token) as (host, _),
        join(server.url, code, bob.token) as (cohost, bw),
        join(server.url, code, carol.token) as (member, cw),
    ):
        await host.until("peer-joined")
        await host.until("peer-joined")
        await member.send({"type": "promote", "peer_id": cw["peer_id"]})
        assert (await next_of(member, "error"))["code"] == "not_host"
        await host.send({"type": "promote", "peer_id": bw["peer_id"]})
        for ws in (host, cohost, member):
            assert await next_of(ws, "role") == {"type": "role", "peer_id": bw["peer_id"], "role": "cohost"}
        # Settings over REST (the live role counts there too), mute, lower a hand.
        r = await client.patch(f"/api/rooms/{code}", json={"title": "Retro", "reactions": False}, headers=bob.auth)
        assert r.status_code == 200, r.text
        assert (await next_of(member, "room-updated"))["room"]["reactions"] is False
        r = await client.patch(f"/api/rooms/{code}", json={"title": "Nope"}, headers=carol.auth)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "not_host")
        await member.send({"type": "state", "hand": True})
        assert (await next_of(cohost, "state"))["hand"] is True
        assert (await next_of(host, "state"))["hand"] is True
        await cohost.send({"type": "lower-hand", "peer_id": cw["peer_id"]})
        for ws in (member, host, cohost):  # the person whose hand it was hears it too
            lowered = await next_of(ws, "state")
            assert (lowered["peer_id"], lowered["hand"]) == (cw["peer_id"], False)
        await cohost.send({"type": "mute-all"})
        assert await next_of(member, "mute-request") == {
            "type": "mute-request", "by": {"id": bob.id, "username": "bob"}, "all": True,
        }
        for ws in (host, cohost):  # hosts and co-hosts are spared
            assert "mute-request" not in [frame["type"] for frame in await drain(ws)]
        # Not ending, not demoting the host; demoting another co-host is fine.
        await cohost.send({"type": "end"})
        assert (await next_of(cohost, "error"))["code"] == "not_host"
        r = await client.post(f"/api/rooms/{code}/end", headers=bob.auth)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "not_host")
        hw = await host_peer(host, member)
        await cohost.send({"type": "demote", "peer_id": hw})
        assert (await next_of(cohost, "error"))["code"] == "invalid_target"
        await cohost.send({"type": "promote", "peer_id": cw["peer_id"]})
        assert (await next_of(host, "role"))["role"] == "cohost"
        await cohost.send({"type": "demote", "peer_id": cw["peer_id"]})
        assert await next_of(member, "role") == {"type": "role", "peer_id": cw["peer_id"], "role": "cohost"}
        assert await next_of(member, "role") == {"type": "role", "peer_id": cw["peer_id"], "role": "guest"}
        await member.send({"type": "mute-all"})
        assert (await next_of(member, "error"))["code"] == "not_host"


async def drain(ws: WS) -> list[dict[str, Any]]:
    """Every frame queued for ``ws`` now (a ping's pong marks the end)."""
    await ws.send({"type": "ping"})
    frames = [await ws.recv()]
    while frames[-1] != {"type": "pong"}:
        frames.append(await ws.recv())
    return frames[:-1]


async def host_peer(host: WS, other: WS) -> str:
    """The host's peer id, as the others see it (via a state change they are told about)."""
    await host.send({"type": "state", "video": False})
    return str((await next_of(other, "state"))["peer_id"])


async def test_the_host_role_passes_on_and_comes_back(
    server: RunningServer, client: httpx.AsyncClient, people: tuple[User, User, User]
) -> None:
    alice, bob, carol = people
    code = await make_room(client, alice)
    async with (
        join(server.url, code, bob.token) as (early, ew),
        join(server.url, code, carol.token) as (cohost, cw),
    ):
        async with join(server.url, code, alice.token) as (host, hw):
            assert hw["role"] == "host" and ew["role"] == "guest"
            await host.send({"type": "promote", "peer_id": cw["peer_id"]})
            await next_of(cohost, "role")
            await next_of(early, "role")
        # The creator left: the co-host takes over, though bob has been there longer.
        assert await next_of(early, "role") == {"type": "role", "peer_id": cw["peer_id"], "role": "host"}
        assert (await next_of(cohost, "role"))["role"] == "host"
        r = await client.patch(f"/api/rooms/{code}", json={"locked": True}, headers=carol.auth)
        assert r.status_code == 200
        # The creator comes back (past the lock: they are the creator) and takes the role back.
        async with join(server.url, code, alice.token) as (host, hw):
            assert hw["role"] == "host"
            assert await next_of(cohost, "role") == {"type": "role", "peer_id": cw["peer_id"], "role": "cohost"}
            # Handing the role over: a co-host cannot, the host can (staying a co-host).
            await cohost.send({"type": "promote", "peer_id": ew["peer_id"], "role": "host"})
            assert (await next_of(cohost, "error"))["code"] == "not_host"
            await host.send({"type": "promote", "peer_id": ew["peer_id"], "role": "host"})
            roles = {(f["peer_id"], f["role"]) for f in [await next_of(host, "role"), await next_of(host, "role")]}
            assert roles == {(hw["peer_id"], "cohost"), (ew["peer_id"], "host")}
            r = await client.post(f"/api/rooms/{code}/end", headers=bob.auth)  # the host now may end it
            assert r.status_code == 200, r.text


async def test_without_co_hosts_the_longest_present_member_takes_over(
    server: RunningServer, client: httpx.AsyncClient, people: tuple[User, User, User]
) -> None:
    alice, bob, carol = people
    code = await make_room(client, alice)
    async with (
        join(server.url, code, alice.token) as (host, _),
        join(server.url, code, bob.token) as (first, fw),
        join(server.url, code, carol.token) as (second, _),
    ):
        await host.until("peer-joined")
        await host.until("peer-joined")
        await host.conn.aclose()
        assert await next_of(second, "role") == {"type": "role", "peer_id": fw["peer_id"], "role": "host"}
        # The new host has the powers: they can end the meeting.
        await first.send({"type": "end"})
        assert (await next_of(second, "room-ended")) == {"type": "room-ended"}


async def test_reactions(server: RunningServer, client: httpx.AsyncClient, people: tuple[User, User, User]) -> None:
    alice, bob, _ = people
    code = await make_room(client, alice)
    async with join(server.url, code, alice.token) as (host, _), join(server.url, code, bob.token) as (member, bw):
        await host.until("peer-joined")
        await member.send({"type": "react", "emoji": "👏"})
        for ws in (host, member):
            assert await next_of(ws, "reaction") == {"type": "reaction", "peer_id": bw["peer_id"], "emoji": "👏"}
        await member.send({"type": "react", "emoji": "<b>hi</b>"})
        assert (await next_of(member, "error"))["code"] == "invalid_message"
        r = await client.patch(f"/api/rooms/{code}", json={"reactions": False}, headers=alice.auth)
        assert r.json()["room"]["reactions"] is False
        await next_of(member, "room-updated")
        await member.send({"type": "react", "emoji": "👍"})
        assert (await next_of(member, "error"))["code"] == "reactions_off"
        await host.until("room-updated")
        await host.assert_idle()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"guests": "maybe"}, "invalid_guests"),
        ({"guests": None}, "invalid_request"),
        ({"lobby": "yes"}, "invalid_field"),
        ({"reactions": 1}, "invalid_field"),
    ],
)
async def test_bad_settings_are_refused(
    server: RunningServer, client: httpx.AsyncClient, alice: User, body: dict[str, Any], code: str
) -> None:
    room = await make_room(client, alice)
    r = await client.patch(f"/api/rooms/{room}", json=body, headers=alice.auth)
    assert (r.status_code, r.json()["error"]["code"]) == (400, code), r.text
    r = await client.get(f"/api/rooms/{room}", headers=alice.auth)
    assert (r.json()["room"]["guests"], r.json()["room"]["lobby"], r.json()["room"]["reactions"]) == (
        "lobby", False, True,
    ), "nothing changed"


async def test_a_second_tab_of_the_creator_does_not_take_the_role_back(
    server: RunningServer, client: httpx.AsyncClient, people: tuple[User, User, User]
) -> None:
    alice, bob, _ = people
    code = await make_room(client, alice)
    async with join(server.url, code, alice.token) as (host, _), join(server.url, code, bob.token) as (member, bw):
        await host.until("peer-joined")
        await host.send({"type": "promote", "peer_id": bw["peer_id"], "role": "host"})
        roles = [await next_of(member, "role"), await next_of(member, "role")]
        assert {(f["peer_id"], f["role"]) for f in roles} == {(bw["peer_id"], "host"), (roles[0]["peer_id"], "cohost")}
        async with join(server.url, code, alice.token) as (_tab, tw):
            assert tw["role"] == "cohost", "handed over on purpose: a new tab keeps it that way"
            frames = await drain(member)
            assert [f for f in frames if f["type"] == "role" and f["peer_id"] == bw["peer_id"]] == [], frames
