"""The relay (SFU) end to end: aiortc clients publishing through the real server and its worker.

Each test starts the real server with the relay enabled (``[rtc] relay``), so the server's
root nursery starts a real ``python -m meet.relay.worker`` process. The clients
(:mod:`relay_client`) join over the room WebSocket (trio), negotiate with the peer id
``"relay"`` following ``docs/protocol.md`` ("Relay negotiation contract"), publish synthetic
VP8 video and Opus audio with aiortc (on one asyncio loop in a thread) and count the video
frames they decode per m-line. Media only uses 127.0.0.1: the worker gets
``host_addresses = ["127.0.0.1"]``, the test process configures ``meet.relay.ice`` the same way,
so the tests also pass in a network namespace with nothing but loopback.

Waits are for frames (``trio.fail_after``); decoded frames, which trio is not told about, are
polled against a deadline.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import User, make_config, make_room
from relay_client import AsyncioThread, RelayClient, relay_client, until
from wsclient import connect, join, room_ws_url

from meet.config import Config
from meet.media import sending_media_sections
from meet.relay import ice
from meet.server import RunningServer
from meet.store import rooms as store_rooms

LOOPBACK = ["127.0.0.1"]
ALWAYS = {"relay": "always", "host_addresses": LOOPBACK, "mesh_limit": 4}
AUTO_2 = {"relay": "auto", "host_addresses": LOOPBACK, "mesh_limit": 2}
OFF_2 = {"relay": "off", "mesh_limit": 2}

NEGOTIATE = 20.0  # joining, ICE/DTLS and the first `tracks` (the first join waits for the worker)
DECODE = 20.0  # a keyframe forwarded and frames decoded
FRAMES = 10  # decoded frames that show a stream is flowing (video runs at 15 fps)


def rtc_settings(settings: dict[str, Any], name: str) -> Any:
    return pytest.mark.parametrize("rtc", [settings], ids=[name])


@pytest.fixture
def rtc() -> dict[str, Any]:
    """``[rtc]`` overrides; tests change it with :func:`rtc_settings`."""
    return ALWAYS


@pytest.fixture
def config(tmp_path: Path, rtc: dict[str, Any]) -> Config:
    return make_config(tmp_path, rtc=rtc)


@pytest.fixture
def aio() -> Iterator[AsyncioThread]:
    """The asyncio loop of the test's aiortc peers, with their ICE on loopback only."""
    ice.configure_ice(LOOPBACK, None)
    thread = AsyncioThread()
    try:
        yield thread
    finally:
        thread.close()
        ice.reset_ice()


