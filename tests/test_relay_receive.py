"""The relay's receive path (meet/relay/compat/receiving.py): RTP is handled in the socket callback.

Real aiortc peers publish through an in-process relay on loopback (as in test_relay_worker.py);
the stock aiortc/aioice methods the fast path replaces are wrapped at class level to count what
still reaches them on the relay's side.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import aioice.ice
import aiortc.rtcdtlstransport
import aiortc.rtp
import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from relay_peers import ROOM, Hub, alice_to_bob, run_hub, until
from simulcast_publisher import LAYERS, SimulcastPublisher

from meet.relay import compat, ice
from meet.relay.compat import receiving

LOOPBACK = ["127.0.0.1"]
Dtls = aiortc.rtcdtlstransport.RTCDtlsTransport
SELECTOR_TRANSPORT: Any = vars(asyncio.selector_events)["_SelectorTransport"]  # resume_reading's owner


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
        bob, camera = await alice_to_bob(hub)
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


def test_one_wake_up_reads_every_queued_datagram() -> None:
    """A burst already queued at the socket is delivered in one event-loop round, in order.

    Stock asyncio reads one datagram per round. Loopback delivers each ``sendto`` into the
    receive queue before it returns, so the whole burst is queued before the loop polls.
    """
    received: list[bytes] = []

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            received.append(data)

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        seen: list[int] = []
        try:
            await asyncio.sleep(0)  # connection_made and the stock reader's registration
            receiving.batch_reads(transport)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for burst in (5, receiving.BATCH + 3):
                    received.clear()
                    for n in range(burst):
                        sock.sendto(bytes([0x80, n]), transport.get_extra_info("sockname"))
                    for _ in range(100):  # event-loop rounds until the first datagram is read
                        await asyncio.sleep(0)
                        if received:
                            break
                    seen.append(len(received))
                    await asyncio.sleep(0)  # the rest of a burst longer than BATCH, next round
                    seen.append(len(received))
                    assert received == [bytes([0x80, n]) for n in range(burst)]
            transport.pause_reading()  # type: ignore[attr-defined]
            transport.resume_reading()  # type: ignore[attr-defined]  # registers the batching reader again, not the stock one
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                received.clear()
                for n in range(3):
                    sock.sendto(bytes([0x80, n]), transport.get_extra_info("sockname"))
                while not received:
                    await asyncio.sleep(0)
                seen.append(len(received))
        finally:
            transport.close()
        return seen

    assert asyncio.run(scenario()) == [5, 5, receiving.BATCH, receiving.BATCH + 3, 3]


URIS = {  # one-byte extension ids as configured below
    1: "urn:ietf:params:rtp-hdrext:sdes:mid",
    2: "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    3: "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    4: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    5: "urn:ietf:params:rtp-hdrext:toffset",
    6: "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    7: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
}


def _extensions_map(uris: dict[int, str]) -> aiortc.rtp.HeaderExtensionsMap:
    extensions_map = aiortc.rtp.HeaderExtensionsMap()
    headers = [RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in uris.items()]
    extensions_map.configure(RTCRtpParameters(headerExtensions=headers))
    return extensions_map


def _rtp(
    first: int, extension: bytes = b"", profile: int = 0xBEDE, tail: bytes = b"\x10vp8 payload"
) -> bytes:
    header = bytes([first, 0x80 | 96]) + (65535).to_bytes(2, "big") + (2**32 - 1).to_bytes(4, "big")
    header += (0x1234).to_bytes(4, "big")
    if first & 0x0F:
        header += b"".join((n + 1).to_bytes(4, "big") for n in range(first & 0x0F))  # CSRCs
    if first & 0x10:
        header += profile.to_bytes(2, "big") + (len(extension) // 4).to_bytes(2, "big") + extension
    return header + tail


def _one_byte(*elements: tuple[int, bytes]) -> bytes:
    data = b"".join(bytes([(x_id << 4) | (len(value) - 1)]) + value for x_id, value in elements)
    return data + b"\x00" * (-len(data) % 4)  # padding to 32-bit words


ALL_SEVEN = _one_byte(
    (1, b"0"),
    (2, b"h"),
    (3, b"q"),
    (4, b"\xab\xcd\xef"),
    (5, b"\xff\xff\xfb"),
    (6, b"\xaa"),
    (7, b"\xfd\xe8"),
)


@pytest.mark.parametrize(
    "data",
    [
        _rtp(0x80),  # no extension
        _rtp(0x90, ALL_SEVEN),  # every field aiortc knows, toffset negative (RFC 5450: 24 bits)
        _rtp(
            0x90, b"\x00\x00" + _one_byte((4, b"\x01\x02\x03"), (12, b"??"), (1, b"camera"))
        ),  # padding, unknown id
        _rtp(0x90, b""),  # an empty extension block
        _rtp(0xB0, ALL_SEVEN, tail=b"\x10vp8" + b"\x00\x00\x03"),  # RTP padding: stock parser
        _rtp(0x92, ALL_SEVEN),  # CSRCs: stock parser
        _rtp(0x90, b"\x01\x06camera\x00\x00\x00\x00", profile=0x1000),  # two-byte extensions: stock parser
    ],
    ids=["plain", "seven", "padding-unknown", "empty-block", "rtp-padding", "csrc", "two-byte"],
)
def test_parse_rtp_gives_what_aiortc_parses(data: bytes) -> None:
    extensions_map = _extensions_map(URIS)
    packet = receiving.parse_rtp(data, extensions_map)
    assert vars(packet) == vars(aiortc.rtp.RtpPacket.parse(data, extensions_map))
    assert type(packet) is aiortc.rtp.RtpPacket


def test_parse_rtp_follows_the_maps_ids() -> None:
    """Ids as negotiated (configure changes them in place); one id for two URIs: stock's choice."""
    data = _rtp(0x90, _one_byte((1, b"\x01\x02\x03"), (9, b"\x05\x06")))
    extensions_map = _extensions_map({1: URIS[4], 9: URIS[7]})
    assert receiving.parse_rtp(data, extensions_map).extensions.abs_send_time == 0x010203
    extensions_map.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=URIS[3])])
    )
    for parse in (receiving.parse_rtp, aiortc.rtp.RtpPacket.parse):
        assert parse(data, extensions_map).extensions.rtp_stream_id == "\x01\x02\x03"
    shared = _extensions_map({1: URIS[3], 2: URIS[1]})
    shared.configure(RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=URIS[1])]))
    assert vars(receiving.parse_rtp(data, shared)) == vars(aiortc.rtp.RtpPacket.parse(data, shared))


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x60" + b"\x00" * 9,  # shorter than a header
        _rtp(0x90, b"")[:14],  # extension header cut
        _rtp(0x90, ALL_SEVEN)[:20],  # extension block cut
        _rtp(0x90, b"\x4f\x01\x02\x03", tail=b""),  # an element longer than its block
        _rtp(0x40),  # RTP version 1
    ],
    ids=["short", "no-extension-header", "cut-block", "long-element", "version"],
)
def test_parse_rtp_refuses_what_aiortc_refuses(data: bytes) -> None:
    extensions_map = _extensions_map(URIS)
    with pytest.raises(ValueError):
        aiortc.rtp.RtpPacket.parse(data, extensions_map)
    with pytest.raises(ValueError):
        receiving.parse_rtp(data, extensions_map)


