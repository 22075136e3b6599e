"""Who may enter a room and see into it: removal is a ban (no chat, no participants), a lock
spares people reconnecting and people the host rang in and hides who is inside from strangers,
rings past a lock lapse; and paging of the hosted-rooms list. The rules themselves are tabled in
tests/test_authz.py."""

from __future__ import annotations

import httpx
import pytest
from conftest import Outbox, User, make_config, make_room, make_user
from wsclient import connect, join, room_ws_url, user_ws_url

from meet.clock import FakeClock
from meet.config import Config
from meet.invitations import INVITATION_TTL
from meet.server import RunningServer


@pytest.fixture
def config(tmp_path: object) -> Config:
    return make_config(tmp_path, auth={"mail_max_per_window": 50})  # type: ignore[arg-type]


async def refused(url: str, code: str, user: User) -> tuple[str, int | None]:
    async with connect(room_ws_url(url, code), user.token) as ws:
        error = await ws.expect("error")
        return error["code"], await ws.closed()


async def test_removed_people_lose_every_tab_and_stay_out(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    code = await make_room(client, alice)
    url = server.url
    async with join(url, code, alice.token) as (host, welcome):
        async with join(url, code, bob.token) as (tab1, w1), join(url, code, bob.token) as (tab2, _):
            await host.expect("peer-joined")
            await host.expect("peer-joined")
            await host.send({"type": "kick", "peer_id": w1["peer_id"]})
            for tab in (tab1, tab2):
                frames, close_code = await tab.frames_then_close()
                assert (frames[-1], close_code) == ({"type": "kicked"}, 4403)
        await host.send({"type": "kick", "peer_id": welcome["peer_id"]})
        assert (await host.until("error"))["code"] == "invalid_message", "the host cannot remove themselves"
        assert await refused(url, code, bob) == ("removed", 4403)
        r = await client.post(f"/api/rooms/{code}/join", headers=bob.auth)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "removed")


async def test_lock_spares_people_reconnecting_within_the_grace(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, clock: FakeClock
) -> None:
    code = await make_room(client, alice)
    url = server.url
    async with join(url, code, alice.token) as (host, _):
        async with join(url, code, bob.token):
            await host.expect("peer-joined")
            r = await client.patch(f"/api/rooms/{code}", json={"locked": True}, headers=alice.auth)
            assert r.status_code == 200
        await host.until("peer-left")
        clock.advance(20)  # within reconnect_grace (30 s): a dropped connection comes back
        async with join(url, code, bob.token) as (_, welcome):
            assert welcome["room"]["locked"] is True
        await host.until("peer-left")
        clock.advance(31)
        assert await refused(url, code, bob) == ("room_locked", 4403)


async def test_only_the_host_rings_into_a_locked_room_and_the_callee_may_enter(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, alice: User, bob: User
) -> None:
    carol = await make_user(client, outbox, "carol")
    code = await make_room(client, alice)
    r = await client.patch(f"/api/rooms/{code}", json={"locked": True}, headers=alice.auth)
    assert r.status_code == 200
    url = server.url
    assert await refused(url, code, bob) == ("room_locked", 4403)
    async with connect(user_ws_url(url), alice.token) as host, connect(
        user_ws_url(url), bob.token
    ) as callee, connect(user_ws_url(url), carol.token) as guest:
        for ws in (host, callee, guest):
            await ws.expect("presence")
        await guest.send({"type": "ring", "user_id": bob.id, "room": code})
        assert (await guest.until("error"))["code"] == "room_locked"
        await host.send({"type": "ring", "user_id": bob.id, "room": code})
        ring_id = (await host.until("ringing"))["ring_id"]
        assert (await callee.until("incoming-call"))["ring_id"] == ring_id
        await callee.send({"type": "ring-answer", "ring_id": ring_id, "accepted": True})
        assert (await host.until("ring-answer"))["accepted"] is True
    async with join(url, code, bob.token) as (_, welcome):
        assert welcome["role"] == "guest"


async def test_hosted_rooms_page_with_next_before(client: httpx.AsyncClient, alice: User) -> None:
    codes = [await make_room(client, alice) for _ in range(3)]
    r = await client.get("/api/rooms?limit=2", headers=alice.auth)
    page = r.json()
    assert [room["code"] for room in page["rooms"]] == codes[::-1][:2]
    r = await client.get(f"/api/rooms?limit=2&before={page['next_before']}", headers=alice.auth)
    assert [room["code"] for room in r.json()["rooms"]] == [codes[0]]
    assert r.json()["next_before"] is None


async def room_seen_by(client: httpx.AsyncClient, code: str, user: User) -> dict[str, object]:
    r = await client.get(f"/api/rooms/{code}", headers=user.auth)
    assert r.status_code == 200, r.text
    return r.json()["room"]  # type: ignore[no-any-return]


