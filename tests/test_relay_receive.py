"""The relay's receive path (meet/relay/compat/receiving.py): RTP is handled in the socket callback.

Real aiortc peers publish through an in-process relay on loopback (as in test_relay_worker.py);
the stock aiortc/aioice methods the fast path replaces are wrapped at class level to count what
still reaches them on the relay's side.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import aioice.ice
import aiortc.rtcdtlstransport
import pytest
from relay_peers import ROOM, Hub, TestPeer, until
from simulcast_publisher import LAYERS, SimulcastPublisher

from meet.relay import compat, ice
from meet.relay.compat import receiving

LOOPBACK = ["127.0.0.1"]
Dtls = aiortc.rtcdtlstransport.RTCDtlsTransport


@pytest.fixture(autouse=True)
def _stock_ice() -> Iterator[None]:
    yield
    ice.reset_ice()


def relay_transports(hub: Hub, peer: str) -> list[Any]:
    """The relay-side DTLS transports of a participant (one with BUNDLE)."""
    participant = hub.relay.rooms[ROOM].participants[peer]
    return list(
        {id(t.receiver.transport): t.receiver.transport for t in participant.pc.getTransceivers()}.values()
    )


def test_incoming_rtp_skips_the_stun_parser_and_the_receive_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RTP datagram of a publisher reaches aioice's STUN parsing or aiortc's receive task."""
    stun_seen: Counter[tuple[int, bool]] = Counter()  # (protocol id, first byte > 3)
    stock_rtp: Counter[int] = Counter()  # id(dtls) -> packets through _handle_rtp_data
    stock_datagram = aioice.ice.StunProtocol.datagram_received
    stock_handle = Dtls._handle_rtp_data

    def datagram_received(self: Any, data: bytes, addr: Any) -> None:
        stun_seen[id(self), data[:1] > b"\x03"] += 1
        stock_datagram(self, data, addr)

    async def handle_rtp_data(self: Any, data: bytes, arrival_time_ms: int) -> None:
        stock_rtp[id(self)] += 1
        await stock_handle(self, data, arrival_time_ms)

    errors: list[dict[str, Any]] = []

    async def scenario(hub: Hub) -> None:
        # Wrapped once the relay is configured: its guard rightly refuses these stand-ins.
        monkeypatch.setattr(aioice.ice.StunProtocol, "datagram_received", datagram_received)
        monkeypatch.setattr(Dtls, "_handle_rtp_data", handle_rtp_data)
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        alice, bob = TestPeer(hub, "alice"), TestPeer(hub, "bob", audio=False, video=False, recvonly=(1, 1))
        await alice.join()
        await bob.join()
        await until(lambda: len(bob.tracks) == 2, 10, "bob's tracks")
        (camera,) = bob.mids_of("alice")
        await until(lambda: len(bob.frames.get(camera, [])) >= 10, 20, "10 frames decoded at bob")
        (dtls,) = relay_transports(hub, "alice")
        connection = dtls.transport._connection
        assert stock_rtp[id(dtls)] == 0, "RTP went through aiortc's queue and receive task"
        assert sum(stock_rtp.values()) > 0  # the test peers' stock path (the wrapper works)
        protocols = [p for p in connection._protocols if type(p) is aioice.ice.StunProtocol]
        assert protocols and not any(stun_seen[id(p), True] for p in protocols), "non-STUN parsed as STUN"
        assert all(p.transport.max_size == receiving.MAX_DATAGRAM for p in protocols)  # type: ignore[attr-defined]

        # Garbage that looks like SRTP, STUN and DTLS at the relay's socket: dropped, media goes on.
        address = protocols[0].transport.get_extra_info("sockname")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for first in (0x80, 0x90, 0x00, 0x01, 0x16):
                sock.sendto(bytes([first]) + bytes(range(1, 200)), address)
            sock.sendto(b"\x80", address)  # shorter than an RTP header
            sock.sendto(b"", address)  # stock aiortc's receive task dies on an empty datagram
        received = (await hub.stats())["packets_received"]
        frames = len(bob.frames[camera])
        await until(lambda: len(bob.frames[camera]) >= frames + 10, 20, "10 more frames after the garbage")
        assert (await hub.stats())["packets_received"] > received
        assert dtls.state == "connected"
        assert stock_rtp[id(dtls)] == 0
        assert not errors, errors

    run(scenario)


