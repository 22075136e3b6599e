"""The room WebSocket (``/api/rooms/{code}/ws``) end to end: real clients, a real server.

Each test waits for frames (never for time); "nothing else arrives" is shown by sending
``ping`` and seeing ``pong`` as the very next frame (:meth:`WS.assert_idle`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import Outbox, User, make_config, make_room, make_user
from wsclient import RawSlowClient, connect, join, room_ws_url

from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer, open_server

PEER_KEYS = {"peer_id", "user", "role", "guest", "joined_at", "audio", "video", "screen", "hand"}


@pytest.fixture
def rooms_settings() -> dict[str, Any]:
    """``[rooms]`` overrides; tests change it with ``@pytest.mark.parametrize``."""
    return {}


@pytest.fixture
def config(tmp_path: Path, rooms_settings: dict[str, Any]) -> Config:
    return make_config(tmp_path, rooms=rooms_settings, auth={"mail_max_per_window": 50})


def settings(**rooms: Any) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("rooms_settings", [rooms], ids=["-".join(f"{k}={v}" for k, v in rooms.items())])


@pytest.fixture
async def room(client: httpx.AsyncClient, alice: User) -> str:
    """A room hosted by alice."""
    return await make_room(client, alice)


async def participants(client: httpx.AsyncClient, user: User, code: str) -> list[str]:
    r = await client.get(f"/api/rooms/{code}", headers=user.auth)
    assert r.status_code == 200, r.text
    return [p["peer_id"] for p in r.json()["room"]["participants"]]


# -- joining and leaving ------------------------------------------------------------------


async def test_join_sequence_and_ordering(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, wa):
        assert set(wa) == {
            "type", "peer_id", "user", "role", "room", "peers", "messages", "ice_servers", "mode", "protocol",
        }
        assert wa["user"] == {"id": alice.id, "username": "alice"}
        assert wa["role"] == "host" and wa["peers"] == [] and wa["messages"] == []
        assert wa["mode"] == "mesh" and wa["protocol"] == 1
        assert wa["room"]["code"] == room and wa["room"]["status"] == "open"
        assert wa["room"]["host"] == {"id": alice.id, "username": "alice"}

        async with join(url, room, bob.token) as (b, wb):
            assert wb["role"] == "guest"
            assert [p["peer_id"] for p in wb["peers"]] == [wa["peer_id"]]
            assert set(wb["peers"][0]) == PEER_KEYS
            assert wb["peers"][0]["role"] == "host"
            joined = await a.expect("peer-joined")
            assert joined["peer"]["peer_id"] == wb["peer_id"]
            assert joined["peer"]["user"] == {"id": bob.id, "username": "bob"}
            assert set(joined["peer"]) == PEER_KEYS

            async with join(url, room, carol.token) as (_c, wc):
                assert {p["peer_id"] for p in wc["peers"]} == {wa["peer_id"], wb["peer_id"]}
                for ws in (a, b):
                    assert (await ws.expect("peer-joined"))["peer"]["peer_id"] == wc["peer_id"]
                assert sorted(await participants(client, alice, room)) == sorted(
                    [wa["peer_id"], wb["peer_id"], wc["peer_id"]]
                )
            # carol left
            for ws in (a, b):
                assert await ws.expect("peer-left") == {"type": "peer-left", "peer_id": wc["peer_id"]}
            await a.assert_idle()
            await b.assert_idle()
        assert await a.expect("peer-left") == {"type": "peer-left", "peer_id": wb["peer_id"]}
        await a.assert_idle()
        assert await participants(client, alice, room) == [wa["peer_id"]]


# -- signal -------------------------------------------------------------------------------


async def test_signal_goes_only_to_its_addressee(
    server: RunningServer, alice: User, bob: User, carol: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, wa), join(url, room, bob.token) as (b, wb):
        await a.expect("peer-joined")
        async with join(url, room, carol.token) as (c, _wc):
            await a.expect("peer-joined")
            await b.expect("peer-joined")
            offer = {"description": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}}
            await b.send({"type": "signal", "to": wa["peer_id"], "data": offer})
            assert await a.recv() == {"type": "signal", "from": wb["peer_id"], "data": offer}
            candidate = {"candidate": {"candidate": "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host",
                                       "sdpMid": "0", "sdpMLineIndex": 0}}
            await a.send({"type": "signal", "to": wb["peer_id"], "data": candidate})
            assert await b.recv() == {"type": "signal", "from": wa["peer_id"], "data": candidate}
            await a.send({"type": "signal", "to": wb["peer_id"], "data": {"candidate": None}})
            assert await b.recv() == {"type": "signal", "from": wa["peer_id"], "data": {"candidate": None}}
            # SDP of a big room is larger than other frames may be: up to 512 KiB is relayed.
            big = {"description": {"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * (300 * 1024 // 5)}}
            await b.send({"type": "signal", "to": wa["peer_id"], "data": big})
            assert await a.recv() == {"type": "signal", "from": wb["peer_id"], "data": big}
            for ws in (a, b, c):  # no copies to the third peer, no echo to the sender
                await ws.assert_idle()


async def test_signal_to_unknown_peer_or_self(server: RunningServer, alice: User, bob: User, room: str) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, wa), join(url, room, bob.token) as (b, wb):
        await a.expect("peer-joined")
        await b.send({"type": "signal", "to": "nobody-here", "data": {"candidate": None}})
        await b.expect_error("unknown_peer")
        await b.send({"type": "signal", "to": wb["peer_id"], "data": {"candidate": None}})
        await b.expect_error("unknown_peer")
        await a.assert_idle()
        # the connection keeps working
        await b.assert_idle()
        await b.send({"type": "signal", "to": wa["peer_id"], "data": {"candidate": None}})
        assert (await a.recv())["from"] == wb["peer_id"]


# -- chat ---------------------------------------------------------------------------------


async def test_chat_is_broadcast_and_persisted(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, _):
        await a.expect("peer-joined")
        await b.send({"type": "chat", "text": "hello <b>there</b>"})
        got_a, got_b = await a.expect("chat"), await b.expect("chat")
        assert got_a == got_b
        message = got_a["message"]
        assert set(message) == {"id", "user", "text", "created_at"}
        assert message["user"] == {"id": bob.id, "username": "bob"}
        assert message["text"] == "hello <b>there</b>"
    r = await client.get(f"/api/rooms/{room}/messages", headers=bob.auth)
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == [message]


async def test_late_joiner_gets_last_50_messages_oldest_first(
    server: RunningServer, alice: User, bob: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _):
        for i in range(55):
            await a.send({"type": "chat", "text": f"m{i}"})
        for i in range(55):
            assert (await a.expect("chat"))["message"]["text"] == f"m{i}"
        async with join(url, room, bob.token) as (_, wb):
            texts = [m["text"] for m in wb["messages"]]
            assert texts == [f"m{i}" for i in range(5, 55)]
            ids = [m["id"] for m in wb["messages"]]
            assert ids == sorted(ids)


@pytest.mark.parametrize("text", ["", "   \n", "x" * 2001])
async def test_bad_chat_is_refused(server: RunningServer, alice: User, bob: User, room: str, text: str) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, _):
        await a.expect("peer-joined")
        await b.send({"type": "chat", "text": text})
        await b.expect_error("invalid_message")
        await a.assert_idle()
        await b.send({"type": "chat", "text": "x" * 2000})  # the limit itself is fine
        assert len((await a.expect("chat"))["message"]["text"]) == 2000


# -- state --------------------------------------------------------------------------------


async def test_state_goes_to_others_with_all_fields(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, wb):
        await a.expect("peer-joined")
        await b.send({"type": "state", "audio": False})
        expected = {"type": "state", "peer_id": wb["peer_id"], "audio": False, "video": True, "screen": False,
                    "hand": False}
        assert await a.recv() == expected
        await b.send({"type": "state", "hand": True, "screen": True})
        assert await a.recv() == {**expected, "hand": True, "screen": True}
        await b.assert_idle()  # not echoed to the sender
        async with join(url, room, carol.token) as (_, wc):
            bob_seen = next(p for p in wc["peers"] if p["peer_id"] == wb["peer_id"])
            assert (bob_seen["audio"], bob_seen["video"], bob_seen["screen"], bob_seen["hand"]) == (
                False, True, True, True,
            )


# -- host powers --------------------------------------------------------------------------


async def test_host_kicks(server: RunningServer, alice: User, bob: User, carol: User, room: str) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, wb):
        await a.expect("peer-joined")
        async with join(url, room, carol.token) as (c, _):
            await a.expect("peer-joined")
            await b.expect("peer-joined")
            await a.send({"type": "kick", "peer_id": wb["peer_id"]})
            frames, code = await b.frames_then_close()
            assert frames == [{"type": "kicked"}]
            assert code == 4403
            for ws in (a, c):
                assert await ws.expect("peer-left") == {"type": "peer-left", "peer_id": wb["peer_id"]}
                await ws.assert_idle()


async def test_host_mutes(server: RunningServer, alice: User, bob: User, carol: User, room: str) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, wb):
        await a.expect("peer-joined")
        async with join(url, room, carol.token) as (c, _):
            await a.expect("peer-joined")
            await b.expect("peer-joined")
            await a.send({"type": "mute", "peer_id": wb["peer_id"]})
            assert await b.recv() == {"type": "mute-request", "by": {"id": alice.id, "username": "alice"}}
            for ws in (a, b, c):
                await ws.assert_idle()
            await a.send({"type": "mute", "peer_id": "nobody"})
            await a.expect_error("unknown_peer")


async def test_host_ends_the_meeting(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, _):
        await a.expect("peer-joined")
        await a.send({"type": "end"})
        for ws in (a, b):
            frames, code = await ws.frames_then_close()
            assert frames == [{"type": "room-ended"}]
            assert code == 4410
    r = await client.get(f"/api/rooms/{room}", headers=bob.auth)
    assert r.json()["room"]["status"] == "ended" and r.json()["room"]["participants"] == []
    async with connect(room_ws_url(url, room), bob.token) as late:
        frames, code = await late.frames_then_close()
        assert [f["code"] for f in frames] == ["room_ended"] and code == 4410
    r = await client.post(f"/api/rooms/{room}/join", headers=bob.auth)
    assert r.status_code == 410 and r.json()["error"]["code"] == "room_ended"


async def test_rest_end_closes_sockets(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, room: str
) -> None:
    async with join(server.url, room, bob.token) as (b, _):
        r = await client.post(f"/api/rooms/{room}/end", headers=alice.auth)
        assert r.status_code == 200
        assert await b.frames_then_close() == ([{"type": "room-ended"}], 4410)


async def test_guests_cannot_use_host_powers(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, wa), join(url, room, bob.token) as (b, wb):
        await a.expect("peer-joined")
        for frame in (
            {"type": "kick", "peer_id": wa["peer_id"]},
            {"type": "mute", "peer_id": wa["peer_id"]},
            {"type": "end"},
            {"type": "kick", "peer_id": wb["peer_id"]},
        ):
            await b.send(frame)
            await b.expect_error("not_host")
        await a.assert_idle()
        await b.assert_idle()
        r = await client.get(f"/api/rooms/{room}", headers=alice.auth)
        assert r.json()["room"]["status"] == "open"
        assert len(r.json()["room"]["participants"]) == 2


async def test_room_updated_is_broadcast(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, room: str
) -> None:
    async with join(server.url, room, alice.token) as (a, _), join(server.url, room, bob.token) as (b, _):
        await a.expect("peer-joined")
        r = await client.patch(f"/api/rooms/{room}", json={"title": "Retro", "locked": True}, headers=alice.auth)
        assert r.status_code == 200, r.text
        for ws in (a, b):
            update = await ws.expect("room-updated")
            assert update["room"]["title"] == "Retro" and update["room"]["locked"] is True
            assert update["room"] == r.json()["room"]


# -- malformed frames ---------------------------------------------------------------------


BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("not json", "invalid_json"),
    ("", "invalid_json"),
    ("[1, 2]", "invalid_message"),
    ('"chat"', "invalid_message"),
    ('{"text": "no type"}', "invalid_message"),
    ('{"type": 5}', "invalid_message"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"type": "ring", "user_id": 1, "room": "x"}', "unknown_type"),  # a user-channel type
    ('{"type": "chat", "text": 5}', "invalid_message"),
    ('{"type": "state", "audio": "yes"}', "invalid_message"),
    ('{"type": "state", "audio": 1}', "invalid_message"),
    ('{"type": "signal", "to": "x", "data": [1]}', "invalid_message"),
    ('{"type": "signal", "to": "x"}', "invalid_message"),
    ('{"type": "kick"}', "invalid_message"),
    ('{"type": "chat", "text": "hi", "extra": 1}', "invalid_message"),
    ('{"type": "ping", "at": 1}', "invalid_message"),
    (b"\x00\x01binary", "invalid_message"),
    (json.dumps({"type": "chat", "text": "x" * (70 * 1024)}), "frame_too_large"),
    ("y" * (70 * 1024), "frame_too_large"),
    (json.dumps({"type": "chat", "text": "ä" * 40000}, ensure_ascii=False), "frame_too_large"),  # 80 kB in UTF-8
    ('{"type": "chat", "text": "' + "z" * (70 * 1024), "frame_too_large"),  # too large before invalid JSON
    (json.dumps({"type": "signal", "to": "x", "data": {"sdp": "s" * (520 * 1024)}}), "frame_too_large"),
]


async def test_malformed_frames_get_errors_and_the_connection_survives(
    server: RunningServer, alice: User, bob: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, _):
        await a.expect("peer-joined")
        for i, (raw, code) in enumerate(BAD_FRAMES):
            await b.send(raw)
            error = await b.expect("error")
            assert error["code"] == code, (raw[:60], error)
            if i % 10 == 9:
                await b.assert_idle()  # an accepted frame, or 20 strikes in a row would close us
        await a.assert_idle()
        await b.send({"type": "chat", "text": "still here"})
        assert (await a.expect("chat"))["message"]["text"] == "still here"
        assert (await b.expect("chat"))["message"]["text"] == "still here"


async def test_oversized_frame_closes_with_1009(
    server: RunningServer, alice: User, bob: User, carol: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, carol.token) as (c, _):
        await a.expect("peer-joined")
        async with join(url, room, bob.token) as (b, wb):
            for ws in (a, c):
                await ws.expect("peer-joined")
            await b.send("z" * (1024 * 1024 + 1024))
            assert await b.closed() == 1009
        for ws in (a, c):
            assert await ws.expect("peer-left") == {"type": "peer-left", "peer_id": wb["peer_id"]}
        await a.send({"type": "chat", "text": "unaffected"})
        for ws in (a, c):
            assert (await ws.expect("chat"))["message"]["text"] == "unaffected"


async def test_twenty_consecutive_bad_frames_close_with_1008(
    server: RunningServer, alice: User, bob: User, room: str
) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, wb):
        await a.expect("peer-joined")
        # 19 strikes, then a good frame: the count starts again
        for _ in range(19):
            await b.send("nope")
        for _ in range(19):
            await b.expect_error("invalid_json")
        await b.assert_idle()
        for _ in range(20):
            await b.send("nope")
        frames, code = await b.frames_then_close()
        assert [f["code"] for f in frames] == ["invalid_json"] * 20
        assert code == 1008
        assert await a.expect("peer-left") == {"type": "peer-left", "peer_id": wb["peer_id"]}


@settings(message_burst=5, message_rate=0.05)
async def test_rate_limit(server: RunningServer, alice: User, bob: User, room: str) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, _):
        await a.expect("peer-joined")
        for i in range(8):
            await b.send({"type": "chat", "text": f"flood {i}"})
        frames = [await b.recv() for _ in range(8)]
        assert [f["type"] for f in frames] == ["chat"] * 5 + ["error"] * 3
        assert {f["code"] for f in frames[5:]} == {"rate_limited"}
        for i in range(5):
            assert (await a.expect("chat"))["message"]["text"] == f"flood {i}"
        await a.assert_idle()


# -- admission ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/rooms/{code}/ws", "/api/ws"])
@pytest.mark.parametrize("token", [None, "not-a-real-token"])
async def test_unauthenticated_socket_is_refused(
    server: RunningServer, room: str, path: str, token: str | None
) -> None:
    url = "ws://" + server.url.split("://", 1)[1] + path.format(code=room)
    async with connect(url, token) as ws:
        frames, code = await ws.frames_then_close()
    assert [f["code"] for f in frames] == ["unauthorized"]
    assert code == 4401


async def test_cookie_auth_and_same_origin_check(
    server: RunningServer, alice: User, bob: User, room: str
) -> None:
    url = room_ws_url(server.url, room)
    cookie = ("Cookie", f"meet_session={alice.token}")
    async with connect(url, headers=[cookie, ("Origin", "http://evil.example")]) as ws:
        frames, code = await ws.frames_then_close()
        assert [f["code"] for f in frames] == ["cross_origin"] and code == 4403
    async with connect(url, headers=[cookie, ("Sec-Fetch-Site", "cross-site")]) as ws:
        frames, code = await ws.frames_then_close()
        assert [f["code"] for f in frames] == ["cross_origin"] and code == 4403
    async with connect(url, headers=[cookie, ("Origin", server.url)]) as ws:
        assert (await ws.expect("welcome"))["user"]["username"] == "alice"
        # a bearer token carries no ambient authority: any Origin is fine
        async with connect(url, bob.token, headers=[("Origin", "http://evil.example")]) as wb:
            assert (await wb.expect("welcome"))["user"]["username"] == "bob"


async def test_locked_room_admits_only_the_host(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, room: str
) -> None:
    r = await client.patch(f"/api/rooms/{room}", json={"locked": True}, headers=alice.auth)
    assert r.status_code == 200, r.text
    async with connect(room_ws_url(server.url, room), bob.token) as ws:
        frames, code = await ws.frames_then_close()
        assert [f["code"] for f in frames] == ["room_locked"] and code == 4403
    r = await client.post(f"/api/rooms/{room}/join", headers=bob.auth)
    assert r.status_code == 403 and r.json()["error"]["code"] == "room_locked"
    async with join(server.url, room, alice.token) as (a, wa):
        assert wa["role"] == "host" and wa["room"]["locked"] is True
        await a.assert_idle()


async def test_full_room(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    code = await make_room(client, alice, max_participants=2)
    url = server.url
    async with join(url, code, alice.token) as (a, _):
        async with join(url, code, bob.token) as (b, _wb):
            await a.expect("peer-joined")
            async with connect(room_ws_url(url, code), carol.token) as ws:
                frames, close = await ws.frames_then_close()
                assert [f["code"] for f in frames] == ["room_full"] and close == 4403
            await a.assert_idle()
            await b.assert_idle()
        await a.expect("peer-left")
        async with join(url, code, carol.token) as (_, wc):  # a seat is free again
            assert len(wc["peers"]) == 1


async def test_unknown_room(server: RunningServer, alice: User) -> None:
    async with connect(room_ws_url(server.url, "zzz-zzzz-zzz"), alice.token) as ws:
        frames, code = await ws.frames_then_close()
    assert [f["code"] for f in frames] == ["room_not_found"] and code == 4404


# -- slow and silent clients --------------------------------------------------------------


@settings(send_queue=8, message_burst=1000, message_rate=1000)
async def test_slow_reader_is_dropped(server: RunningServer, alice: User, bob: User, carol: User, room: str) -> None:
    url = server.url
    async with join(url, room, alice.token) as (a, _), join(url, room, bob.token) as (b, _wb):
        await a.expect("peer-joined")
        slow = RawSlowClient()
        try:
            await slow.open(room_ws_url(url, room), carol.token)
            slow_id = (await a.expect("peer-joined"))["peer"]["peer_id"]
            await b.expect("peer-joined")
            blob = "x" * (60 * 1000)
            seen: list[dict[str, Any]] = []
            with trio.fail_after(20):
                # ~9 MB for a client that reads nothing; in batches of five, each closed by a
                # ping, so bob's own replies (unknown_peer once the slow peer is gone) stay
                # within *his* small queue and strike count
                for _ in range(30):
                    for _ in range(5):
                        await b.send({"type": "signal", "to": slow_id, "data": {"blob": blob}})
                    await b.send({"type": "ping"})
                    while (frame := await b.recv(timeout=15))["type"] != "pong":
                        seen.append(frame)
                assert {"type": "peer-left", "peer_id": slow_id} in seen
                assert all(f["type"] == "error" and f["code"] == "unknown_peer" for f in seen if f["type"] != "peer-left")
                assert await a.recv(timeout=15) == {"type": "peer-left", "peer_id": slow_id}
        finally:
            slow.close()
        # the room keeps working for everyone else
        await a.send({"type": "chat", "text": "still fine"})
        assert (await b.until("chat"))["message"]["text"] == "still fine"
        assert (await a.until("chat"))["message"]["text"] == "still fine"
        await a.assert_idle()
        await b.assert_idle()


HEARTBEAT = {"ping_interval": 0.5, "idle_timeout": 3.0}


@settings(**HEARTBEAT)
async def test_heartbeat_drops_silent_clients(
    server: RunningServer, alice: User, bob: User, room: str
) -> None:
    """Only lower bounds on time and the order of events are asserted, so a loaded machine
    cannot fail it: the server runs in this trio run, on the same clock as the test, and the
    clients that answer have 2.5 s of slack per ping."""
    url = server.url
    async with join(url, room, alice.token) as (a, _):
        started = trio.current_time()
        async with join(url, room, bob.token, auto_pong=False) as (b, wb):
            await a.expect("peer-joined")
            frames, code = await b.frames_then_close(timeout=30)
            silent_for = trio.current_time() - started
            assert code == 4408
            assert frames and all(f == {"type": "ping"} for f in frames)
            assert silent_for >= HEARTBEAT["idle_timeout"]  # never dropped early
            assert await a.expect("peer-left") == {"type": "peer-left", "peer_id": wb["peer_id"]}
        # alice joined first and sends nothing but pongs (the helper answers pings): silent, she
        # would be gone by now; two more answered pings and a pong show she is still in
        await a.answered_pings(2, timeout=30)
        await a.assert_idle()


# -- stays (call history) -----------------------------------------------------------------


async def calls(client: httpx.AsyncClient, user: User) -> list[dict[str, Any]]:
    r = await client.get("/api/calls", headers=user.auth)
    assert r.status_code == 200, r.text
    return r.json()["calls"]  # type: ignore[no-any-return]


async def test_reconnect_within_grace_continues_the_stay(
    server: RunningServer, client: httpx.AsyncClient, clock: FakeClock, alice: User, bob: User, room: str
) -> None:
    url = server.url
    start = clock.now()
    async with join(url, room, alice.token) as (a, _):
        async with join(url, room, bob.token):
            await a.expect("peer-joined")
        await a.expect("peer-left")  # (the stay is closed before anyone reads peer-left)
        [stay] = await calls(client, bob)
        assert stay["left_at"] == start and stay["duration_s"] == 0

        clock.advance(10)
        async with join(url, room, bob.token):
            await a.expect("peer-joined")
            [stay] = await calls(client, bob)
            assert stay["left_at"] is None and stay["duration_s"] == 10
            clock.advance(5)
        await a.expect("peer-left")
        [stay] = await calls(client, bob)
        assert stay["joined_at"] == start and stay["left_at"] == start + 15 and stay["duration_s"] == 15

        clock.advance(40)  # beyond reconnect_grace (30 s): a new stay
        async with join(url, room, bob.token):
            await a.expect("peer-joined")
            clock.advance(3)
        await a.expect("peer-left")
        newer, older = await calls(client, bob)
        assert older["duration_s"] == 15
        assert newer["joined_at"] == start + 55 and newer["duration_s"] == 3
        assert newer["room"] == {"code": room, "title": "Standup", "hosted": False}


async def test_two_tabs_share_one_stay(
    server: RunningServer, client: httpx.AsyncClient, clock: FakeClock, alice: User, bob: User, room: str
) -> None:
    url = server.url
    start = clock.now()
    async with join(url, room, alice.token) as (a, _):
        async with join(url, room, bob.token) as (tab1, w1):
            await a.expect("peer-joined")
            clock.advance(7)
            async with join(url, room, bob.token) as (_, w2):
                assert w2["peer_id"] != w1["peer_id"]
                await a.expect("peer-joined")
                await tab1.expect("peer-joined")
                clock.advance(5)
            assert (await a.expect("peer-left"))["peer_id"] == w2["peer_id"]
            await tab1.expect("peer-left")
            [stay] = await calls(client, bob)
            assert stay["left_at"] is None  # one tab is still in the room
            clock.advance(8)
        await a.expect("peer-left")
        [stay] = await calls(client, bob)
        assert stay["joined_at"] == start and stay["left_at"] == start + 20 and stay["duration_s"] == 20


# -- shutdown and restart -----------------------------------------------------------------


async def test_shutdown_closes_sockets_with_1001_and_restart_keeps_everything(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    outbox = Outbox(config.outbox_dir)
    results: dict[str, Any] = {}

    async def stay_in_room(url: str, code: str, token: str, ready: trio.Event) -> None:
        async with join(url, code, token) as (ws, _):
            await ws.send({"type": "chat", "text": "before the restart"})
            await ws.until("chat")
            ready.set()
            results["room"] = await ws.frames_then_close(timeout=15)

    async def stay_online(url: str, token: str, ready: trio.Event) -> None:
        async with connect(url.replace("http://", "ws://") + "/api/ws", token) as ws:
            await ws.expect("presence")
            ready.set()
            results["user"] = await ws.frames_then_close(timeout=15)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery, open_server(config, clock=clock) as running:
            async with httpx.AsyncClient(base_url=running.url) as c:
                alice = await make_user(c, outbox, "alice")
                bob = await make_user(c, outbox, "bob")
                code = await make_room(c, alice)
            in_room, online = trio.Event(), trio.Event()
            nursery.start_soon(stay_in_room, running.url, code, bob.token, in_room)
            nursery.start_soon(stay_online, running.url, alice.token, online)
            await in_room.wait()
            await online.wait()
            clock.advance(12)
            # the server has stopped; the clients saw it go

    assert results["room"] == ([], 1001)
    frames, close_code = results["user"]
    assert close_code == 1001
    # Bob entering the meeting may reach Alice's roster as "in a meeting" (whichever came first).
    assert all(f["type"] == "online" and f["user"]["in_meeting"] for f in frames), frames

    clock.advance(100)
    async with open_server(config, clock=clock) as running, httpx.AsyncClient(base_url=running.url) as c:
        r = await c.get(f"/api/rooms/{code}", headers=alice.auth)
        assert r.status_code == 200 and r.json()["room"]["status"] == "open"
        assert r.json()["room"]["participants"] == []
        r = await c.get(f"/api/rooms/{code}/messages", headers=bob.auth)
        assert [m["text"] for m in r.json()["messages"]] == ["before the restart"]
        [stay] = await calls(c, bob)
        assert stay["left_at"] is not None and stay["duration_s"] == 12
        async with join(running.url, code, bob.token) as (_, welcome):
            assert [m["text"] for m in welcome["messages"]] == ["before the restart"]


async def test_shutdown_is_bounded_with_a_client_that_stopped_reading(tmp_path: Path, clock: FakeClock) -> None:
    """Hypercorn's socket writes are shielded; TCP_USER_TIMEOUT ([server] send_timeout) is what
    cuts a client that stopped reading, so shutdown cannot hang on it."""
    config = make_config(
        tmp_path,
        server={"send_timeout": 1.0, "graceful_timeout": 1.0},
        rooms={"send_queue": 8, "message_burst": 1000, "message_rate": 1000},
    )
    outbox = Outbox(config.outbox_dir)
    slow = RawSlowClient()
    try:
        with trio.fail_after(30):
            async with open_server(config, clock=clock) as running:
                async with httpx.AsyncClient(base_url=running.url) as c:
                    alice = await make_user(c, outbox, "alice")
                    bob = await make_user(c, outbox, "bob")
                    code = await make_room(c, alice)
                async with join(running.url, code, alice.token) as (a, _):
                    await slow.open(room_ws_url(running.url, code), bob.token)
                    slow_id = (await a.expect("peer-joined"))["peer"]["peer_id"]
                    blob = "x" * 60_000
                    seen: list[dict[str, Any]] = []
                    while {"type": "peer-left", "peer_id": slow_id} not in seen:
                        for _ in range(5):  # fill the slow client's buffers until it is dropped
                            await a.send({"type": "signal", "to": slow_id, "data": {"blob": blob}})
                        await a.send({"type": "ping"})
                        while (frame := await a.recv(timeout=15))["type"] != "pong":
                            seen.append(frame)
                # leaving the block shuts the server down while the slow socket is still open
    finally:
        slow.close()
