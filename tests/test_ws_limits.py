"""Resource bounds of WebSockets: connections per user and per address, and a send queue
bounded by bytes (a slow reader of big ``signal`` frames is dropped before it pins memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import Outbox, User, make_config, make_room, make_user
from wsclient import RawSlowClient, connect, join, room_ws_url, user_ws_url

from meet.config import Config
from meet.server import RunningServer


@pytest.fixture
def rooms_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def config(tmp_path: Path, rooms_settings: dict[str, Any]) -> Config:
    # send_timeout: only the send queue, not TCP_USER_TIMEOUT, may cut the slow reader here
    return make_config(tmp_path, rooms=rooms_settings, server={"send_timeout": 120.0, "graceful_timeout": 1.0})


def settings(**rooms: Any) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("rooms_settings", [rooms], ids=["-".join(f"{k}={v}" for k, v in rooms.items())])


async def refused_too_many(url: str, token: str) -> None:
    async with connect(url, token) as ws:
        frames, code = await ws.frames_then_close()
    assert code == 4429, (code, frames)
    assert [f["code"] for f in frames] == ["too_many_connections"] and frames[0]["message"], frames


@settings(max_connections_per_user=2)
async def test_connections_per_user_are_capped(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    room = await make_room(client, alice)
    async with connect(user_ws_url(server.url), alice.token) as one, join(server.url, room, alice.token):
        await one.expect("presence")
        await refused_too_many(user_ws_url(server.url), alice.token)  # presence and room sockets count
        await refused_too_many(room_ws_url(server.url, room), alice.token)
        async with connect(user_ws_url(server.url), bob.token) as b:  # others are not affected
            await b.expect("presence")
        assert (await one.until("offline"))["user_id"] == bob.id
        await one.assert_idle()
    # closed sockets free their places
    async with connect(user_ws_url(server.url), alice.token) as a1, connect(user_ws_url(server.url), alice.token) as a2:
        await a1.expect("presence")
        await a2.expect("presence")


@settings(max_connections_per_address=3)
async def test_connections_per_address_are_capped(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, alice: User, bob: User
) -> None:
    async with connect(user_ws_url(server.url), alice.token) as a1, connect(user_ws_url(server.url), alice.token) as a2:
        await a1.expect("presence")
        await a2.expect("presence")
        async with connect(user_ws_url(server.url), bob.token) as b:
            await b.expect("presence")
            await refused_too_many(user_ws_url(server.url), bob.token)  # a fourth from 127.0.0.1
            await b.assert_idle()
        carol = await make_user(client, outbox, "carol")
        async with connect(user_ws_url(server.url), carol.token) as c:  # a place was freed
            await c.expect("presence")


@settings(send_queue=100_000, send_queue_bytes=1024 * 1024, message_burst=1000, message_rate=1000)
async def test_send_queue_is_bounded_by_bytes(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    """400 KB signal frames to a client that reads nothing: with a 100 000-frame count bound
    only the 1 MiB byte bound can drop it (before: ~40 MB sent and it was still in)."""
    room = await make_room(client, alice)
    async with join(server.url, room, alice.token) as (a, _):
        slow = RawSlowClient()
        try:
            await slow.open(room_ws_url(server.url, room), bob.token)
            slow_id = (await a.expect("peer-joined"))["peer"]["peer_id"]
            blob = "x" * 400_000
            seen: list[dict[str, Any]] = []
            with trio.fail_after(30):
                for _ in range(100):  # 40 MB at most, far past the kernel's socket buffers
                    await a.send({"type": "signal", "to": slow_id, "data": {"blob": blob}})
                    await a.send({"type": "ping"})
                    while (frame := await a.recv(timeout=15))["type"] != "pong":
                        seen.append(frame)
                    if {"type": "peer-left", "peer_id": slow_id} in seen:
                        break
            assert {"type": "peer-left", "peer_id": slow_id} in seen
        finally:
            slow.close()
        await a.assert_idle()