def names(room: dict[str, object]) -> set[str] | None:
    """Usernames of the participants shown, or None when they are hidden."""
    if "participants" not in room:
        return None
    return {peer["user"]["username"] for peer in room["participants"]}  # type: ignore[attr-defined]


async def test_removed_people_read_no_chat_and_see_no_participants(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    code = await make_room(client, alice)
    url = server.url
    async with join(url, code, alice.token) as (host, _):
        async with join(url, code, bob.token) as (guest, welcome):
            await host.expect("peer-joined")
            await guest.send({"type": "chat", "text": "secret plans"})
            await guest.expect("chat")
            r = await client.get(f"/api/rooms/{code}/messages", headers=bob.auth)
            assert [m["text"] for m in r.json()["messages"]] == ["secret plans"]
            assert names(await room_seen_by(client, code, bob)) == {"alice", "bob"}
            await host.send({"type": "kick", "peer_id": welcome["peer_id"]})
            assert await guest.closed() == 4403
        await host.until("peer-left")
        for query in ("", "?q=secret"):
            r = await client.get(f"/api/rooms/{code}/messages{query}", headers=bob.auth)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "removed"), query
        seen = await room_seen_by(client, code, bob)
        assert (names(seen), seen["participants_hidden"]) == (None, "removed")
        assert seen["code"] == code  # the room itself stays visible (the page can say why)
        # Others are unaffected: the host reads the chat, a stranger sees who is in the open room.
        r = await client.get(f"/api/rooms/{code}/messages", headers=alice.auth)
        assert [m["text"] for m in r.json()["messages"]] == ["secret plans"]
        assert names(await room_seen_by(client, code, carol)) == {"alice"}


async def test_a_locked_room_hides_its_participants_from_strangers_only(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    code = await make_room(client, alice)
    url = server.url
    async with join(url, code, alice.token) as (host, _), join(url, code, bob.token):
        await host.expect("peer-joined")
        assert names(await room_seen_by(client, code, carol)) == {"alice", "bob"}, "open: shown to all"
        r = await client.patch(f"/api/rooms/{code}", json={"locked": True}, headers=alice.auth)
        assert r.status_code == 200
        seen = await room_seen_by(client, code, carol)
        assert (names(seen), seen["participants_hidden"], seen["locked"]) == (None, "room_locked", True)
        for insider in (alice, bob):
            seen = await room_seen_by(client, code, insider)
            assert (names(seen), "participants_hidden" in seen) == ({"alice", "bob"}, False), insider.username
        r = await client.patch(f"/api/rooms/{code}", json={"locked": False}, headers=alice.auth)
        assert names(await room_seen_by(client, code, carol)) == {"alice", "bob"}


async def ring_in(url: str, code: str, host: User, callee: User) -> None:
    """The host rings ``callee`` into room ``code`` and the callee accepts."""
    async with connect(user_ws_url(url), host.token) as caller, connect(user_ws_url(url), callee.token) as phone:
        for ws in (caller, phone):
            await ws.expect("presence")
        await caller.send({"type": "ring", "user_id": callee.id, "room": code})
        ring_id = (await phone.until("incoming-call"))["ring_id"]
        await phone.send({"type": "ring-answer", "ring_id": ring_id, "accepted": True})
        assert (await caller.until("ring-answer"))["accepted"] is True


async def test_rung_in_invitations_lapse_are_used_up_and_go_with_the_meeting(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User, clock: FakeClock
) -> None:
    invited = server.services.rooms.invited
    code = await make_room(client, alice)
    r = await client.patch(f"/api/rooms/{code}", json={"locked": True}, headers=alice.auth)
    assert r.status_code == 200
    url = server.url
    # Lapses: an accepted ring nobody follows up on does not stay around (or keep the door open).
    await ring_in(url, code, alice, bob)
    assert len(invited) == 1
    assert names(await room_seen_by(client, code, bob)) == set(), "rung in: may see who is there"
    clock.advance(INVITATION_TTL + 1)
    r = await client.post(f"/api/rooms/{code}/join", headers=bob.auth)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "room_locked")
    assert len(invited) == 0
    # Used up: entering spends it; later the reconnect grace, not the old ring, decides.
    await ring_in(url, code, alice, bob)
    async with join(url, code, alice.token) as (host, _):
        async with join(url, code, bob.token):
            await host.expect("peer-joined")
            assert len(invited) == 0
        await host.until("peer-left")
        clock.advance(31)  # past the reconnect grace
        assert await refused(url, code, bob) == ("room_locked", 4403)
    # Gone with the meeting: ending it drops the rings still pending for it.
    await ring_in(url, code, alice, carol)
    assert len(invited) == 1
    r = await client.post(f"/api/rooms/{code}/end", headers=alice.auth)
    assert r.status_code == 200
    assert len(invited) == 0
