"""Guest passes: people without an account join one meeting by its link with only a name.

Through the real server: the pass (REST), the room socket accepting it (bearer token or the
cookie the pass sets), what guests look like to others, their chat and attendance, and every
refusal — another room's pass, an expired or withdrawn one, a forged one, a guest calling any
other API, guests turned off, a lock, a removed guest, bad names and the per-address throttle.
The lobby is tests/test_lobby.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Outbox, User, make_config, make_room, make_user
from wsclient import connect, join, room_ws_url, user_ws_url

from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer

TTL = 3600.0


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path, auth={"mail_max_per_window": 50}, rooms={"guest_ttl": TTL, "guest_passes_per_address": 8}
    )


async def guest_pass(client: httpx.AsyncClient, code: str, name: str = "Ana") -> dict[str, Any]:
    r = await client.post(f"/api/rooms/{code}/guest", json={"name": name})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def open_room(client: httpx.AsyncClient, host: User, guests: str = "open") -> str:
    code = await make_room(client, host)
    r = await client.patch(f"/api/rooms/{code}", json={"guests": guests}, headers=host.auth)
    assert r.status_code == 200, r.text
    return code


async def refusal(url: str, token: str | None, headers: list[tuple[str, str]] | None = None) -> tuple[str, int | None]:
    async with connect(url, token, headers=headers) as ws:
        error = await ws.expect("error")
        return error["code"], await ws.closed()


async def test_a_guest_pass_and_what_it_looks_like(
    server: RunningServer, client: httpx.AsyncClient, alice: User, clock: FakeClock
) -> None:
    code = await make_room(client, alice)
    r = await client.get(f"/api/rooms/{code}/guest")  # the signed-out page's preview: no session
    assert r.status_code == 200
    assert r.json()["room"] == {
        "code": code, "title": "Standup", "host": {"username": "alice"}, "status": "open", "locked": False,
        "guests": "lobby",
    }
    r = await client.post(f"/api/rooms/{code}/guest", json={"name": "  Ana   María "})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token", "expires_at", "guest", "ws_url"}
    assert body["expires_at"] == clock.now() + TTL
    assert body["guest"]["username"] == "Ana María" and body["guest"]["guest"] is True
    assert body["guest"]["id"] < 0
    assert body["ws_url"].endswith(f"/api/rooms/{code}/ws")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"meet_guest={body['token']};")
    assert f"Path=/api/rooms/{code}/" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_guests_join_chat_and_show_in_attendance(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    code = await open_room(client, alice)
    url = room_ws_url(server.url, code)
    ana = await guest_pass(client, code)
    async with join(server.url, code, alice.token) as (host, _):
        async with join(server.url, code, ana["token"]) as (guest, welcome):
            assert welcome["role"] == "guest"
            assert welcome["user"] == ana["guest"]
            joined = (await host.expect("peer-joined"))["peer"]
            assert (joined["guest"], joined["role"], joined["user"]) == (True, "guest", ana["guest"])
            assert [peer["guest"] for peer in welcome["peers"]] == [False]
            await guest.send({"type": "chat", "text": "hello from a guest"})
            posted = (await host.expect("chat"))["message"]
            assert posted["user"] == ana["guest"] and posted["text"] == "hello from a guest"
        await host.until("peer-left")
        # The same pass rejoins, from a browser's cookie this time; history keeps the guest's chat.
        async with connect(url, headers=[("Cookie", f"meet_guest={ana['token']}")]) as again:
            rejoined = await again.expect("welcome")
            assert rejoined["user"] == ana["guest"]
            assert rejoined["messages"][-1]["user"] == ana["guest"]
    r = await client.get(f"/api/rooms/{code}/messages", headers=alice.auth)
    assert r.json()["messages"][0]["user"] == ana["guest"]
    report = (await client.get(f"/api/rooms/{code}/attendance", headers=alice.auth)).json()["attendance"]
    people = {person["user"]["username"]: person for person in report}
    assert people["Ana"]["user"] == ana["guest"] and len(people["Ana"]["stays"]) == 1
    assert "guest" not in people["alice"]["user"]
    csv = (await client.get(f"/api/rooms/{code}/attendance?format=csv", headers=alice.auth)).text
    header, *rows = csv.splitlines()
    assert "guest" in header.split(",")
    assert any(row.startswith("Ana,") and row.split(",")[header.split(",").index("guest")] == "yes" for row in rows)
    assert any(row.startswith("alice,") and row.split(",")[header.split(",").index("guest")] == "no" for row in rows)


async def test_a_pass_opens_only_its_own_room(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    code, other = await open_room(client, alice), await open_room(client, alice)
    token = (await guest_pass(client, code))["token"]
    assert await refusal(room_ws_url(server.url, other), token) == ("wrong_room", 4403)
    assert await refusal(room_ws_url(server.url, code), token[:-3] + "xyz") == ("unauthorized", 4401)
    assert await refusal(room_ws_url(server.url, code), "x" * 5000) == ("unauthorized", 4401)
    # Nothing outside the room: not the user channel, not a single other API.
    assert await refusal(user_ws_url(server.url), token) == ("unauthorized", 4401)
    bearer = {"Authorization": f"Bearer {token}"}
    for method, path in [
        ("GET", "/api/auth/me"), ("GET", "/api/rooms"), ("POST", "/api/rooms"), ("GET", f"/api/rooms/{code}"),
        ("POST", f"/api/rooms/{code}/join"), ("PATCH", f"/api/rooms/{code}"), ("POST", f"/api/rooms/{code}/end"),
        ("GET", f"/api/rooms/{code}/messages"), ("GET", f"/api/rooms/{code}/attendance"), ("GET", "/api/calls"),
        ("POST", "/api/auth/logout"),
    ]:
        body = {"PATCH": {"locked": True}, "POST": {}}.get(method)  # valid bodies: the token is what fails
        r = await client.request(method, path, headers=bearer, json=body)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
    async with httpx.AsyncClient(base_url=server.url, cookies={"meet_guest": token}) as browser:
        for path in (f"/api/rooms/{code}", f"/api/rooms/{code}/messages", "/api/auth/me"):
            assert (await browser.get(path)).status_code == 401, path


async def test_expired_and_withdrawn_passes(
    server: RunningServer, client: httpx.AsyncClient, alice: User, clock: FakeClock
) -> None:
    code = await open_room(client, alice)
    url = room_ws_url(server.url, code)
    token = (await guest_pass(client, code))["token"]
    clock.advance(TTL + 1)
    assert await refusal(url, token) == ("guest_expired", 4401)
    fresh = (await guest_pass(client, code))["token"]
    r = await client.post(f"/api/rooms/{code}/end", headers=alice.auth)
    assert r.status_code == 200
    assert await refusal(url, fresh) == ("room_ended", 4410)
    r = await client.post(f"/api/rooms/{code}/guest", json={"name": "Ana"})
    assert (r.status_code, r.json()["error"]["code"]) == (410, "room_ended")


async def test_guests_off_and_the_lock(server: RunningServer, client: httpx.AsyncClient, alice: User) -> None:
    code = await open_room(client, alice)
    url = room_ws_url(server.url, code)
    token = (await guest_pass(client, code))["token"]
    r = await client.patch(f"/api/rooms/{code}", json={"guests": "off"}, headers=alice.auth)
    assert r.json()["room"]["guests"] == "off"
    r = await client.post(f"/api/rooms/{code}/guest", json={"name": "Ana"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "guests_off")
    assert await refusal(url, token) == ("guests_off", 4403), "a pass from before no longer opens the room"
    await client.patch(f"/api/rooms/{code}", json={"guests": "open", "locked": True}, headers=alice.auth)
    r = await client.post(f"/api/rooms/{code}/guest", json={"name": "Ana"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "room_locked")
    assert await refusal(url, token) == ("room_locked", 4403)


async def test_a_removed_guest_stays_out(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    code = await open_room(client, alice)
    token = (await guest_pass(client, code))["token"]
    async with join(server.url, code, alice.token) as (host, _), join(server.url, code, token) as (guest, welcome):
        await host.expect("peer-joined")
        await host.send({"type": "kick", "peer_id": welcome["peer_id"]})
        frames, close_code = await guest.frames_then_close()
        assert (frames[-1], close_code) == ({"type": "kicked"}, 4403)
    assert await refusal(room_ws_url(server.url, code), token) == ("removed", 4403)
    r = await client.post(f"/api/rooms/{code}/guest", json={"name": "Someone Else"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "removed"), "not from the same address"
    other = await open_room(client, alice)
    await guest_pass(client, other)  # other meetings are not affected


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": ""}, "invalid_name"),
        ({"name": "   "}, "invalid_name"),
        ({"name": "x" * 41}, "invalid_name"),
        ({"name": "Ana\u0000"}, "invalid_name"),
        ({"name": "Ana\u202e"}, "invalid_name"),
        ({"name": 5}, "invalid_field"),
        ({}, "missing_field"),
        ({"name": "Ana", "role": "host"}, "unknown_field"),
    ],
)
async def test_bad_names_are_refused(
    server: RunningServer, client: httpx.AsyncClient, alice: User, body: dict[str, Any], code: str
) -> None:
    room = await open_room(client, alice)
    r = await client.post(f"/api/rooms/{room}/guest", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code


async def test_unknown_rooms_and_the_throttle(
    server: RunningServer, client: httpx.AsyncClient, alice: User, clock: FakeClock
) -> None:
    r = await client.post("/api/rooms/zzz-zzzz-zzz/guest", json={"name": "Ana"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "room_not_found")
    assert (await client.get("/api/rooms/zzz-zzzz-zzz/guest")).status_code == 404
    code = await open_room(client, alice)
    for _ in range(8):
        await guest_pass(client, code)
    r = await client.post(f"/api/rooms/{code}/guest", json={"name": "Ana"})
    assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_guests")
    assert 1 <= int(r.headers["Retry-After"]) <= 3601
    clock.advance(3601)
    await guest_pass(client, code)


async def test_guests_cannot_host(
    server: RunningServer, client: httpx.AsyncClient, alice: User, outbox: Outbox
) -> None:
    code = await open_room(client, alice)
    bob = await make_user(client, outbox, "bob")
    token = (await guest_pass(client, code))["token"]
    async with (
        join(server.url, code, alice.token) as (host, _),
        join(server.url, code, token) as (guest, gw),
        join(server.url, code, bob.token) as (member, mw),
    ):
        await host.until("peer-joined")
        await host.until("peer-joined")
        await host.send({"type": "promote", "peer_id": gw["peer_id"]})
        assert (await host.until("error"))["code"] == "invalid_target"
        await host.send({"type": "promote", "peer_id": gw["peer_id"], "role": "host"})
        assert (await host.until("error"))["code"] == "invalid_target"
        for frame in ({"type": "kick", "peer_id": mw["peer_id"]}, {"type": "mute-all"}, {"type": "end"}):
            await guest.send(frame)
            assert (await guest.until("error"))["code"] == "not_host"
        await host.send({"type": "ping"})
        await host.until("pong")
        # The host leaves: the role passes to the signed-in participant, though the guest
        # has been there longer.
        await host.conn.aclose()
        role = await guest.until("role")
        assert role == {"type": "role", "peer_id": mw["peer_id"], "role": "host"}
        assert (await member.until("role"))["peer_id"] == mw["peer_id"]
