"""The rooms API against a real server: REST routes, with participants over real WebSockets.

Every wait for a WebSocket frame is bounded by ``trio.fail_after``; state that the server
records after a socket closes (a stay's ``left_at``) is polled for, never slept for. Times
come from the FakeClock injected into the server, so durations are checked exactly.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import Outbox, User, login, make_config, signup_verified
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer, open_server

CAP = 10  # [rooms] max_participants in these tests
CODE_RE = re.compile(r"^[a-z]{3}-[a-z]{4}-[a-z]{3}$")
UNKNOWN = "zzz-zzzz-zzz"
WAIT = 5  # seconds: the bound on every wait for the server


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # More than five sign-ups per test need a looser mail throttle (it counts per client address).
    return make_config(tmp_path, auth={"mail_max_per_window": 1000}, rooms={"max_participants": CAP})


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(server) as c:
        yield c


# -- helpers --------------------------------------------------------------------------------


def http_client(server: RunningServer) -> httpx.AsyncClient:
    """A client with its own cookie jar (plain HTTP: skipping the TLS context saves ~40 ms each)."""
    return httpx.AsyncClient(base_url=server.url, timeout=10, verify=False)


async def make_user(server: RunningServer, outbox: Outbox, username: str) -> User:
    """Sign up, verify and log in on a throw-away client (so no cookie leaks into ``client``)."""
    async with http_client(server) as c:
        user = await signup_verified(c, outbox, username, f"{username}@example.org")
        token = await login(c, username)
    return User(user["id"], username, token)


@pytest.fixture
async def alice(server: RunningServer, outbox: Outbox) -> User:
    return await make_user(server, outbox, "alice")


@pytest.fixture
async def bob(server: RunningServer, outbox: Outbox) -> User:
    return await make_user(server, outbox, "bob")


@pytest.fixture
async def carol(server: RunningServer, outbox: Outbox) -> User:
    return await make_user(server, outbox, "carol")


def assert_error(
    r: httpx.Response, status: int, code: str | None = None, field: str | None = None
) -> dict[str, Any]:
    """The one error shape: ``{"error": {"code", "message", "field"?}}`` as JSON."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    body = r.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "field"}, error
    assert {"code", "message"} <= set(error), error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error
    return error  # type: ignore[no-any-return]


async def create_room(client: httpx.AsyncClient, user: User, **body: Any) -> dict[str, Any]:
    r = await client.post("/api/rooms", json=body, headers=user.auth)
    assert r.status_code == 201, r.text
    return r.json()["room"]  # type: ignore[no-any-return]


async def get_room(client: httpx.AsyncClient, user: User, code: str) -> dict[str, Any]:
    r = await client.get(f"/api/rooms/{code}", headers=user.auth)
    assert r.status_code == 200, r.text
    return r.json()["room"]  # type: ignore[no-any-return]


async def eventually(check: Callable[[], Awaitable[Any]]) -> Any:
    """Poll ``check`` until it returns something truthy (bounded; for effects of a socket closing)."""
    with trio.fail_after(WAIT):
        while True:
            value = await check()
            if value:
                return value
            await trio.sleep(0.01)


@dataclass
class Peer:
    """A room participant over a real WebSocket."""

    ws: WebSocketConnection
    welcome: dict[str, Any] = field(default_factory=dict)

    @property
    def peer_id(self) -> str:
        return self.welcome["peer_id"]  # type: ignore[no-any-return]

    async def recv(self) -> dict[str, Any]:
        with trio.fail_after(WAIT):
            return json.loads(await self.ws.get_message())  # type: ignore[no-any-return]

    async def until(self, kind: str) -> dict[str, Any]:
        """The next message of type ``kind``, skipping others (peer-joined, chat echoes...)."""
        while True:
            message = await self.recv()
            if message["type"] == kind:
                return message

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(message))

    async def chat(self, text: str) -> dict[str, Any]:
        """Post a chat message and wait for its echo (so messages are stored in order)."""
        await self.send({"type": "chat", "text": text})
        while True:
            message = await self.until("chat")
            if message["message"]["text"] == text:
                return message["message"]  # type: ignore[no-any-return]

    async def closed_with(self) -> int:
        """Read until the server closes the socket; the close code."""
        with trio.fail_after(WAIT):
            while True:
                try:
                    await self.ws.get_message()
                except ConnectionClosed as exc:
                    assert exc.reason is not None
                    return exc.reason.code


def ws_auth(user: User) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {user.token}".encode())]


def ws_url(server: RunningServer, code: str) -> str:
    return server.url.replace("http://", "ws://", 1) + f"/api/rooms/{code}/ws"


@asynccontextmanager
async def in_room(server: RunningServer, user: User, code: str) -> AsyncIterator[Peer]:
    """Join ``code`` over a WebSocket; yields after the ``welcome``."""
    async with open_websocket_url(ws_url(server, code), extra_headers=ws_auth(user)) as ws:
        peer = Peer(ws)
        peer.welcome = await peer.recv()
        assert peer.welcome["type"] == "welcome", peer.welcome
        yield peer


async def refused(server: RunningServer, user: User, code: str) -> tuple[dict[str, Any], int]:
    """Connect to a room that refuses: the ``error`` message and the close code."""
    async with open_websocket_url(ws_url(server, code), extra_headers=ws_auth(user)) as ws:
        peer = Peer(ws)
        message = await peer.recv()
        return message, await peer.closed_with()


async def wait_left(client: httpx.AsyncClient, user: User, code: str) -> dict[str, Any]:
    """Wait until ``user``'s latest stay in ``code`` is closed (the server records it after the close)."""

    async def check() -> Any:
        r = await client.get("/api/calls", headers=user.auth)
        calls = [c for c in r.json()["calls"] if c["room"]["code"] == code]
        return calls[0] if calls and calls[0]["left_at"] is not None else None

    return await eventually(check)  # type: ignore[no-any-return]


# -- POST /api/rooms ------------------------------------------------------------------------


async def test_create_room_returns_the_room(client: httpx.AsyncClient, alice: User, clock: FakeClock) -> None:
    r = await client.post("/api/rooms", json={"title": "Standup", "max_participants": 4}, headers=alice.auth)
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"room"}
    room = r.json()["room"]
    assert CODE_RE.match(room["code"]), room["code"]
    assert room == {
        "code": room["code"],
        "title": "Standup",
        "host": {"id": alice.id, "username": "alice"},
        "created_at": clock.now(),
        "status": "open",
        "ended_at": None,
        "locked": False,
        "max_participants": 4,
        "guests": "lobby",
        "lobby": False,
        "reactions": True,
    }