class Clients:
    """Relay clients of one test, each in its own task, so they can leave in any order.

    Made by :func:`open_clients` in the test itself, not by a fixture: pytest-trio runs
    fixtures in their own tasks, and the clients' nurseries must close in the task that opened
    them. A client's loop failing (an assertion of the negotiation) fails the test.
    """

    def __init__(self, server: RunningServer, aio: AsyncioThread, nursery: trio.Nursery) -> None:
        self.server, self.aio, self.nursery = server, aio, nursery
        self.leaving: dict[str, tuple[trio.Event, trio.Event]] = {}
        self.shades = iter(range(0, 250, 60))

    async def join(self, code: str, user: User, name: str | None = None, **kw: Any) -> RelayClient:
        name = name or user.username
        leave, left = trio.Event(), trio.Event()

        async def hold(task_status: trio.TaskStatus[RelayClient] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                async with relay_client(
                    self.server.url, code, user.token, self.aio, name=name, shade=next(self.shades, 0), **kw
                ) as client:
                    task_status.started(client)
                    await leave.wait()
            finally:
                left.set()

        client: RelayClient = await self.nursery.start(hold)
        self.leaving[name] = (leave, left)
        return client

    async def leave(self, name: str) -> None:
        """Close the client's WebSocket and peer connection."""
        leave, left = self.leaving.pop(name)
        leave.set()
        with trio.fail_after(15):
            await left.wait()


@asynccontextmanager
async def open_clients(server: RunningServer, aio: AsyncioThread) -> AsyncIterator[Clients]:
    """The clients of a test; when the block ends they leave, and the server has seen it.

    The relay workers are running first, so that no test's timing includes a worker start.
    """
    bridge = server.services.rooms.media.relay
    workers = bridge.workers if bridge is not None else []
    with trio.fail_after(30):
        for worker in workers:
            await worker.ready.wait()
    async with trio.open_nursery() as nursery:
        clients = Clients(server, aio, nursery)
        try:
            yield clients
        finally:
            for leave, _ in clients.leaving.values():
                leave.set()
    # Before the server stops: every leave processed, every relay `close` answered.
    await until(
        lambda: not server.services.rooms.live and not any(w.pending for w in workers),
        10, "the server to process the leaves",
    )


async def see_each_other(group: list[RelayClient], timeout: float = NEGOTIATE) -> None:
    """Every client's ``tracks`` names exactly every other one, with audio and camera."""
    for client in group:
        others = {other.peer_id: ["audio", "camera"] for other in group if other is not client}
        await client.wait_for(
            lambda c=client, o=others: c.publishers() == o,  # type: ignore[misc]
            timeout, f"tracks of {sorted(others)}",
        )


async def all_decoding(group: list[RelayClient], frames: int = FRAMES, timeout: float = DECODE) -> None:
    """Every client decodes ``frames`` new video frames from each other client's camera."""
    pairs = [(c, o.peer_id) for c in group for o in group if o is not c]
    base = {(c.name, p): c.decoded(c.camera_mid(p)) for c, p in pairs}

    def done() -> bool:
        for c in group:  # fail at once, not at the deadline (a worker killed from outside, say)
            assert not c.closed, f"{c.name}: closed ({c.close_code}) while decoding; {c.describe()}"
        return all(c.decoded(c.camera_mid(p)) >= base[c.name, p] + frames for c, p in pairs)

    def state() -> str:
        counts = {f"{c.name}<-{p}": (base[c.name, p], c.decoded(c.camera_mid(p))) for c, p in pairs}
        details = "; ".join(f"{c.name} ({c.peer_id}): {c.describe()}" for c in group)
        return f"{frames} more frames on every camera: (before, now) {counts}; {details}"

    await until(done, timeout, state)


async def two_decoding(
    clients: Clients, client: httpx.AsyncClient, host: User, guest: User
) -> tuple[RelayClient, RelayClient]:
    """A room of ``host``'s with both in it, seeing and decoding each other."""
    code = await make_room(client, host)
    a, b = [await clients.join(code, user) for user in (host, guest)]
    await see_each_other([a, b])
    await all_decoding([a, b])
    return a, b


def tracks_without(client: RelayClient, since: int, gone: str) -> bool:
    """Since log index ``since``: a ``tracks`` not naming ``gone``."""
    return any(
        i >= since and gone not in {t["publisher"] for t in tracks.values()} for i, tracks in client.tracks_log
    )


def no_errors(group: list[RelayClient]) -> None:
    """No error frames, and the relay's descriptions came in order: its first one is the answer
    to the client's first offer, and no relay offer ever overtook an answer."""
    for client in group:
        assert client.frames_of("error") == [], (client.name, client.frames_of("error"))
        descriptions = [
            f["data"]["description"]["type"]
            for f in client.log
            if f["type"] == "signal" and f["from"] == "relay" and "description" in f["data"]
        ]
        assert descriptions[:1] in ([], ["answer"]), (client.name, descriptions)
        assert client.offers_before_answer == 0, client.describe()


# --- relay = "always" ----------------------------------------------------------------------------


async def test_three_publishers_receive_and_decode_each_other(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User, carol: User
) -> None:
    async with open_clients(server, aio) as clients:
        code = await make_room(client, alice)
        group = [await clients.join(code, user) for user in (alice, bob, carol)]
        for member in group:
            assert member.welcome["mode"] == "relay", member.welcome
        await see_each_other(group)
        for member in group:
            assert member.answers >= 1 or member.glares >= 1, member.describe()
            mids = [member.camera_mid(o.peer_id) for o in group if o is not member]
            assert None not in mids and len(set(mids)) == 2, member.tracks
        await all_decoding(group)
        await all_decoding(group)  # and they keep coming
        no_errors(group)


async def test_a_join_renegotiates_only_the_joiner_who_gets_fixed_slots(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User, carol: User
) -> None:
    async with open_clients(server, aio) as clients:
        a, b = await two_decoding(clients, client, alice, bob)
        marks = {x.name: x.mark() for x in (a, b)}
        c = await clients.join(a.welcome["room"]["code"], carol)
        await see_each_other([a, b, c])
        await all_decoding([a, b, c])
        for x in (a, b):  # carol moved into their empty slots: announced, not negotiated
            assert [i for i in x.relay_offers if i >= marks[x.name]] == [], x.describe()
        # carol: her first offer (microphone, camera) answered, then one relay offer adding
        # [rtc] audio_slots (3) + video_slots (9) receiving m-lines; `tracks` lists them all.
        assert len(c.relay_offers) == 1, c.describe()
        pc = c.media.pc
        assert pc is not None
        kinds = [t.kind for t in pc.getTransceivers()[2:] if t.mid is not None]
        assert (kinds.count("audio"), kinds.count("video")) == (3, 9), kinds
        slots = c.frames_of("tracks")[-1]["tracks"]
        assert len(slots) == 12 and sum(t["publisher"] is None for t in slots) == 12 - 4, slots
        assert all(t["source"] is None for t in slots if t["publisher"] is None)
        no_errors([a, b, c])


async def test_a_publisher_leaving_empties_its_slots_without_renegotiating(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User, carol: User
) -> None:
    async with open_clients(server, aio) as clients:
        code = await make_room(client, alice)
        a, b, c = [await clients.join(code, user) for user in (alice, bob, carol)]
        await see_each_other([a, b, c])
        await all_decoding([a, b, c])
        marks = {x.name: x.mark() for x in (a, b)}
        await clients.leave("carol")
        for x in (a, b):
            since = marks[x.name]
            await x.frame_after(since, "peer-left", lambda f: f["peer_id"] == c.peer_id)
            # carol's slots carry nothing from now on (`tracks` says so): nobody renegotiates.
            await x.wait_for(
                lambda x=x, since=since: tracks_without(x, since, c.peer_id),  # type: ignore[misc]
                NEGOTIATE, "tracks without carol",
            )
            assert c.peer_id not in x.publishers(), x.tracks
            assert x.publishers() == {({a, b} - {x}).pop().peer_id: ["audio", "camera"]}, x.tracks
        await all_decoding([a, b])
        assert [i for x in (a, b) for i in x.relay_offers if i >= min(marks.values())] == []
        no_errors([a, b])


async def test_the_dominant_speaker_reaches_everyone_and_the_welcome_of_late_joiners(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User, carol: User
) -> None:
    async with open_clients(server, aio) as clients:
        code = await make_room(client, alice)
        a = await clients.join(code, alice, loud=False)
        b = await clients.join(code, bob)  # the only one with a tone on its microphone
        for x in (a, b):
            await x.frame_after(0, "speaker", lambda f: f["peer_id"] == b.peer_id, timeout=NEGOTIATE)
        assert all(f["peer_id"] == b.peer_id for x in (a, b) for f in x.frames_of("speaker"))
        c = await clients.join(code, carol, loud=False)
        assert c.welcome["speaker"] == b.peer_id
        mark = a.mark()
        await clients.leave("bob")
        await a.frame_after(mark, "peer-left", lambda f: f["peer_id"] == b.peer_id)
        d = await clients.join(code, bob, name="bob again", loud=False)
        assert "speaker" not in d.welcome  # the speaker left, and nobody spoke since
        no_errors([a, c, d])


async def camera_shown_to(bridge: Any, subscriber: str, publisher: str) -> bool:
    """Whether the relay forwards ``publisher``'s camera to ``subscriber`` (a subscription, not paused)."""
    return await camera_paused_for(bridge, subscriber, publisher) is False


async def camera_paused_for(bridge: Any, subscriber: str, publisher: str) -> bool | None:
    """Whether the relay stopped ``publisher``'s camera for ``subscriber`` (None: no such subscription)."""
    for worker in await bridge.stats():
        for sub in worker.get("subscribers", []):
            if sub["peer"] != subscriber:
                continue
            for x in sub["subscriptions"]:
                if x["publisher"] == publisher and x["source"] == "camera":
                    return bool(x["paused"])
    return None


async def test_a_view_reaches_the_relay_and_bad_ones_are_refused(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User
) -> None:
    bridge = server.services.rooms.media.relay
    async with open_clients(server, aio) as clients:
        a, b = await two_decoding(clients, client, alice, bob)
        assert await camera_shown_to(bridge, a.peer_id, b.peer_id)

        async def shown_becomes(value: bool) -> None:
            with trio.fail_after(NEGOTIATE):
                while await camera_shown_to(bridge, a.peer_id, b.peer_id) is not value:
                    await trio.sleep(0.05)

        ghost = {"peer_id": "nobody-here", "source": "camera", "width": 640, "height": 360}
        await a.send({"type": "view", "tiles": [ghost]})  # someone not in the room: ignored
        await shown_becomes(False)  # and bob's camera, not listed, leaves its slot
        await a.wait_for(lambda: a.camera_mid(b.peer_id) is None, NEGOTIATE, "tracks without bob's camera")
        mine = {"peer_id": b.peer_id, "source": "camera", "width": 640, "height": 360}
        await a.send({"type": "view", "tiles": [mine]})
        await shown_becomes(True)
        await all_decoding([a])

        mark = a.mark()
        for bad in ({"tiles": "all"}, {"tiles": [{**mine, "source": "face"}]}, {"tiles": [{**mine, "width": -1}]}):
            await a.send({"type": "view", **bad})
        with trio.fail_after(10):
            while len(a.frames_of("error", since=mark)) < 3:
                await trio.sleep(0.05)
        errors = a.frames_of("error", since=mark)
        assert [e["code"] for e in errors] == ["invalid_message"] * 3, errors
        assert "tiles[0].source" in errors[1]["message"] and "tiles[0].width" in errors[2]["message"]
        assert await camera_shown_to(bridge, a.peer_id, b.peer_id)  # the last good view holds


async def test_a_room_over_two_workers_and_a_killed_worker_reconnects_only_its_participants(
    server: RunningServer, client: httpx.AsyncClient, aio: AsyncioThread, alice: User, bob: User
) -> None:
    bridge = server.services.rooms.media.relay
    assert bridge is not None and len(bridge.workers) >= 2, "one relay worker per core (this machine: 2)"
    async with open_clients(server, aio) as clients:
        # Each on its own worker: alice's packets reach bob through the pipe, and bob's her.
        a, b = await two_decoding(clients, client, alice, bob)
        code = a.welcome["room"]["code"]
        worker_a, worker_b = bridge.peers[code, a.peer_id], bridge.peers[code, b.peer_id]
        assert worker_a is not worker_b and bridge.holders[code] == [worker_a, worker_b]
        stats = await bridge.stats()
        assert [s["participants"] for s in stats] == [1, 1]
        assert all(s["piped"] > 0 for s in stats), "each worker pipes its publisher to the other"
        assert worker_a.process is not None
        old_pid = worker_a.process.pid
        mark = b.mark()
        os.kill(old_pid, signal.SIGKILL)
        assert await a.wait_closed(timeout=15) == 1012, a.describe()
        errors = a.frames_of("error")
        assert [e["code"] for e in errors] == ["relay_restart"], errors
        assert a.log[-1] == errors[-1], "relay_restart is the last frame before the close"
        await b.frame_after(mark, "peer-left", lambda f: f["peer_id"] == a.peer_id)
        await clients.leave("alice")
        # alice reconnects (a new peer, on a running worker); bob never had to.
        a2 = await clients.join(code, alice, name="alice-again")
        assert a2.welcome["mode"] == "relay", a2.welcome
        await see_each_other([a2, b])
        await all_decoding([a2, b])
        assert not b.closed and b.frames_of("error") == [], b.describe()
        assert worker_a.process is not None and worker_a.process.pid != old_pid
        no_errors([a2, b])


# --- relay = "auto" ------------------------------------------------------------------------------


@rtc_settings(AUTO_2, "auto-mesh_limit=2")
async def test_the_join_beyond_mesh_limit_switches_the_room_to_the_relay(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User, carol: User
) -> None:
    async with open_clients(server, aio) as clients:
        code = await make_room(client, alice)
        a = await clients.join(code, alice)
        b = await clients.join(code, bob)
        for x in (a, b):
            assert x.welcome["mode"] == "mesh", x.welcome
        await a.frame_after(0, "peer-joined", lambda f: f["peer"]["peer_id"] == b.peer_id)
        marks = {x.name: x.mark() for x in (a, b)}
        assert not a.frames_of("mode") and not b.frames_of("mode")
        c = await clients.join(code, carol)
        assert c.welcome["mode"] == "relay", c.welcome
        assert {p["peer_id"] for p in c.welcome["peers"]} == {a.peer_id, b.peer_id}
        for x in (a, b):
            frame = await x.frame_after(marks[x.name], "mode")
            assert frame == {"type": "mode", "mode": "relay"}
            joined = await x.frame_after(marks[x.name], "peer-joined")
            assert joined["peer"]["peer_id"] == c.peer_id
            assert x.log.index(frame) < x.log.index(joined), "the switch precedes the newcomer's announcement"
        await see_each_other([a, b, c])
        await all_decoding([a, b, c])
        for x in (a, b, c):
            assert len(x.frames_of("mode")) == (0 if x is c else 1)
        no_errors([a, b, c])


# --- relay = "off" -------------------------------------------------------------------------------


@rtc_settings(OFF_2, "off-mesh_limit=2")
async def test_without_the_relay_mesh_limit_caps_the_room(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    assert server.services.rooms.media.relay is None, "no relay worker when relay = off"
    code = await make_room(client, alice)
    async with join(server.url, code, alice.token) as (a, wa), join(server.url, code, bob.token) as (b, wb):
        assert wa["mode"] == wb["mode"] == "mesh"
        r = await client.post(f"/api/rooms/{code}/join", headers=carol.auth)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "room_full", r.text
        async with connect(room_ws_url(server.url, code), carol.token) as c:
            frames, close = await c.frames_then_close()
        assert [(f["type"], f.get("code")) for f in frames] == [("error", "room_full")], frames
        assert close == 4403
        await a.until("peer-joined")  # bob's; carol never appears
        await a.assert_idle()
        await b.assert_idle()


# --- bad relay signals ---------------------------------------------------------------------------


@rtc_settings(AUTO_2, "auto-mesh_limit=2")
async def test_bad_relay_signals_are_refused_and_the_connection_keeps_working(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User, carol: User
) -> None:
    async with open_clients(server, aio) as clients:
        code = await make_room(client, alice)
        a = await clients.join(code, alice, auto_start=False)
        assert a.welcome["mode"] == "mesh"

        async def refused(x: RelayClient, data: Any, code_: str) -> None:
            since = x.mark()
            await x.send({"type": "signal", "to": "relay", "data": data})
            pong = await x.ping()
            await x.wait_for(lambda: x.pongs >= pong, 10, "pong")
            errors = x.frames_of("error", since)
            assert [e["code"] for e in errors] == [code_], (data, x.log[since:])
            signals = x.frames_of("signal", since)
            answers = [f for f in signals if f["data"].get("description", {}).get("type") == "answer"]
            assert not answers, x.log[since:]

        # A mesh room has no relay to talk to.
        offer = {"description": {"type": "offer", "sdp": "v=0\r\n"}}
        await refused(a, offer, "unknown_peer")
        await refused(a, {"candidate": None}, "unknown_peer")
        # Crowd the room: it switches to the relay.
        b = await clients.join(code, bob)
        c = await clients.join(code, carol)
        await a.frame_after(0, "mode")
        assert c.welcome["mode"] == "relay"
        await refused(a, {"description": {"type": "offer", "sdp": 5}}, "invalid_message")
        await refused(a, {"description": {"type": "offer", "sdp": ""}}, "invalid_message")
        await refused(a, {"description": {"type": "pranswer", "sdp": "v=0\r\n"}}, "invalid_message")
        await refused(a, {"description": "offer"}, "invalid_message")
        await refused(a, {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}, "invalid_message")
        await refused(a, {"sdp": "v=0\r\n"}, "invalid_message")
        # Large SDP is allowed (relay rooms grow it), so a 200 KiB one reaches the relay, which
        # refuses this one (no ICE credentials); over the signal limit the frame itself is refused.
        big = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + "a=x-padding\r\n" * (200 * 1024 // 13)
        await refused(a, {"description": {"type": "offer", "sdp": big}}, "relay_error")
        await refused(a, {"description": {"type": "offer", "sdp": big * 3}}, "frame_too_large")
        # The connection still works: alice negotiates and everyone sees and decodes everyone.
        marks = {x.name: x.mark() for x in (a, b, c)}
        await a.start()
        await see_each_other([a, b, c])
        await all_decoding([a, b, c])
        for x in (a, b, c):
            assert x.frames_of("error", marks[x.name]) == [], x.name


# --- joining: the first offer, failed joins ------------------------------------------------------


async def test_the_relay_never_offers_before_the_first_offer_of_a_participant(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User
) -> None:
    """Bob is on the relay but has not offered yet when alice starts publishing: the relay must
    wait for bob's offer (the client offers first) rather than offer to him and collide."""
    code = await make_room(client, alice)
    bridge = server.services.rooms.media.relay
    assert bridge is not None
    async with open_clients(server, aio) as clients:
        b = await clients.join(code, bob, auto_start=False)
        a = await clients.join(code, alice)
        await until_stats(bridge, lambda s: s["publications"] == 2, "alice's two publications live")
        pong = await b.ping()  # the server handled everything before it: any offer would be here
        await b.wait_for(lambda: b.pongs >= pong, NEGOTIATE, "pong")
        assert [f for f in b.log if f["type"] == "signal"] == [], b.describe()
        await b.start()
        await see_each_other([a, b])
        await all_decoding([a, b])
        assert b.glares == 0 and b.answers >= 1, b.describe()
        no_errors([a, b])


async def test_a_join_that_fails_after_opening_on_the_relay_is_closed_there(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User
) -> None:
    """Bob is opened on the relay, then his join fails (the host ends the meeting meanwhile):
    his relay participant is closed and the room released, not leaked."""
    rooms = server.services.rooms
    bridge = rooms.media.relay
    assert bridge is not None
    code = await make_room(client, alice)
    holding, release = trio.Event(), trio.Event()
    stock_run = rooms.store.run

    async def run(fn: Any, *args: Any) -> Any:
        if fn is store_rooms.recent_messages:
            holding.set()
            with trio.move_on_after(NEGOTIATE):
                await release.wait()
        return await stock_run(fn, *args)

    rooms.store.run = run  # type: ignore[method-assign]
    async with open_clients(server, aio), connect(room_ws_url(server.url, code), bob.token) as ws:
        with trio.fail_after(NEGOTIATE):
            await holding.wait()  # bob is opened on the relay; his welcome is not sent yet
        assert (await relay_totals(bridge))["participants"] == 1
        r = await client.post(f"/api/rooms/{code}/end", headers=alice.auth)
        assert r.status_code == 200, r.text
        release.set()
        error = await ws.expect("error", timeout=NEGOTIATE)
        assert error["code"] == "room_ended", error
        await until_stats(bridge, lambda s: s["participants"] == 0, "bob closed on the relay")
        assert bridge.placement == {}


async def relay_totals(bridge: Any) -> dict[str, int]:
    """Participants and publications over every worker (one per core unless a test says)."""
    stats = await bridge.stats()
    return {key: sum(s[key] for s in stats) for key in ("participants", "publications")}


async def until_stats(bridge: Any, check: Any, what: str) -> None:
    """Wait until the totals over the workers' stats satisfy ``check``."""
    try:
        with trio.fail_after(NEGOTIATE):
            while not check(await relay_totals(bridge)):
                await trio.sleep(0.05)
    except trio.TooSlowError:
        raise AssertionError(f"no {what} within {NEGOTIATE} s: {await bridge.stats()}") from None


@rtc_settings(AUTO_2, "auto-mesh_limit=2")
async def test_a_peer_joining_while_the_room_switches_is_opened_on_the_relay(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User, carol: User
) -> None:
    """Bob's join decides "mesh" and is still on its way (held at its chat history read) when
    carol's join switches the room: bob's welcome says "relay", so he must be on the relay too."""
    rooms = server.services.rooms
    code = await make_room(client, alice)
    holding, release = trio.Event(), trio.Event()
    hold_join = False
    stock_run = rooms.store.run

    async def run(fn: Any, *args: Any) -> Any:
        if hold_join and fn is store_rooms.recent_messages:
            holding.set()
            with trio.move_on_after(NEGOTIATE):
                await release.wait()
        return await stock_run(fn, *args)

    rooms.store.run = run  # type: ignore[method-assign]
    async with open_clients(server, aio) as clients, trio.open_nursery() as nursery:
        a = await clients.join(code, alice)
        assert a.welcome["mode"] == "mesh"
        joined: list[RelayClient] = []

        async def join_bob() -> None:
            joined.append(await clients.join(code, bob))

        hold_join = True
        nursery.start_soon(join_bob)
        with trio.fail_after(NEGOTIATE):
            await holding.wait()
        hold_join = False
        c = await clients.join(code, carol)  # the third: the room switches
        assert c.welcome["mode"] == "relay"
        await a.frame_after(0, "mode")
        release.set()
        await until(lambda: bool(joined), NEGOTIATE, "bob's welcome")
        b = joined[0]
        assert b.welcome["mode"] == "relay", b.welcome
        await see_each_other([a, b, c])
        await all_decoding([a, b, c])
        no_errors([a, b, c])


# --- limits: publications per participant, offers per second ------------------------------------

LIMITS = {**ALWAYS, "max_publications": 2, "offer_rate": 0.05, "offer_burst": 4}


def offer_sdp(*directions: str) -> str:
    """An offer with one audio/video m-line per direction (only counted, never applied)."""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    for index, direction in enumerate(directions):
        kind = "audio" if index % 2 == 0 else "video"
        lines += [f"m={kind} 9 UDP/TLS/RTP/SAVPF 96", f"a=mid:{index}", f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"


async def refusals(x: RelayClient, sdps: list[str]) -> list[str]:
    """Send each SDP as an offer to the relay; the ``error`` codes that came back, in order."""
    since = x.mark()
    for sdp in sdps:
        await x.send({"type": "signal", "to": "relay", "data": {"description": {"type": "offer", "sdp": sdp}}})
    pong = await x.ping()  # everything sent before it was handled: its replies are in
    await x.wait_for(lambda: x.pongs >= pong, NEGOTIATE, "pong")
    answers = [f for f in x.frames_of("signal", since) if "answer" in str(f["data"])]
    assert not answers, x.log[since:]
    return [e["code"] for e in x.frames_of("error", since)]


def test_sending_media_sections_counts_what_an_offer_publishes() -> None:
    assert sending_media_sections(offer_sdp("sendrecv", "sendonly", "recvonly", "inactive")) == 2
    disabled = offer_sdp("sendonly").replace("m=audio 9", "m=audio 0")
    assert sending_media_sections(disabled) == 0
    assert sending_media_sections(disabled + "a=bundle-only\r\n") == 1
    no_direction = "v=0\r\ns=-\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=application 9 x\r\n"
    assert sending_media_sections(no_direction) == 1  # the session's direction applies


@rtc_settings(LIMITS, "always-limits")
async def test_an_offer_over_the_publication_cap_is_refused_and_the_connection_keeps_working(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User
) -> None:
    bridge = server.services.rooms.media.relay
    async with open_clients(server, aio) as clients:
        a, b = await two_decoding(clients, client, alice, bob)
        await until_stats(bridge, lambda s: s["publications"] == 4, "both publishing")
        # Three sending m-lines (two are allowed): refused by the server, never seen by the relay.
        assert await refusals(a, [offer_sdp("sendrecv", "sendonly", "sendrecv", "recvonly")]) == [
            "too_many_publications"
        ]
        stats = await relay_totals(bridge)
        assert stats == {"publications": 4, "participants": 2}, stats
        # alice's negotiated connection is untouched: both still see and decode each other.
        await all_decoding([a, b])
        assert a.publishers() == {b.peer_id: ["audio", "camera"]}
        assert b.frames_of("error") == []


@rtc_settings(LIMITS, "always-limits")
async def test_offers_beyond_the_burst_are_refused_before_the_relay(
    client: httpx.AsyncClient, server: RunningServer, aio: AsyncioThread, alice: User, bob: User, carol: User
) -> None:
    async with open_clients(server, aio) as clients:
        code = await make_room(client, alice)
        a, b = [await clients.join(code, user) for user in (alice, bob)]
        await see_each_other([a, b])
        c = await clients.join(code, carol, auto_start=False)  # on the relay, not negotiating
        # offer_burst = 4 (and 0.05 per second): four reach the relay (which refuses this SDP
        # with relay_error), the rest are refused by the server without reaching it.
        codes = await refusals(c, [offer_sdp("sendrecv")] * 7)
        assert codes == ["relay_error"] * 4 + ["rate_limited"] * 3, codes
        assert "offers" in c.frames_of("error")[-1]["message"]
        # The room is fine: alice and bob keep decoding each other, with no error.
        await all_decoding([a, b])
        no_errors([a, b])
