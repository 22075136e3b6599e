"""The user channel (``GET /api/ws``): who is online, and ringing people into a meeting.

Waiting is for frames only; "nothing else arrives" is the ping→pong ordering trick
(:meth:`WS.assert_idle`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import User, make_config, make_room
from wsclient import WS, connect, join, user_ws_url

from meet import wire
from meet.config import Config
from meet.connection import Connection, UserRef
from meet.presence import Presence
from meet.server import RunningServer


@pytest.fixture
def rooms_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def config(tmp_path: Path, rooms_settings: dict[str, Any]) -> Config:
    return make_config(tmp_path, rooms=rooms_settings, auth={"mail_max_per_window": 50})


@pytest.fixture
async def room(client: httpx.AsyncClient, alice: User) -> str:
    return await make_room(client, alice)


def public(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username}


def entry(user: User, in_meeting: bool = False) -> dict[str, Any]:
    """A roster entry (``presence``, ``online``)."""
    return {**public(user), "in_meeting": in_meeting}


@asynccontextmanager
async def online(server: RunningServer, user: User) -> AsyncIterator[tuple[WS, list[dict[str, Any]]]]:
    """A user channel and the roster it was greeted with."""
    async with connect(user_ws_url(server.url), user.token) as ws:
        roster = await ws.expect("presence")
        assert set(roster) == {"type", "online"}
        yield ws, roster["online"]


async def ring(caller: WS, callee: User, code: str) -> str:
    await caller.send({"type": "ring", "user_id": callee.id, "room": code})
    ringing = await caller.expect("ringing")
    assert set(ringing) == {"type", "ring_id", "user_id", "room"}
    assert ringing["user_id"] == callee.id and ringing["room"] == code
    return ringing["ring_id"]  # type: ignore[no-any-return]


async def incoming(ws: WS, ring_id: str, caller: User, code: str) -> None:
    call = await ws.expect("incoming-call")
    assert set(call) == {"type", "ring_id", "from", "room"}
    assert call["ring_id"] == ring_id and call["from"] == public(caller)
    assert call["room"]["code"] == code and call["room"]["title"] == "Standup"
    assert call["room"]["host"] == {"id": call["from"]["id"], "username": "alice"}


# -- presence -----------------------------------------------------------------------------


async def test_roster_and_online_offline(server: RunningServer, alice: User, bob: User, carol: User) -> None:
    async with online(server, alice) as (a, roster):
        assert roster == []
        async with online(server, bob) as (b1, roster):
            assert roster == [entry(alice)]
            assert await a.recv() == {"type": "online", "user": entry(bob)}
            async with online(server, bob) as (b2, roster):  # a second tab: nobody is told again
                assert roster == [entry(alice)]  # others only, as for the first tab
                await a.assert_idle()
                await b1.assert_idle()
                async with online(server, carol) as (_, roster):
                    assert sorted(u["id"] for u in roster) == sorted([alice.id, bob.id])
                    for ws in (a, b1, b2):
                        assert await ws.recv() == {"type": "online", "user": entry(carol)}
                for ws in (a, b1, b2):
                    assert await ws.recv() == {"type": "offline", "user_id": carol.id}
            # one of bob's tabs closed: he is still online
            await a.assert_idle()
        assert await a.recv() == {"type": "offline", "user_id": bob.id}
        await a.assert_idle()


async def test_people_in_a_meeting_are_online_in_a_meeting(
    server: RunningServer, alice: User, bob: User, carol: User, room: str
) -> None:
    async with online(server, alice) as (a, roster):
        assert roster == []
        # Bob joins a meeting without a user channel of his own: he is listed, in a meeting.
        async with join(server.url, room, bob.token) as (tab1, _):
            assert await a.recv() == {"type": "online", "user": entry(bob, in_meeting=True)}
            async with online(server, carol) as (c, roster):
                assert roster == [entry(alice), entry(bob, in_meeting=True)]
                assert await a.recv() == {"type": "online", "user": entry(carol)}
                async with join(server.url, room, bob.token):  # a second tab: nothing new to say
                    await tab1.expect("peer-joined")
                await a.assert_idle()
                # Bob opens the dashboard too: already listed, so nobody is told again ...
                async with online(server, bob) as (_, roster):
                    assert roster == [entry(alice), entry(carol)]
                    await a.assert_idle()
                # ... and closing it leaves him listed: he is still in the meeting.
                await a.assert_idle()
                # Alice joins the meeting herself: her watchers see her entry change.
                async with join(server.url, room, alice.token):
                    assert await c.recv() == {"type": "online", "user": entry(alice, in_meeting=True)}
                assert await c.recv() == {"type": "online", "user": entry(alice)}
                await a.assert_idle()  # nobody is told about themselves
            assert await a.recv() == {"type": "offline", "user_id": carol.id}
        # Bob's last meeting connection closed and he has no user channel: offline.
        assert await a.recv() == {"type": "offline", "user_id": bob.id}


async def test_leaving_the_meeting_with_a_user_channel_open_stays_online(
    server: RunningServer, alice: User, bob: User, room: str
) -> None:
    async with online(server, alice) as (a, _), online(server, bob) as (b, _):
        assert await a.recv() == {"type": "online", "user": entry(bob)}
        async with join(server.url, room, bob.token):
            assert await a.recv() == {"type": "online", "user": entry(bob, in_meeting=True)}
        assert await a.recv() == {"type": "online", "user": entry(bob)}
        await a.assert_idle()
        await b.assert_idle()


# -- ringing ------------------------------------------------------------------------------


@pytest.mark.parametrize("accepted", [True, False])
async def test_answer_reaches_the_caller_and_closes_other_prompts(
    server: RunningServer, alice: User, bob: User, room: str, accepted: bool
) -> None:
    async with online(server, alice) as (a, _), online(server, bob) as (b1, _):
        await a.expect("online")
        async with online(server, bob) as (b2, _):
            ring_id = await ring(a, bob, room)
            await incoming(b1, ring_id, alice, room)
            await incoming(b2, ring_id, alice, room)
            await b1.send({"type": "ring-answer", "ring_id": ring_id, "accepted": accepted})
            assert await a.recv() == {
                "type": "ring-answer", "ring_id": ring_id, "accepted": accepted, "user_id": bob.id,
            }
            assert await b2.recv() == {"type": "ring-cancel", "ring_id": ring_id}
            for ws in (a, b1, b2):
                await ws.assert_idle()
            # the ring is settled: a second answer (from either tab) finds nothing
            await b2.send({"type": "ring-answer", "ring_id": ring_id, "accepted": True})
            await b2.expect_error("unknown_ring")
            await a.assert_idle()


@pytest.mark.parametrize("rooms_settings", [{"ring_timeout": 0.3}])
async def test_unanswered_ring_times_out(server: RunningServer, alice: User, bob: User, room: str) -> None:
    async with online(server, alice) as (a, _), online(server, bob) as (b, _):
        await a.expect("online")
        ring_id = await ring(a, bob, room)
        await incoming(b, ring_id, alice, room)
        timeout = {"type": "ring-timeout", "ring_id": ring_id, "user_id": bob.id}
        assert await a.recv() == timeout
        assert await b.recv() == timeout
        await b.send({"type": "ring-answer", "ring_id": ring_id, "accepted": True})
        await b.expect_error("unknown_ring")
        await a.assert_idle()


async def test_ringing_someone_offline_or_unknown(server: RunningServer, alice: User, bob: User, room: str) -> None:
    async with online(server, alice) as (a, _):
        for user_id in (bob.id, 999_999):
            await a.send({"type": "ring", "user_id": user_id, "room": room})
            await a.expect_error("user_offline")
        await a.assert_idle()


async def test_ringing_yourself_is_refused(server: RunningServer, alice: User, room: str) -> None:
    async with online(server, alice) as (a, _), online(server, alice) as (a2, _):
        await a.send({"type": "ring", "user_id": alice.id, "room": room})
        await a.expect_error("invalid_message")
        await a2.assert_idle()


async def test_ringing_into_unknown_or_ended_room(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, room: str
) -> None:
    async with online(server, alice) as (a, _), online(server, bob) as (b, _):
        await a.expect("online")
        await a.send({"type": "ring", "user_id": bob.id, "room": "zzz-zzzz-zzz"})
        await a.expect_error("room_not_found")
        r = await client.post(f"/api/rooms/{room}/end", headers=alice.auth)
        assert r.status_code == 200
        await a.send({"type": "ring", "user_id": bob.id, "room": room})
        await a.expect_error("room_ended")
        await b.assert_idle()


async def test_only_the_callee_can_answer(
    server: RunningServer, alice: User, bob: User, carol: User, room: str
) -> None:
    async with online(server, alice) as (a, _), online(server, bob) as (b, _):
        await a.expect("online")
        async with online(server, carol) as (c, _):
            await a.expect("online")
            await b.expect("online")
            ring_id = await ring(a, bob, room)
            await incoming(b, ring_id, alice, room)
            for ws in (c, a):  # a bystander, and the caller itself
                await ws.send({"type": "ring-answer", "ring_id": ring_id, "accepted": True})
                await ws.expect_error("unknown_ring")
            await c.send({"type": "ring-cancel", "ring_id": ring_id})  # nor cancel it
            await c.expect_error("unknown_ring")
            await b.assert_idle()
            await b.send({"type": "ring-answer", "ring_id": ring_id, "accepted": True})
            assert (await a.recv())["accepted"] is True


async def test_caller_cancels(server: RunningServer, alice: User, bob: User, room: str) -> None:
    async with online(server, alice) as (a, _), online(server, bob) as (b, _):
        await a.expect("online")
        ring_id = await ring(a, bob, room)
        await incoming(b, ring_id, alice, room)
        await a.send({"type": "ring-cancel", "ring_id": ring_id})
        assert await b.recv() == {"type": "ring-cancel", "ring_id": ring_id}
        await a.assert_idle()
        await b.send({"type": "ring-answer", "ring_id": ring_id, "accepted": True})
        await b.expect_error("unknown_ring")
        await a.send({"type": "ring-cancel", "ring_id": ring_id})
        await a.expect_error("unknown_ring")
        await a.assert_idle()


async def test_caller_disconnecting_withdraws_its_rings(
    server: RunningServer, alice: User, bob: User, room: str
) -> None:
    async with online(server, bob) as (b, _):
        async with online(server, alice) as (a, _):
            await b.expect("online")
            ring_id = await ring(a, bob, room)
            await incoming(b, ring_id, alice, room)
        frames = [await b.recv(), await b.recv()]
        assert {"type": "ring-cancel", "ring_id": ring_id} in frames
        assert {"type": "offline", "user_id": alice.id} in frames
        await b.assert_idle()
        await b.send({"type": "ring-answer", "ring_id": ring_id, "accepted": True})
        await b.expect_error("unknown_ring")


async def test_user_channel_refuses_room_messages_and_bad_frames(server: RunningServer, alice: User) -> None:
    async with online(server, alice) as (a, _):
        for raw, code in [
            ('{"type": "chat", "text": "hi"}', "unknown_type"),
            ('{"type": "ring", "user_id": "2", "room": "x"}', "invalid_message"),
            ('{"type": "ring", "user_id": true, "room": "x"}', "invalid_message"),
            ('{"type": "ring-answer", "ring_id": "x"}', "invalid_message"),
            ("{", "invalid_json"),
        ]:
            await a.send(raw)
            await a.expect_error(code)
        await a.assert_idle()


@pytest.mark.parametrize("rooms_settings", [{"ping_interval": 0.5, "idle_timeout": 3.0}])
async def test_silent_user_channel_is_dropped_and_goes_offline(server: RunningServer, alice: User, bob: User) -> None:
    """Lower bounds and ordering only (see test_signaling's heartbeat test): load cannot fail it."""
    async with online(server, alice) as (a, _):
        started = trio.current_time()
        async with connect(user_ws_url(server.url), bob.token, auto_pong=False) as b:
            assert (await b.expect("presence"))["online"] == [entry(alice)]
            assert await a.recv() == {"type": "online", "user": entry(bob)}
            frames, code = await b.frames_then_close(timeout=30)
            assert code == 4408 and frames and all(f == {"type": "ping"} for f in frames)
            assert trio.current_time() - started >= 3.0  # not before idle_timeout
            assert await a.recv(timeout=30) == {"type": "offline", "user_id": bob.id}
        # alice came first and only answers pings: silent, she would be gone by now
        await a.answered_pings(2, timeout=30)
        await a.assert_idle()


# -- the meeting roster without a server: name look-ups racing with leaving ----------------


def frames(conn: Connection) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            out.extend(json.loads(text) for text in wire.payloads(conn.frames_out.receive_nowait()))
        except trio.WouldBlock:
            return out


async def test_meeting_roster_waits_for_the_name_and_forgets_who_left_meanwhile() -> None:
    asked: list[int] = []
    answers: dict[int, trio.Event] = {}
    names = {2: "bob", 3: "carol"}

    async def look_up(user_id: int) -> str | None:
        asked.append(user_id)
        answers[user_id] = trio.Event()
        await answers[user_id].wait()
        return names.get(user_id)

    presence = Presence(30.0, names=look_up)
    watcher = Connection(UserRef(1, "alice"), 64)
    async with trio.open_nursery() as nursery:
        await nursery.start(presence.run)
        presence.connect(watcher)
        assert frames(watcher) == [{"type": "presence", "online": []}]

        presence.meeting_changed(2, True)  # bob: listed once his name is known
        presence.meeting_changed(3, True)  # carol leaves before the look-up answers
        presence.meeting_changed(3, False)
        presence.meeting_changed(4, True)  # a user deleted meanwhile: no name
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(asked) == [2, 3, 4] and frames(watcher) == []
        for event in answers.values():
            event.set()
        await trio.testing.wait_all_tasks_blocked()
        assert frames(watcher) == [{"type": "online", "user": {"id": 2, "username": "bob", "in_meeting": True}}]
        assert presence.online() == [
            {"id": 1, "username": "alice", "in_meeting": False},
            {"id": 2, "username": "bob", "in_meeting": True},
        ]
        presence.meeting_changed(4, False)  # never listed: nothing to take back
        presence.meeting_changed(2, False)
        assert frames(watcher) == [{"type": "offline", "user_id": 2}]
        nursery.cancel_scope.cancel()
