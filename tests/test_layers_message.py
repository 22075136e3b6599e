"""The relay's ``layers`` event reaches its publisher as a ``layers`` message (dynacast).

The relay decides which simulcast encodings of a publication anybody uses and tells the server
(``{"event": "layers", "room", "peer", "source", "rids"}``); the server passes it to that
publisher's room WebSocket only (docs/protocol.md, ``layers``). The events are injected where the
relay bridge delivers them (``Rooms.relay_event``) into a live room of the real server with its
real relay worker; the participants are plain WebSocket clients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import User, make_config, make_room
from wsclient import join

from meet import protocol as p
from meet.config import Config
from meet.relay.bridge import RelayBridge
from meet.server import RunningServer

ALWAYS = {"relay": "always", "host_addresses": ["127.0.0.1"], "mesh_limit": 4}


def test_layers_message_serializes() -> None:
    assert p.Layers(source="camera", rids=["l", "m"]).to_json() == {
        "type": "layers", "source": "camera", "rids": ["l", "m"],
    }
    assert p.Layers(source="camera", rids=[]).to_json() == {"type": "layers", "source": "camera", "rids": []}
    assert p.Layers in p.SERVER_MESSAGES


def event(code: str, peer: str, **fields: Any) -> dict[str, Any]:
    return {"event": "layers", "room": code, "peer": peer, **fields}


async def ready_workers(server: RunningServer) -> None:
    bridge = server.services.rooms.media.relay
    assert isinstance(bridge, RelayBridge)
    with trio.fail_after(30):
        for worker in bridge.workers:
            await worker.ready.wait()


@pytest.fixture
def rtc() -> dict[str, Any]:
    """``[rtc]`` overrides: the relay for every room unless a test says otherwise."""
    return ALWAYS


@pytest.fixture
def config(tmp_path: Path, rtc: dict[str, Any]) -> Config:
    return make_config(tmp_path, rtc=rtc)


async def test_layers_go_to_the_publisher_only_and_malformed_events_are_dropped(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    await ready_workers(server)
    code = await make_room(client, alice)
    rooms = server.services.rooms
    async with join(server.url, code, alice.token) as (a, a_welcome), join(server.url, code, bob.token) as (b, _):
        assert a_welcome["mode"] == "relay"
        await a.until("peer-joined")
        alice_id = a_welcome["peer_id"]
        await rooms.relay_event(event(code, alice_id, source="camera", rids=["l", "m"]))
        assert await a.recv() == {"type": "layers", "source": "camera", "rids": ["l", "m"]}
        await b.assert_idle()  # nobody else hears of it
        malformed: list[dict[str, Any]] = [
            event(code, alice_id, source="camera"),  # no rids
            event(code, alice_id, source="camera", rids="l"),
            event(code, alice_id, source="camera", rids=["l", 3]),
            event(code, alice_id, source="camera", rids=["l", "l"]),
            event(code, alice_id, source="camera", rids=["l m"]),
            event(code, alice_id, source="camera", rids=["x" * 17]),
            event(code, alice_id, source="camera", rids=[str(i) for i in range(9)]),
            event(code, alice_id, source="audio", rids=["l"]),
            event(code, alice_id, rids=["l"]),
            event(code, "nobody", source="camera", rids=["l"]),
            event("no-such-room", alice_id, source="camera", rids=["l"]),
        ]
        for bad in malformed:
            await rooms.relay_event(bad)
        await a.assert_idle()
        await b.assert_idle()
        await rooms.relay_event(event(code, alice_id, source="camera", rids=[]))
        assert await a.recv() == {"type": "layers", "source": "camera", "rids": []}
        await b.assert_idle()


@pytest.mark.parametrize("rtc", [{"relay": "off", "mesh_limit": 16}], ids=["mesh"])
async def test_layers_are_dropped_outside_relay_mode(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    code = await make_room(client, alice)
    async with join(server.url, code, alice.token) as (a, welcome), join(server.url, code, bob.token) as (b, _):
        assert welcome["mode"] == "mesh"
        await a.until("peer-joined")
        await server.services.rooms.relay_event(event(code, welcome["peer_id"], source="camera", rids=["l"]))
        await a.assert_idle()
        await b.assert_idle()