def test_parse_rtp_refuses_a_fixed_size_extension_of_another_size() -> None:
    """Stock raises struct.error (not ValueError) from the datagram callback; a ValueError drops it."""
    data = _rtp(0x90, _one_byte((4, b"\x01\x02")))
    with pytest.raises(ValueError, match="abs_send_time"):
        receiving.parse_rtp(data, _extensions_map(URIS))


def _dtls_without(field: str) -> Callable[..., None]:
    stock = Dtls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        stock(self, *args, **kwargs)
        delattr(self, field)

    return init


async def _recv_next_elsewhere(self: Any) -> None:
    """A stand-in for a reworked ``_recv_next`` that no longer keeps the session there."""
    await self.transport._recv()


def _packet_with_sequence(self: Any, *args: Any, **kwargs: Any) -> None:
    """A stand-in for an aiortc whose packets have one more field."""
    stock_packet_init(self, *args, **kwargs)
    self.transport_sequence = None


stock_packet_init = aiortc.rtp.RtpPacket.__init__


def _get_offset_by_one(self: Any, extension_profile: int, extension_value: bytes) -> Any:
    """A stand-in for an aiortc that reads abs-send-time another way."""
    values = stock_get(self, extension_profile, extension_value)
    if values.abs_send_time is not None:
        values.abs_send_time += 1
    return values


stock_get = aiortc.rtp.HeaderExtensionsMap.get


def _read_with_recvmsg(self: Any) -> None:
    """A stand-in for an asyncio that reads datagrams another way (batch_reads mirrors the stock one)."""
    data, _ancillary, _flags, addr = self._sock.recvmsg(self.max_size)
    self._protocol.datagram_received(data, addr)


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
        (
            lambda mp: mp.setattr(receiving.DATAGRAM_TRANSPORT, "_read_ready", _read_with_recvmsg),
            "_SelectorDatagramTransport._read_ready is missing or no longer uses recvfrom",
        ),
        (
            lambda mp: mp.delattr(SELECTOR_TRANSPORT, "resume_reading"),
            "_SelectorDatagramTransport.resume_reading is missing",
        ),
        (
            lambda mp: mp.setattr(aiortc.rtp.RtpPacket, "__init__", _packet_with_sequence),
            "RtpPacket instances",
        ),
        (
            lambda mp: mp.setattr(aiortc.rtp.HeaderExtensionsMap, "get", _get_offset_by_one),
            "parse_rtp no longer parses as aiortc.rtp.RtpPacket.parse",
        ),
    ],
    ids=[
        "router",
        "connection",
        "recv-next",
        "dtls-field",
        "asyncio-max-size",
        "asyncio-recvfrom",
        "resume",
        "packet-fields",
        "parse",
    ],
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


run = run_hub