def test_reads_keep_every_udp_datagram_whole() -> None:
    """The smaller read buffer still takes the largest UDP payload in one piece, below mmap size."""
    assert receiving.MAX_DATAGRAM < 128 * 1024  # glibc's default mmap threshold
    sizes: list[int] = []

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            sizes.append(len(data))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        try:
            receiving.small_reads(transport)
            assert transport.max_size == receiving.MAX_DATAGRAM  # type: ignore[attr-defined]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                for size in (65507, 1200, 1):
                    sock.sendto(b"\x80" * size, transport.get_extra_info("sockname"))
            await until(lambda: len(sizes) == 3, 5, "three datagrams")
        finally:
            transport.close()

    asyncio.run(scenario())
    assert sizes == [65507, 1200, 1]


def _dtls_without(field: str) -> Callable[..., None]:
    stock = Dtls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        stock(self, *args, **kwargs)
        delattr(self, field)

    return init


async def _recv_next_elsewhere(self: Any) -> None:
    """A stand-in for a reworked ``_recv_next`` that no longer keeps the session there."""
    await self.transport._recv()


def _read_whatever_fits(self: Any) -> None:
    """A stand-in for an asyncio that sizes its datagram reads another way."""
    self._protocol.datagram_received(*self._sock.recvfrom(4096))


@pytest.mark.parametrize(
    "remove, named",
    [
        (lambda mp: mp.delattr(aiortc.rtcdtlstransport.RtpRouter, "route_rtp"), "RtpRouter.route_rtp"),
        (lambda mp: mp.delattr(aioice.ice.Connection, "data_received"), "Connection.data_received"),
        (
            lambda mp: mp.setattr(Dtls, "_recv_next", _recv_next_elsewhere),
            "RTCDtlsTransport._recv_next is missing or no longer uses _rx_srtp",
        ),
        (
            lambda mp: mp.setattr(Dtls, "__init__", _dtls_without("_rtp_header_extensions_map")),
            "RTCDtlsTransport instances lack _rtp_header_extensions_map",
        ),
        (
            lambda mp: mp.setattr(receiving.DATAGRAM_TRANSPORT, "_read_ready", _read_whatever_fits),
            "_SelectorDatagramTransport._read_ready is missing or no longer uses max_size",
        ),
    ],
    ids=["router", "connection", "recv-next", "dtls-field", "asyncio-max-size"],
)
def test_guard_names_the_receive_internals(
    monkeypatch: pytest.MonkeyPatch, remove: Callable[[pytest.MonkeyPatch], None], named: str
) -> None:
    remove(monkeypatch)
    with pytest.raises(compat.CompatibilityError, match=named.replace(".", r"\.")):
        compat.check()


def test_stats_count_each_received_layer() -> None:
    """``stats`` lists every received layer with its own packet count (bench/relay.py's accounting)."""

    async def scenario(hub: Hub) -> None:
        alice = SimulcastPublisher(hub, "alice")
        await alice.join()

        def camera(stats: dict[str, Any]) -> dict[str | None, int]:
            return {
                entry["rid"]: entry["packets"]
                for entry in stats["layers"]
                if entry["publisher"] == "alice" and entry["source"] == "camera"
            }

        first: dict[str | None, int] = {}

        async def counted() -> bool:
            first.update(camera(await hub.stats()))
            return all(first.get(rid, 0) >= 30 for rid, _w, _h in LAYERS)  # 1.5 s of each

        deadline = asyncio.get_running_loop().time() + 20
        while not await counted():
            assert asyncio.get_running_loop().time() < deadline, f"layers never all counted: {first}"
            await asyncio.sleep(0.05)
        stats = await hub.stats()
        assert set(first) == {rid for rid, _w, _h in LAYERS}
        audio = [e for e in stats["layers"] if e["publisher"] == "alice" and e["source"] == "audio"]
        assert [e["rid"] for e in audio] == [None] and audio[0]["packets"] > 0
        # every layer counts only its own packets: together they make packets_received
        assert sum(e["packets"] for e in stats["layers"]) == stats["packets_received"]
        # no layer is credited with another's packets: never more than its SSRC sent
        for rid, count in camera(stats).items():
            assert rid is not None and 30 <= count <= len(alice.layer(rid).sent)

    run(scenario)


def run(scenario: Callable[[Hub], Any], timeout: float = 60) -> None:
    async def main() -> None:
        hub = Hub()
        await hub.configure(LOOPBACK)
        try:
            await asyncio.wait_for(scenario(hub), timeout)
        finally:
            for peer in hub.peers.values():
                if isinstance(peer, SimulcastPublisher):
                    await peer.stop()
            await hub.close()

    asyncio.run(main())