async def test_create_room_defaults(client: httpx.AsyncClient, alice: User) -> None:
    room = await create_room(client, alice)
    assert room["title"] == "alice's meeting"
    assert room["max_participants"] == CAP
    assert (room["status"], room["locked"]) == ("open", False)
    # An explicit null is the same as leaving the field out.
    room = await create_room(client, alice, title=None, max_participants=None)
    assert (room["title"], room["max_participants"]) == ("alice's meeting", CAP)


async def test_room_codes_are_well_formed_and_distinct(client: httpx.AsyncClient, alice: User) -> None:
    codes = [(await create_room(client, alice))["code"] for _ in range(40)]
    assert all(CODE_RE.match(c) for c in codes), codes
    assert len(set(codes)) == len(codes)


async def test_create_room_trims_the_title_and_takes_the_capacity_bounds(
    client: httpx.AsyncClient, alice: User
) -> None:
    titles = [
        ("  Standup  ", "Standup"),
        ("\tWeekly sync\n", "Weekly sync"),
        ("x" * 120, "x" * 120),
        ("  " + "y" * 120 + " ", "y" * 120),
        ("Ünïcödé 🙂", "Ünïcödé 🙂"),
    ]
    for title, expected in titles:
        assert (await create_room(client, alice, title=title))["title"] == expected
    for capacity in (2, CAP):
        assert (await create_room(client, alice, max_participants=capacity))["max_participants"] == capacity


async def test_create_room_rejects_bad_input_naming_the_field(client: httpx.AsyncClient, alice: User) -> None:
    cases: list[tuple[dict[str, Any], str, str | None]] = [
        ({"title": ""}, "title", "invalid_title"),
        ({"title": "   "}, "title", "invalid_title"),
        ({"title": "x" * 121}, "title", "invalid_title"),
        ({"title": 5}, "title", "invalid_field"),
        ({"title": ["Standup"]}, "title", "invalid_field"),
        ({"title": {"text": "Standup"}}, "title", "invalid_field"),
        ({"max_participants": 1}, "max_participants", "invalid_max_participants"),
        ({"max_participants": 0}, "max_participants", "invalid_max_participants"),
        ({"max_participants": -5}, "max_participants", "invalid_max_participants"),
        ({"max_participants": CAP + 1}, "max_participants", "invalid_max_participants"),
        ({"max_participants": 10**30}, "max_participants", None),
        ({"max_participants": "5"}, "max_participants", "invalid_field"),
        ({"max_participants": 5.0}, "max_participants", "invalid_field"),
        ({"max_participants": True}, "max_participants", "invalid_field"),
        ({"colour": "red"}, "colour", "unknown_field"),
        ({"title": "ok", "locked": True}, "locked", "unknown_field"),
    ]
    for body, name, code in cases:
        r = await client.post("/api/rooms", json=body, headers=alice.auth)
        assert r.status_code == 400, (body, r.text)
        assert_error(r, 400, code, name)
    # A body that is not a JSON object: named as such, never a 500.
    for content in (b"[]", b'"title"', b"{", b"", b"null", b"\xff\xfe"):
        r = await client.post(
            "/api/rooms", content=content, headers={**alice.auth, "Content-Type": "application/json"}
        )
        assert r.status_code == 400, (content, r.text)
        assert_error(r, 400, "invalid_json")
    r = await client.get("/api/rooms", headers=alice.auth)
    assert r.json()["rooms"] == []


