"""Pipes between relay workers (meet/relay/pipe.py): two endpoints on loopback in one event loop.

A local publication's layers are piped to another endpoint, where a remote publication (as
``room.RemotePublisher`` builds it) receives the packets unchanged; its keyframe requests come
back to the local layer.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from meet.relay.pipe import PIPE_BUFFER, Endpoint, describe
from meet.relay.room import RemotePublisher
from meet.relay.source import Counters, Publication
from meet.relay.worker import Relay


class Collector:
    """A subscriber stand-in: records what a layer forwards."""

    def __init__(self) -> None:
        self.packets: list[tuple[int, int, int, bytes, int | None, bool]] = []
        self.arrived = asyncio.Event()

    def forward(
        self,
        seq: int,
        ts: int,
        marker: int,
        payload: bytes,
        level: int | None,
        keyframe: bool,
        abs3: bytes,
        now: float,
    ) -> None:
        self.packets.append((seq, ts, marker, payload, level, keyframe))
        self.arrived.set()

    def detach(self) -> None: ...

    def restart(self) -> None: ...


def test_a_piped_layer_arrives_unchanged_and_keyframe_requests_go_back() -> None:
    async def scenario() -> None:
        counters = Counters()
        here, there = Endpoint(counters), Endpoint(counters)
        here_address, there_address = await here.open(), await there.open()
        plis: list[int] = []
        local = Publication("alice", "video", lambda ssrc: plis.append(ssrc) is None, counters)
        local.set_rids(["q", "h", "f"])
        local.live, local.label = True, "camera"
        for index, layer in enumerate(local.layers):
            layer.on_rtp(1000 + index, 1, 0, 0, b"\x00warm-up", None)  # an SSRC, as after a real packet
        here.sync("room", [local], [there_address])
        remote = RemotePublisher("alice", here_address, there, counters)
        remote.update([describe(local, here.id_of(local))])
        (mirror,) = remote.publications()
        assert (mirror.kind, mirror.label, [layer.rid for layer in mirror.layers]) == (
            "video",
            "camera",
            ["q", "h", "f"],
        )
        collector = Collector()
        target = mirror.layer_for_rid("h")
        assert target is not None
        target.targets = [collector]
        keyframe = bytes([0x90, 0x80, 0x92, 0x34, 0x10, 0x00, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00])
        source = local.layer_for_rid("h")
        assert source is not None
        source.on_sender_report(0xE000000012345678, 89000)
        source.on_rtp(1001, 7, 90000, 1, keyframe, None)
        await asyncio.wait_for(collector.arrived.wait(), 5)
        assert collector.packets == [(7, 90000, 1, keyframe, None, True)]
        assert target.sr == source.sr, "the publisher's sender report comes along (lip sync)"
        assert target.size == source.size == (320, 240)
        target.request_keyframe()  # a subscriber there wants a keyframe of "h": alice is asked here
        for _ in range(100):
            if plis:
                break
            await asyncio.sleep(0.01)
        assert plis == [1001]
        here.sync("room", [], [])  # the room left: nothing more is piped
        assert all(not layer.targets for layer in local.layers)
        remote.close()
        assert not there.inbound and not mirror.live
        here.close()
        there.close()

    asyncio.run(scenario())


def test_datagrams_of_unknown_publications_and_garbage_are_dropped() -> None:
    async def scenario() -> None:
        endpoint = Endpoint(Counters())
        address = await endpoint.open()
        for junk in (b"", b"\x00", b"\x00" + bytes(20), b"\x01\x00", b"\x07junk"):
            endpoint.datagram_received(junk, address)
        endpoint.close()

    asyncio.run(scenario())


def test_the_pipe_socket_has_room_for_a_busy_rooms_bursts() -> None:
    """A datagram that finds the buffer full is lost between workers (nothing repairs it there)."""

    async def scenario() -> None:
        endpoint = Endpoint(Counters())
        await endpoint.open()
        assert endpoint.transport is not None
        sock = endpoint.transport.get_extra_info("socket")
        # The kernel doubles what it is given; an unprivileged process gets at most the sysctl cap.
        for option, cap_file in ((socket.SO_RCVBUF, "rmem_max"), (socket.SO_SNDBUF, "wmem_max")):
            cap = int(Path(f"/proc/sys/net/core/{cap_file}").read_text())
            expected = PIPE_BUFFER if os.geteuid() == 0 else min(PIPE_BUFFER, cap)
            assert sock.getsockopt(socket.SOL_SOCKET, option) >= expected
        endpoint.close()

    asyncio.run(scenario())


def test_a_reconnect_keeps_the_rooms_pipes() -> None:
    """``open`` of a peer already open replaces its connection; the room keeps piping to its other workers."""

    async def scenario() -> None:
        relay = Relay(on_event=lambda message: None)
        assert (await relay.handle({"id": 1, "op": "configure", "host_addresses": ["127.0.0.1"]}))["ok"]
        other = ["127.0.0.1", 9]
        for request in (
            {"op": "open", "room": "r", "peer": "a"},
            {"op": "pipe", "room": "r", "address": other},
            {"op": "open", "room": "r", "peer": "a"},  # a reconnect
        ):
            assert (await relay.handle({"id": 2, **request}))["ok"]
        assert relay.rooms["r"].destinations == {("127.0.0.1", 9)}
        await relay.close()

    asyncio.run(scenario())