async def test_create_room_needs_sign_in(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/rooms", json={}), 401, "unauthorized")
    assert_error(
        await client.post("/api/rooms", json={}, headers={"Authorization": "Bearer nope"}),
        401,
        "unauthorized",
    )


async def test_cookie_auth_refuses_cross_site_requests_but_bearer_is_exempt(
    server: RunningServer, alice: User
) -> None:
    async with http_client(server) as browser:
        await login(browser, "alice")  # the session cookie is now in this client's jar
        assert browser.cookies.get("meet_session")
        assert_error(
            await browser.post("/api/rooms", json={}, headers={"Origin": "https://evil.example"}),
            403,
            "cross_origin",
        )
        assert_error(
            await browser.post("/api/rooms", json={}, headers={"Sec-Fetch-Site": "cross-site"}),
            403,
            "cross_origin",
        )
        r = await browser.get("/api/rooms", headers={"Authorization": f"Bearer {alice.token}"})
        assert r.json()["rooms"] == []  # nothing was created
        # Same origin with the cookie, and any origin with a bearer token, are fine.
        r = await browser.post("/api/rooms", json={"title": "a"}, headers={"Origin": server.url})
        assert r.status_code == 201, r.text
    async with http_client(server) as other:
        headers = {**alice.auth, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        r = await other.post("/api/rooms", json={"title": "b"}, headers=headers)
        assert r.status_code == 201, r.text


async def test_cross_site_patch_and_end_with_cookie_are_refused(server: RunningServer, alice: User) -> None:
    async with http_client(server) as browser:
        await login(browser, "alice")
        code = (await create_room(browser, alice))["code"]
        evil = {"Origin": "https://evil.example"}
        assert_error(
            await browser.patch(f"/api/rooms/{code}", json={"locked": True}, headers=evil),
            403,
            "cross_origin",
        )
        assert_error(await browser.post(f"/api/rooms/{code}/end", headers=evil), 403, "cross_origin")
        room = await get_room(browser, alice, code)
        assert (room["locked"], room["status"]) == (False, "open")


# -- GET /api/rooms -------------------------------------------------------------------------


async def test_list_rooms_shows_only_mine_newest_first_with_counts(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    first = await create_room(client, alice, title="first")
    await create_room(client, bob, title="bob's")
    second = await create_room(client, alice, title="second")
    third = await create_room(client, alice, title="third")
    async with in_room(server, alice, second["code"]), in_room(server, bob, second["code"]):
        r = await client.get("/api/rooms", headers=alice.auth)
        assert r.status_code == 200
        rooms = r.json()["rooms"]
        assert [room["title"] for room in rooms] == ["third", "second", "first"]
        assert [room["participants"] for room in rooms] == [0, 2, 0]
        by_title = {room["title"]: room for room in rooms}
        for created in (first, second, third):
            listed = dict(by_title[created["title"]])
            assert isinstance(listed.pop("id"), int)
            assert listed.pop("participants") in (0, 2)
            assert listed == created
    r = await client.get("/api/rooms", headers=bob.auth)
    assert [room["title"] for room in r.json()["rooms"]] == ["bob's"]


async def test_list_rooms_paginates_with_limit_and_before(client: httpx.AsyncClient, alice: User) -> None:
    for i in range(5):
        await create_room(client, alice, title=f"room {i}")
    r = await client.get("/api/rooms", params={"limit": 2}, headers=alice.auth)
    page = r.json()["rooms"]
    assert [room["title"] for room in page] == ["room 4", "room 3"]
    r = await client.get("/api/rooms", params={"limit": 2, "before": page[-1]["id"]}, headers=alice.auth)
    page = r.json()["rooms"]
    assert [room["title"] for room in page] == ["room 2", "room 1"]
    r = await client.get("/api/rooms", params={"limit": 2, "before": page[-1]["id"]}, headers=alice.auth)
    page = r.json()["rooms"]
    assert [room["title"] for room in page] == ["room 0"]
    r = await client.get("/api/rooms", params={"limit": 2, "before": page[-1]["id"]}, headers=alice.auth)
    assert r.json()["rooms"] == []
    r = await client.get("/api/rooms", params={"limit": 100}, headers=alice.auth)
    assert len(r.json()["rooms"]) == 5
    # Ids start at 1: nothing comes before 0 (0 is not "no cursor").
    r = await client.get("/api/rooms", params={"before": 0}, headers=alice.auth)
    assert r.json()["rooms"] == []


async def test_list_rooms_rejects_bad_paging_parameters(client: httpx.AsyncClient, alice: User) -> None:
    for name, values in [
        ("limit", ["0", "101", "x", "-1", "1.5", "1e2", " 5", "²", "٣", "9" * 19]),
        ("before", ["x", "-3", "²", "1.0"]),
    ]:
        for value in values:
            r = await client.get("/api/rooms", params={name: value}, headers=alice.auth)
            assert r.status_code == 400, (name, value, r.text)
            assert_error(r, 400, "invalid_parameter" if name == "before" else None, field=name)


async def test_list_rooms_needs_sign_in(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/rooms"), 401, "unauthorized")


# -- GET /api/rooms/{code} ------------------------------------------------------------------


async def test_get_room_without_and_with_participants(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User, clock: FakeClock
) -> None:
    room = await create_room(client, alice, title="Standup")
    fetched = await get_room(client, carol, room["code"])  # any signed-in user may look
    assert fetched == {**room, "participants": []}
    async with in_room(server, alice, room["code"]) as a:
        joined_a = clock.now()
        clock.advance(3)
        async with in_room(server, bob, room["code"]) as b:
            participants = (await get_room(client, carol, room["code"]))["participants"]
            assert participants == [
                {
                    "peer_id": a.peer_id,
                    "user": {"id": alice.id, "username": "alice"},
                    "role": "host",
                    "guest": False,
                    "joined_at": joined_a,
                    "audio": True,
                    "video": True,
                    "screen": False,
                    "hand": False,
                },
                {
                    "peer_id": b.peer_id,
                    "user": {"id": bob.id, "username": "bob"},
                    "role": "guest",
                    "guest": False,
                    "joined_at": joined_a + 3,
                    "audio": True,
                    "video": True,
                    "screen": False,
                    "hand": False,
                },
            ]
            # Media and hand state show in the list once the others have been told.
            await b.send({"type": "state", "hand": True, "audio": False})
            changed = await a.until("state")
            assert (changed["peer_id"], changed["hand"], changed["audio"]) == (b.peer_id, True, False)
            bob_now = (await get_room(client, carol, room["code"]))["participants"][1]
            assert (bob_now["hand"], bob_now["audio"], bob_now["video"]) == (True, False, True)
        await a.until("peer-left")
        participants = (await get_room(client, alice, room["code"]))["participants"]
        assert [p["peer_id"] for p in participants] == [a.peer_id]

    async def empty() -> bool:
        return not (await get_room(client, alice, room["code"]))["participants"]

    await eventually(empty)


async def test_get_room_unknown_code_is_404(client: httpx.AsyncClient, alice: User) -> None:
    for code in (UNKNOWN, "abc", "a" * 200, "%20", "abc-defg-hi%C3%A9"):
        assert_error(await client.get(f"/api/rooms/{code}", headers=alice.auth), 404, "room_not_found")


async def test_room_codes_are_case_insensitive(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    """Codes are lowercase; the server lowercases what it is given, so a code typed or
    pasted in capitals finds the same room (and everything returned is lowercase)."""
    room = await create_room(client, alice)
    upper = room["code"].upper()
    assert (await get_room(client, bob, upper))["code"] == room["code"]
    r = await client.post(f"/api/rooms/{upper}/join", headers=bob.auth)
    assert r.status_code == 200, r.text
    assert r.json()["ws_url"] == ws_url(server, room["code"])
    async with in_room(server, bob, upper) as b:
        assert b.welcome["room"]["code"] == room["code"]
        assert len((await get_room(client, alice, room["code"]))["participants"]) == 1


async def test_get_room_needs_sign_in(client: httpx.AsyncClient, alice: User) -> None:
    room = await create_room(client, alice)
    assert_error(await client.get(f"/api/rooms/{room['code']}"), 401, "unauthorized")
    assert_error(await client.get(f"/api/rooms/{UNKNOWN}"), 401, "unauthorized")


# -- POST /api/rooms/{code}/join ------------------------------------------------------------


async def test_join_returns_room_ws_url_and_no_ice_servers_by_default(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    room = await create_room(client, alice)
    r = await client.post(f"/api/rooms/{room['code']}/join", headers=bob.auth)
    assert r.status_code == 200, r.text
    port = server.url.rsplit(":", 1)[1]
    assert r.json() == {
        "room": room,
        "lobby": False,
        "ws_url": f"ws://127.0.0.1:{port}/api/rooms/{room['code']}/ws",
        "ice_servers": [],
    }
    # Asking to join admits nobody by itself.
    assert (await get_room(client, alice, room["code"]))["participants"] == []


async def test_join_hands_out_the_configured_ice_servers(tmp_path: Path, clock: FakeClock) -> None:
    ice = [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": "turn:turn.example.org", "username": "u", "credential": "c"},
    ]
    config = make_config(tmp_path, rtc={"ice_servers": ice})
    expected = [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:turn.example.org"], "username": "u", "credential": "c"},
    ]
    async with open_server(config, clock=clock) as server, http_client(server) as client:
        alice = await make_user(server, Outbox(config.outbox_dir), "alice")
        room = await create_room(client, alice)
        r = await client.post(f"/api/rooms/{room['code']}/join", headers=alice.auth)
        assert r.status_code == 200, r.text
        assert r.json()["ice_servers"] == expected
        async with in_room(server, alice, room["code"]) as a:
            assert a.welcome["ice_servers"] == expected


async def test_join_unknown_room_is_404(client: httpx.AsyncClient, alice: User) -> None:
    assert_error(await client.post(f"/api/rooms/{UNKNOWN}/join", headers=alice.auth), 404, "room_not_found")


async def test_join_ended_room_is_410(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    room = await create_room(client, alice)
    assert (await client.post(f"/api/rooms/{room['code']}/end", headers=alice.auth)).status_code == 200
    for user in (alice, bob):
        assert_error(
            await client.post(f"/api/rooms/{room['code']}/join", headers=user.auth), 410, "room_ended"
        )
    message, close = await refused(server, bob, room["code"])
    assert (message["type"], message["code"], close) == ("error", "room_ended", 4410)


async def test_locked_room_admits_only_the_host(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    room = await create_room(client, alice)
    r = await client.patch(f"/api/rooms/{room['code']}", json={"locked": True}, headers=alice.auth)
    assert r.status_code == 200 and r.json()["room"]["locked"] is True
    assert_error(await client.post(f"/api/rooms/{room['code']}/join", headers=bob.auth), 403, "room_locked")
    message, close = await refused(server, bob, room["code"])
    assert (message["type"], message["code"], close) == ("error", "room_locked", 4403)
    r = await client.post(f"/api/rooms/{room['code']}/join", headers=alice.auth)
    assert r.status_code == 200, r.text
    async with in_room(server, alice, room["code"]) as a:
        assert a.welcome["role"] == "host"
    # Unlocking lets guests in again.
    await client.patch(f"/api/rooms/{room['code']}", json={"locked": False}, headers=alice.auth)
    assert (await client.post(f"/api/rooms/{room['code']}/join", headers=bob.auth)).status_code == 200


async def test_full_room_refuses_more_people(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    room = await create_room(client, alice, max_participants=2)
    code = room["code"]
    async with in_room(server, alice, code):
        assert (await client.post(f"/api/rooms/{code}/join", headers=carol.auth)).status_code == 200
        async with in_room(server, bob, code):
            assert_error(await client.post(f"/api/rooms/{code}/join", headers=carol.auth), 403, "room_full")
            # Capacity counts connections, the host's second tab included.
            assert_error(await client.post(f"/api/rooms/{code}/join", headers=alice.auth), 403, "room_full")
            message, close = await refused(server, carol, code)
            assert (message["type"], message["code"], close) == ("error", "room_full", 4403)
        await wait_left(client, bob, code)
        assert (await client.post(f"/api/rooms/{code}/join", headers=carol.auth)).status_code == 200


async def test_join_needs_sign_in(client: httpx.AsyncClient, alice: User) -> None:
    room = await create_room(client, alice)
    assert_error(await client.post(f"/api/rooms/{room['code']}/join"), 401, "unauthorized")


# -- PATCH /api/rooms/{code} ----------------------------------------------------------------


async def test_host_updates_the_room(client: httpx.AsyncClient, alice: User, bob: User) -> None:
    all_changes: list[dict[str, Any]] = [
        {"title": "  Renamed  "},
        {"locked": True},
        {"max_participants": 3},
        {"title": "Renamed", "locked": True, "max_participants": CAP},
    ]
    for changes in all_changes:
        room = await create_room(client, alice, title="Original", max_participants=5)
        r = await client.patch(f"/api/rooms/{room['code']}", json=changes, headers=alice.auth)
        assert r.status_code == 200, (changes, r.text)
        expected = {**room, **changes}
        expected["title"] = expected["title"].strip()
        assert r.json() == {"room": expected}, changes
        fetched = await get_room(client, bob, room["code"])
        # bob is a stranger: a locked room hides who is in it from him.
        hidden = fetched.pop("participants_hidden", None)
        assert (hidden, fetched.pop("participants", None)) == (
            ("room_locked", None) if expected["locked"] else (None, [])
        ), changes
        assert fetched == expected, changes
    # Changes add up: unlocking later keeps the title.
    r = await client.patch(f"/api/rooms/{room['code']}", json={"locked": False}, headers=alice.auth)
    assert (r.json()["room"]["title"], r.json()["room"]["locked"]) == ("Renamed", False)


async def test_update_by_a_guest_is_forbidden_and_changes_nothing(
    client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    room = await create_room(client, alice, title="Original")
    r = await client.patch(
        f"/api/rooms/{room['code']}", json={"title": "Mine now", "locked": True}, headers=bob.auth
    )
    assert_error(r, 403, "not_host")
    fetched = await get_room(client, alice, room["code"])
    assert (fetched["title"], fetched["locked"]) == ("Original", False)


async def test_update_rejects_bad_input(client: httpx.AsyncClient, alice: User) -> None:
    room = await create_room(client, alice, title="Original")
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        ({}, None, "invalid_request"),
        ({"title": None}, None, "invalid_request"),
        ({"locked": None}, None, "invalid_request"),
        ({"max_participants": None}, None, "invalid_request"),
        ({"title": "ok", "locked": None}, None, "invalid_request"),
        ({"title": ""}, "title", "invalid_title"),
        ({"title": "x" * 121}, "title", "invalid_title"),
        ({"title": 7}, "title", "invalid_field"),
        ({"locked": "yes"}, "locked", "invalid_field"),
        ({"locked": 1}, "locked", "invalid_field"),
        ({"max_participants": 1}, "max_participants", "invalid_max_participants"),
        ({"max_participants": CAP + 1}, "max_participants", "invalid_max_participants"),
        ({"max_participants": "4"}, "max_participants", "invalid_field"),
        ({"status": "ended"}, "status", "unknown_field"),
        ({"code": "aaa-aaaa-aaa"}, "code", "unknown_field"),
    ]
    for body, name, code in cases:
        r = await client.patch(f"/api/rooms/{room['code']}", json=body, headers=alice.auth)
        assert r.status_code == 400, (body, r.text)
        error = assert_error(r, 400, code)
        assert error.get("field") == name, (body, error)
    for content in (b"[]", b"{", b"", b"\xff"):
        r = await client.patch(
            f"/api/rooms/{room['code']}",
            content=content,
            headers={**alice.auth, "Content-Type": "application/json"},
        )
        assert r.status_code == 400, (content, r.text)
        assert_error(r, 400, "invalid_json")
    fetched = await get_room(client, alice, room["code"])
    fetched.pop("participants")
    assert fetched == room


async def test_update_errors_for_unknown_ended_and_anonymous(
    client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    assert_error(
        await client.patch(f"/api/rooms/{UNKNOWN}", json={"title": "x"}, headers=alice.auth),
        404,
        "room_not_found",
    )
    room = await create_room(client, alice)
    assert_error(await client.patch(f"/api/rooms/{room['code']}", json={"title": "x"}), 401, "unauthorized")
    await client.post(f"/api/rooms/{room['code']}/end", headers=alice.auth)
    assert_error(
        await client.patch(f"/api/rooms/{room['code']}", json={"title": "x"}, headers=alice.auth),
        410,
        "room_ended",
    )
    # A guest is told they are not the host, ended or not.
    assert_error(
        await client.patch(f"/api/rooms/{room['code']}", json={"title": "x"}, headers=bob.auth),
        403,
        "not_host",
    )


async def test_participants_are_told_about_updates(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    room = await create_room(client, alice, title="Original")
    async with in_room(server, alice, room["code"]) as a, in_room(server, bob, room["code"]) as b:
        r = await client.patch(
            f"/api/rooms/{room['code']}", json={"title": "Renamed", "max_participants": 4}, headers=alice.auth
        )
        updated = r.json()["room"]
        assert (updated["title"], updated["max_participants"]) == ("Renamed", 4)
        for peer in (a, b):
            assert await peer.until("room-updated") == {"type": "room-updated", "room": updated}
        r = await client.patch(f"/api/rooms/{room['code']}", json={"locked": True}, headers=alice.auth)
        for peer in (a, b):
            message = await peer.until("room-updated")
            assert message["room"] == r.json()["room"]
            assert message["room"]["locked"] is True
        # People already inside stay when the room is locked.
        assert len((await get_room(client, alice, room["code"]))["participants"]) == 2


# -- POST /api/rooms/{code}/end -------------------------------------------------------------


async def test_only_the_host_can_end(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    room = await create_room(client, alice)
    async with in_room(server, alice, room["code"]) as a, in_room(server, bob, room["code"]):
        await a.until("peer-joined")
        assert_error(await client.post(f"/api/rooms/{room['code']}/end", headers=bob.auth), 403, "not_host")
        fetched = await get_room(client, alice, room["code"])
        assert (fetched["status"], fetched["ended_at"], len(fetched["participants"])) == ("open", None, 2)
        # Nothing was sent: the next frame alice gets is the answer to her ping.
        await a.send({"type": "ping"})
        assert (await a.recv())["type"] == "pong"
    assert_error(await client.post(f"/api/rooms/{UNKNOWN}/end", headers=alice.auth), 404, "room_not_found")
    assert_error(await client.post(f"/api/rooms/{room['code']}/end"), 401, "unauthorized")


async def test_ending_closes_every_connection_and_is_idempotent(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, clock: FakeClock
) -> None:
    room = await create_room(client, alice)
    code = room["code"]
    async with in_room(server, alice, code) as a, in_room(server, bob, code) as b:
        clock.advance(42)
        ended_at = clock.now()
        r = await client.post(f"/api/rooms/{code}/end", headers=alice.auth)
        assert r.status_code == 200, r.text
        assert r.json()["room"] == {**room, "status": "ended", "ended_at": ended_at}
        for peer in (a, b):
            assert await peer.until("room-ended") == {"type": "room-ended"}
            assert await peer.closed_with() == 4410
    clock.advance(10)
    r = await client.post(f"/api/rooms/{code}/end", headers=alice.auth)
    assert r.status_code == 200
    assert r.json()["room"]["ended_at"] == ended_at
    fetched = await get_room(client, bob, code)
    assert (fetched["status"], fetched["ended_at"], fetched["participants"]) == ("ended", ended_at, [])
    # Every stay was closed at the moment the room ended.
    for user in (alice, bob):
        stay = (await client.get("/api/calls", headers=user.auth)).json()["calls"][0]
        assert (stay["left_at"], stay["duration_s"]) == (ended_at, 42)
    # The list of my rooms shows it as ended.
    listed = (await client.get("/api/rooms", headers=alice.auth)).json()["rooms"][0]
    assert (listed["status"], listed["participants"]) == ("ended", 0)


async def test_ending_an_empty_room(client: httpx.AsyncClient, alice: User, clock: FakeClock) -> None:
    room = await create_room(client, alice)
    r = await client.post(f"/api/rooms/{room['code']}/end", headers=alice.auth)
    assert r.status_code == 200
    assert (r.json()["room"]["status"], r.json()["room"]["ended_at"]) == ("ended", clock.now())


# -- GET /api/rooms/{code}/messages ---------------------------------------------------------


async def post_messages(
    server: RunningServer, user: User, code: str, texts: list[str]
) -> list[dict[str, Any]]:
    async with in_room(server, user, code) as peer:
        return [await peer.chat(text) for text in texts]


async def test_messages_newest_first_and_paginated(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, clock: FakeClock
) -> None:
    room = await create_room(client, alice)
    texts = [f"message {i}" for i in range(5)]
    posted = await post_messages(server, bob, room["code"], texts)
    url = f"/api/rooms/{room['code']}/messages"
    r = await client.get(url, headers=bob.auth)
    assert r.status_code == 200
    assert r.json() == {"messages": posted[::-1], "next_before": None}
    assert posted[0]["user"] == {"id": bob.id, "username": "bob"}
    assert posted[0]["created_at"] == clock.now()

    seen: list[str] = []
    before = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if before is not None:
            params["before"] = before
        body = (await client.get(url, params=params, headers=alice.auth)).json()
        seen += [m["text"] for m in body["messages"]]
        pages += 1
        before = body["next_before"]
        if before is None:
            break
        assert before == body["messages"][-1]["id"]
    assert seen == texts[::-1]
    assert pages == 3
    r = await client.get(url, params={"before": 0}, headers=alice.auth)
    assert r.json() == {"messages": [], "next_before": None}


async def test_messages_bad_paging_parameters(client: httpx.AsyncClient, alice: User) -> None:
    room = await create_room(client, alice)
    url = f"/api/rooms/{room['code']}/messages"
    for limit in ("0", "101", "x"):
        assert_error(await client.get(url, params={"limit": limit}, headers=alice.auth), 400, field="limit")
    assert_error(await client.get(url, params={"before": "x"}, headers=alice.auth), 400, field="before")


CHAT = [
    "hello world",
    "deploy the release tonight",
    "release notes are ready",
    'she said "ship it" AND left',
    "NEAR(the end) - minus signs",
    "Café crème at ten",
    "prefix-matching works",
]


@pytest.fixture
async def chat_room(server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User) -> str:
    room = await create_room(client, alice)
    await post_messages(server, bob, room["code"], CHAT)
    return room["code"]  # type: ignore[no-any-return]


async def test_message_search(client: httpx.AsyncClient, alice: User, chat_room: str) -> None:
    cases = [
        ("release", [CHAT[2], CHAT[1]]),  # a word, newest first
        ("RELEASE", [CHAT[2], CHAT[1]]),  # case-insensitive
        ("rel", [CHAT[2], CHAT[1]]),  # the last word is a prefix
        ("deploy rel", [CHAT[1]]),  # all words must appear
        ("release deploy", [CHAT[1]]),  # in any order
        ("release not", [CHAT[2]]),
        ("rel notes", []),  # only the last word is a prefix: "rel" must be a whole word here
        ("hello release", []),
        ("  hello   ", [CHAT[0]]),
        ("AND", [CHAT[3]]),  # operators are plain words
        ("near", [CHAT[4]]),
        ('"ship', [CHAT[3]]),  # stray quotes are ignored
        ('ship"', [CHAT[3]]),
        ("café", [CHAT[5]]),
        ("CAFE", [CHAT[5]]),  # diacritics are folded (FTS5 unicode61)
        ("creme", [CHAT[5]]),
        ("prefix-match", [CHAT[6]]),
        ("zebra", []),
    ]
    wrong = []
    for q, expected in cases:
        r = await client.get(f"/api/rooms/{chat_room}/messages", params={"q": q}, headers=alice.auth)
        got = [m["text"] for m in r.json()["messages"]] if r.status_code == 200 else r.status_code
        if got != expected:
            wrong.append((q, expected, got))
    assert wrong == []


FTS_NASTIES = [
    '"',
    '""',
    "'",
    "*",
    "* *",
    "AND",
    "OR",
    "NOT",
    "NEAR(",
    "NEAR(a b",
    "NEAR",
    "-",
    "--",
    "-hello",
    "+",
    "^",
    "^hello",
    ":",
    "text:hello",
    "{text}: hello",
    "(",
    ")",
    "()",
    "a OR b",
    'x" OR "y',
    "hello*",
    "*hello",
    "\\",
    "%",
    "_",
    ";",
    "'; DROP TABLE messages; --",
    "\x00",
    "a\x00b",
    "\x01",
    "\u200b",
    "🙂",
    "\ufeff",
    " ",
    "\t",
    "NOT hello",
    "hello NOT world",
    "col : x",
    "a" * 200,
]


async def test_message_search_never_fails_on_odd_queries(
    client: httpx.AsyncClient, alice: User, chat_room: str
) -> None:
    url = f"/api/rooms/{chat_room}/messages"
    failures = []
    for q in FTS_NASTIES:
        r = await client.get(url, params={"q": q}, headers=alice.auth)
        if r.status_code != 200:
            failures.append((q, r.status_code, r.text))
    assert failures == []
    # Whitespace only is no filter at all; an empty q too.
    for q in (" ", ""):
        r = await client.get(url, params={"q": q}, headers=alice.auth)
        assert len(r.json()["messages"]) == len(CHAT)
    # Still a working search afterwards (nothing was dropped).
    r = await client.get(url, params={"q": "hello"}, headers=alice.auth)
    assert [m["text"] for m in r.json()["messages"]] == [CHAT[0]]


async def test_message_search_query_is_limited(
    client: httpx.AsyncClient, alice: User, chat_room: str
) -> None:
    r = await client.get(f"/api/rooms/{chat_room}/messages", params={"q": "a" * 201}, headers=alice.auth)
    assert_error(r, 400, "invalid_query", "q")


async def test_message_search_paginates(
    server: RunningServer, client: httpx.AsyncClient, alice: User
) -> None:
    room = await create_room(client, alice)
    texts = [f"standup item {i}" for i in range(5)] + ["unrelated"]
    await post_messages(server, alice, room["code"], texts)
    url = f"/api/rooms/{room['code']}/messages"
    first = (await client.get(url, params={"q": "standup", "limit": 3}, headers=alice.auth)).json()
    assert [m["text"] for m in first["messages"]] == ["standup item 4", "standup item 3", "standup item 2"]
    params = {"q": "standup", "limit": 3, "before": first["next_before"]}
    second = (await client.get(url, params=params, headers=alice.auth)).json()
    assert [m["text"] for m in second["messages"]] == ["standup item 1", "standup item 0"]
    assert second["next_before"] is None


async def test_messages_readable_by_host_and_participants_only(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    room = await create_room(client, alice)
    code = room["code"]
    url = f"/api/rooms/{code}/messages"
    # The host may read even without ever joining (and the room has no chat yet).
    assert (await client.get(url, headers=alice.auth)).json() == {"messages": [], "next_before": None}
    assert_error(await client.get(url, headers=bob.auth), 403, "not_a_participant")
    async with in_room(server, bob, code) as b:
        await b.chat("hi")
        assert [m["text"] for m in (await client.get(url, headers=bob.auth)).json()["messages"]] == ["hi"]
    # Having left (and after the room ended) bob still may; carol never joined.
    await wait_left(client, bob, code)
    await client.post(f"/api/rooms/{code}/end", headers=alice.auth)
    assert (await client.get(url, headers=bob.auth)).status_code == 200
    assert (await client.get(url, headers=alice.auth)).status_code == 200
    assert_error(await client.get(url, headers=carol.auth), 403, "not_a_participant")
    assert_error(await client.get(url, params={"q": "hi"}, headers=carol.auth), 403, "not_a_participant")
    # Asking to join over HTTP is not taking part.
    other = await create_room(client, alice)
    await client.post(f"/api/rooms/{other['code']}/join", headers=carol.auth)
    assert_error(
        await client.get(f"/api/rooms/{other['code']}/messages", headers=carol.auth), 403, "not_a_participant"
    )


async def test_messages_unknown_room_and_anonymous(client: httpx.AsyncClient, alice: User) -> None:
    assert_error(
        await client.get(f"/api/rooms/{UNKNOWN}/messages", headers=alice.auth), 404, "room_not_found"
    )
    room = await create_room(client, alice)
    assert_error(await client.get(f"/api/rooms/{room['code']}/messages"), 401, "unauthorized")


# -- GET /api/calls -------------------------------------------------------------------------


async def test_calls_durations_follow_the_clock(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, clock: FakeClock
) -> None:
    room = await create_room(client, alice, title="Planning")
    code = room["code"]
    async with in_room(server, bob, code):
        joined = clock.now()
        clock.advance(10)
        call = (await client.get("/api/calls", headers=bob.auth)).json()["calls"][0]
        assert (call["joined_at"], call["left_at"], call["duration_s"]) == (joined, None, 10)
        clock.advance(80.25)
        call = (await client.get("/api/calls", headers=bob.auth)).json()["calls"][0]
        assert (call["left_at"], call["duration_s"]) == (None, 90.25)
    call = await wait_left(client, bob, code)
    assert call == {
        "id": call["id"],
        "room": {"code": code, "title": "Planning", "hosted": False},
        "joined_at": joined,
        "left_at": joined + 90.25,
        "duration_s": 90.25,
    }
    clock.advance(1000)  # a closed stay no longer grows
    assert (await client.get("/api/calls", headers=bob.auth)).json()["calls"][0]["duration_s"] == 90.25
    assert (await client.get("/api/calls", headers=alice.auth)).json() == {"calls": [], "next_before": None}


async def test_calls_newest_first_paginated_and_marked_hosted(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, clock: FakeClock
) -> None:
    mine = await create_room(client, bob, title="bob's own")
    theirs = [await create_room(client, alice, title=f"alice {i}") for i in range(2)]
    for room in (theirs[0], mine, theirs[1]):
        async with in_room(server, bob, room["code"]):
            clock.advance(5)
        await wait_left(client, bob, room["code"])
        clock.advance(60)
    r = await client.get("/api/calls", headers=bob.auth)
    calls = r.json()["calls"]
    assert [(c["room"]["title"], c["room"]["hosted"]) for c in calls] == [
        ("alice 1", False),
        ("bob's own", True),
        ("alice 0", False),
    ]
    assert all(c["duration_s"] == 5 for c in calls)
    assert calls[0]["joined_at"] - calls[1]["joined_at"] == 65
    page = (await client.get("/api/calls", params={"limit": 2}, headers=bob.auth)).json()
    assert page["calls"] == calls[:2]
    assert page["next_before"] == calls[1]["id"]
    page = (
        await client.get("/api/calls", params={"limit": 2, "before": page["next_before"]}, headers=bob.auth)
    ).json()
    assert page == {"calls": calls[2:], "next_before": None}
    page = (await client.get("/api/calls", params={"before": 0}, headers=bob.auth)).json()
    assert page == {"calls": [], "next_before": None}
    for limit in ("0", "101", "x"):
        assert_error(
            await client.get("/api/calls", params={"limit": limit}, headers=bob.auth), 400, field="limit"
        )
    assert_error(await client.get("/api/calls"), 401, "unauthorized")


async def test_rejoining_within_the_grace_continues_the_stay(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, clock: FakeClock
) -> None:
    room = await create_room(client, alice)
    code = room["code"]
    async with in_room(server, bob, code):
        joined = clock.now()
        clock.advance(10)
    await wait_left(client, bob, code)
    clock.advance(5)  # within [rooms] reconnect_grace (30 s)
    async with in_room(server, bob, code):
        clock.advance(10)
        calls = (await client.get("/api/calls", headers=bob.auth)).json()["calls"]
        assert [(c["joined_at"], c["left_at"], c["duration_s"]) for c in calls] == [(joined, None, 25)]


# -- GET /api/rooms/{code}/attendance -------------------------------------------------------


async def test_attendance_json_and_csv(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User, clock: FakeClock
) -> None:
    room = await create_room(client, alice, title="Retro")
    code = room["code"]
    t0 = clock.now()
    async with in_room(server, alice, code) as a:
        async with in_room(server, bob, code):
            clock.advance(60)
        await a.until("peer-left")
        await wait_left(client, bob, code)
        clock.advance(100)  # longer than the reconnect grace: a new stay
        async with in_room(server, bob, code):
            clock.advance(20)
            r = await client.post(f"/api/rooms/{code}/end", headers=alice.auth)
            assert r.status_code == 200
    r = await client.get(f"/api/rooms/{code}/attendance", headers=alice.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "room": {"code": code, "title": "Retro"},
        "attendance": [
            {
                "user": {"id": alice.id, "username": "alice"},
                "stays": [{"joined_at": t0, "left_at": t0 + 180, "duration_s": 180}],
                "total_s": 180,
            },
            {
                "user": {"id": bob.id, "username": "bob"},
                "stays": [
                    {"joined_at": t0, "left_at": t0 + 60, "duration_s": 60},
                    {"joined_at": t0 + 160, "left_at": t0 + 180, "duration_s": 20},
                ],
                "total_s": 80,
            },
        ],
    }
    assert r.json()["attendance"][1]["stays"][1]["joined_at"] == t0 + 160

    r = await client.get(f"/api/rooms/{code}/attendance", params={"format": "csv"}, headers=alice.auth)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment")
    assert f'filename="attendance-{code}.csv"' in disposition
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["username", "user_id", "joined_at", "left_at", "duration_s", "total_s", "guest"]
    assert [(row[0], row[1], float(row[4]), float(row[5])) for row in rows[1:]] == [
        ("alice", str(alice.id), 180.0, 180.0),
        ("bob", str(bob.id), 60.0, 80.0),
        ("bob", str(bob.id), 20.0, 80.0),
    ]
    assert all(row[2] and row[3] for row in rows[1:])

    for user in (bob, carol):
        assert_error(await client.get(f"/api/rooms/{code}/attendance", headers=user.auth), 403, "not_host")
        r = await client.get(f"/api/rooms/{code}/attendance", params={"format": "csv"}, headers=user.auth)
        assert_error(r, 403, "not_host")


async def test_attendance_shows_open_stays_and_empty_rooms(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, clock: FakeClock
) -> None:
    room = await create_room(client, alice)
    code = room["code"]
    r = await client.get(f"/api/rooms/{code}/attendance", headers=alice.auth)
    assert r.json()["attendance"] == []
    r = await client.get(f"/api/rooms/{code}/attendance", params={"format": "csv"}, headers=alice.auth)
    assert list(csv.reader(io.StringIO(r.text))) == [
        ["username", "user_id", "joined_at", "left_at", "duration_s", "total_s", "guest"]
    ]
    async with in_room(server, bob, code):
        clock.advance(7)
        person = (await client.get(f"/api/rooms/{code}/attendance", headers=alice.auth)).json()["attendance"][
            0
        ]
        assert person["stays"][0]["left_at"] is None
        assert (person["stays"][0]["duration_s"], person["total_s"]) == (7, 7)
        r = await client.get(f"/api/rooms/{code}/attendance", params={"format": "csv"}, headers=alice.auth)
        row = list(csv.reader(io.StringIO(r.text)))[1]
        assert (row[0], row[3], float(row[4])) == ("bob", "", 7.0)


async def test_attendance_rejects_an_unknown_format(client: httpx.AsyncClient, alice: User) -> None:
    room = await create_room(client, alice)
    for fmt in ("xml", "CSV", "", "json;", "csv ", "\x00"):
        r = await client.get(
            f"/api/rooms/{room['code']}/attendance", params={"format": fmt}, headers=alice.auth
        )
        assert r.status_code == 400, (fmt, r.text)
        assert_error(r, 400, "invalid_parameter", "format")
    r = await client.get(
        f"/api/rooms/{room['code']}/attendance", params={"format": "json"}, headers=alice.auth
    )
    assert r.status_code == 200


async def test_attendance_unknown_room_and_anonymous(client: httpx.AsyncClient, alice: User) -> None:
    assert_error(
        await client.get(f"/api/rooms/{UNKNOWN}/attendance", headers=alice.auth), 404, "room_not_found"
    )
    room = await create_room(client, alice)
    assert_error(await client.get(f"/api/rooms/{room['code']}/attendance"), 401, "unauthorized")


# -- robustness ------------------------------------------------------------------------------


async def test_odd_requests_get_json_errors_never_500(client: httpx.AsyncClient, alice: User) -> None:
    room = await create_room(client, alice)
    code = room["code"]
    h = alice.auth
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/rooms", {"params": {"limit": "²"}}),
        ("GET", "/api/rooms", {"params": {"before": "¹²"}}),
        ("GET", "/api/rooms", {"params": {"limit": "٣"}}),
        ("GET", "/api/calls", {"params": {"limit": "5\x00"}}),
        ("GET", "/api/calls", {"params": {"before": "9" * 40}}),
        ("GET", f"/api/rooms/{code}/messages", {"params": {"limit": "⑤"}}),
        ("GET", f"/api/rooms/{code}/messages", {"params": {"q": "x" * 5000}}),
        ("GET", f"/api/rooms/{code}/attendance", {"params": {"format": "\x00"}}),
        ("GET", "/api/rooms/%00", {}),
        ("GET", "/api/rooms/" + "a" * 5000, {}),
        ("GET", "/api/rooms/%F0%9F%99%82", {}),
        ("GET", "/api/rooms/%FF%FE", {}),
        ("POST", f"/api/rooms/{UNKNOWN}/end", {}),
        ("DELETE", f"/api/rooms/{code}", {}),
        ("PUT", f"/api/rooms/{code}", {"json": {"title": "x"}}),
        ("GET", f"/api/rooms/{code}/end", {}),
        ("POST", "/api/calls", {"json": {}}),
        (
            "PATCH",
            f"/api/rooms/{code}",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        ),
        (
            "PATCH",
            f"/api/rooms/{code}",
            {"content": b"title=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        ),
        ("POST", "/api/rooms", {"content": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/api/rooms", {"json": {"title": "\x00" * 5}}),
        (
            "POST",
            "/api/rooms",
            {"content": b"x" * (70 * 1024), "headers": {"Content-Type": "application/json"}},
        ),
    ]
    failures = []
    for method, url, kwargs in requests:
        headers: dict[str, str] = {**h, **kwargs.pop("headers", {})}
        r = await client.request(method, url, headers=headers, **kwargs)
        if r.status_code >= 500 or not r.headers.get("content-type", "").startswith("application/json"):
            failures.append((method, url, r.status_code, r.text[:200]))
            continue
        if r.status_code >= 400:
            assert_error(r, r.status_code)
    assert failures == []


async def test_every_route_needs_sign_in(client: httpx.AsyncClient, alice: User) -> None:
    code = (await create_room(client, alice))["code"]
    routes = [
        ("POST", "/api/rooms"),
        ("GET", "/api/rooms"),
        ("GET", "/api/rooms/{code}"),
        ("POST", "/api/rooms/{code}/join"),
        ("PATCH", "/api/rooms/{code}"),
        ("POST", "/api/rooms/{code}/end"),
        ("GET", "/api/rooms/{code}/messages"),
        ("GET", "/api/rooms/{code}/attendance"),
        ("GET", "/api/calls"),
    ]
    for method, path in routes:
        body = {"title": "x"} if method in ("POST", "PATCH") else None
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YWxpY2U6eA=="}):
            r = await client.request(method, path.format(code=code), json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert_error(r, 401, "unauthorized")
    # Nothing happened: the room is untouched.
    room = await get_room(client, alice, code)
    assert (room["title"], room["status"]) == ("alice's meeting", "open")
