"""meet.relay.ice: host addresses (loopback, 1:1 NAT), the UDP port range, no default STUN.

aiortc is asyncio: these are plain sync tests running ``asyncio.run`` (no trio here). They run
in a loopback-only network namespace in CI, so every peer uses 127.0.0.1 / ::1.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aioice
import aioice.ice
import aioice.stun
import aiortc.rtcicetransport
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from meet.relay import compat, ice
from meet.relay.compat import CompatibilityError, gathering
from meet.relay.ice import (
    HostBinding,
    PortRangeExhausted,
    configure_ice,
    rtc_configuration,
)

T = TypeVar("T")


@pytest.fixture(autouse=True)
def stock_aiortc() -> Iterator[None]:
    ice.reset_ice()
    yield
    ice.reset_ice()


def run(coro: Awaitable[T], timeout: float = 8.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


def candidates(sdp: str) -> list[tuple[str, int, str]]:
    """(address, port, type) of every a=candidate line."""
    found = re.findall(
        r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ (\w+)", sdp, re.MULTILINE | re.IGNORECASE
    )
    return [(host, int(port), typ) for host, port, typ in found]


def free_ports(count: int) -> tuple[int, int]:
    """A range of ``count`` consecutive UDP ports that are free on every address right now."""
    for _ in range(200):
        low = random.randint(20000, 60000)
        socks = []
        try:
            for port in range(low, low + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("0.0.0.0", port))
            return low, low + count - 1
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port block")


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def gather_offer(config: RTCConfiguration | None = None) -> tuple[RTCPeerConnection, str]:
    """A peer with a data channel that has gathered its candidates; the caller closes it."""
    pc = RTCPeerConnection(config) if config is not None else RTCPeerConnection()
    pc.createDataChannel("chat")
    try:
        await pc.setLocalDescription(await pc.createOffer())
    except BaseException:
        await pc.close()
        raise
    return pc, pc.localDescription.sdp


async def call(
    config: RTCConfiguration,
    before_answerer: Callable[[], Any] = lambda: None,
    kinds: tuple[str, ...] = (),
) -> tuple[str, str, str]:
    """Offer/answer between two peers (with transceivers of ``kinds`` too); a data channel
    message goes there and back.

    Returns the offer SDP, the answer SDP and the echoed message.
    """
    offerer = RTCPeerConnection(config)
    answerer: RTCPeerConnection | None = None
    try:
        for kind in kinds:
            offerer.addTransceiver(kind)
        channel = offerer.createDataChannel("chat")
        opened = asyncio.Event()
        reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        channel.on("open", opened.set)
        channel.on("message", lambda message: reply.done() or reply.set_result(message))
        await offerer.setLocalDescription(await offerer.createOffer())

        before_answerer()
        answerer = RTCPeerConnection(config)

        @answerer.on("datachannel")
        def on_datachannel(remote: Any) -> None:
            remote.on("message", lambda message: remote.send(f"echo {message}"))

        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        await asyncio.wait_for(opened.wait(), 5)
        channel.send("ping")
        echoed = await asyncio.wait_for(reply, 5)
        return offerer.localDescription.sdp, answerer.localDescription.sdp, echoed
    finally:
        await offerer.close()
        if answerer is not None:
            await answerer.close()


# --- (a) host addresses -----------------------------------------------------------------------


def test_two_peers_connect_over_loopback_only() -> None:
    configure_ice(["127.0.0.1"], None)
    offer, answer, echoed = run(call(rtc_configuration([])))
    assert echoed == "echo ping"
    for sdp in (offer, answer):
        found = candidates(sdp)
        assert found and {(host, typ) for host, _, typ in found} == {("127.0.0.1", "host")}


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 here")
def test_ipv6_loopback_is_gathered_too() -> None:
    configure_ice(["127.0.0.1", "::1"], None)

    async def main() -> str:
        pc, sdp = await gather_offer(rtc_configuration([]))
        await pc.close()
        return sdp

    assert sorted(host for host, _, _ in candidates(run(main()))) == ["127.0.0.1", "::1"]


def test_stock_aioice_gathers_no_loopback() -> None:
    """Why the module exists: without it, a loopback-only host has no candidates at all."""
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)


def test_empty_host_addresses_keep_aioice_interface_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in for the machine's interfaces (a loopback-only namespace has none aioice keeps).
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    low, high = free_ports(3)
    settings = configure_ice([], (low, high))
    assert settings.bindings is None

    offer, _, echoed = run(call(rtc_configuration([])))
    assert echoed == "echo ping"
    assert [(h, typ) for h, _, typ in candidates(offer)] == [("127.0.0.1", "host")]
    assert all(low <= port <= high for _, port, _ in candidates(offer))


def test_announced_address_differs_from_bound_one() -> None:
    """1:1 NAT: announce 203.0.113.7 (not on this machine), bind the wildcard address."""
    assert ice.resolve_host_addresses(["203.0.113.7", "127.0.0.1", "203.0.113.7"]) == (
        HostBinding("0.0.0.0", "203.0.113.7"),
        HostBinding("127.0.0.1", "127.0.0.1"),
    )
    low, high = free_ports(3)
    configure_ice(["203.0.113.7"], (low, high))

    async def main() -> None:
        pc, sdp = await gather_offer(rtc_configuration([]))
        try:
            found = candidates(sdp)
            assert [(host, typ) for host, _, typ in found] == [("203.0.113.7", "host")]
            ((_, port, _),) = found
            assert low <= port <= high
            assert "c=IN IP4 203.0.113.7" in sdp
            # The socket behind it is bound to 0.0.0.0:port and answers ICE checks sent locally.
            gatherer = pc.sctp.transport.transport.iceGatherer
            connection = gatherer._connection
            (protocol,) = connection._protocols
            assert protocol.transport.get_extra_info("sockname") == ("0.0.0.0", port)
            await assert_answers_binding_request(("127.0.0.1", port), connection)
        finally:
            await pc.close()

    run(main())


def test_announced_address_still_connects_through_peer_reflexive_candidates() -> None:
    """The unreachable announced address aside, a peer reaches the wildcard socket (prflx)."""
    configure_ice(["203.0.113.7"], None)
    config = rtc_configuration([])
    offer, answer, echoed = run(call(config, before_answerer=lambda: configure_ice(["127.0.0.1"], None)))
    assert {host for host, _, _ in candidates(offer)} == {"203.0.113.7"}
    assert {host for host, _, _ in candidates(answer)} == {"127.0.0.1"}
    assert echoed == "echo ping"


async def assert_answers_binding_request(addr: tuple[str, int], connection: aioice.Connection) -> None:
    loop = asyncio.get_running_loop()
    request = aioice.stun.Message(
        message_method=aioice.stun.Method.BINDING, message_class=aioice.stun.Class.REQUEST
    )
    request.attributes["USERNAME"] = f"{connection.local_username}:peer"
    request.attributes["PRIORITY"] = 1
    request.attributes["ICE-CONTROLLED"] = 1
    request.add_message_integrity(connection.local_password.encode())
    request.add_fingerprint()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        await loop.sock_sendto(sock, bytes(request), addr)
        data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 3)
    response = aioice.stun.parse_message(data)
    assert response.message_class == aioice.stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id


# --- (b) port range ---------------------------------------------------------------------------


def test_candidates_use_the_port_range_and_fail_clearly_when_exhausted() -> None:
    low, high = free_ports(3)
    configure_ice(["127.0.0.1"], (low, high))

    async def main() -> None:
        peers = []
        try:
            for _ in range(3):
                pc, sdp = await gather_offer(rtc_configuration([]))
                peers.append(pc)
                ((host, port, _),) = candidates(sdp)
                assert host == "127.0.0.1" and low <= port <= high
            with pytest.raises(PortRangeExhausted, match=f"{low}-{high}: all 3 are in use"):
                await gather_offer(rtc_configuration([]))
            # Closing a peer connection frees its port for the next one.
            await peers.pop().close()
            pc, sdp = await gather_offer(rtc_configuration([]))
            peers.append(pc)
            assert all(low <= port <= high for _, port, _ in candidates(sdp))
        finally:
            for pc in peers:
                await pc.close()

    run(main())


def test_connected_peers_stay_in_the_port_range() -> None:
    low, high = free_ports(3)
    configure_ice(["127.0.0.1"], (low, high))
    offer, answer, echoed = run(call(rtc_configuration([]), kinds=("audio", "video")))
    assert echoed == "echo ping"
    # max-bundle (rtc_configuration's default): one port per peer connection for all media.
    ports = {port for _, port, _ in candidates(offer) + candidates(answer)}
    assert len(ports) == 2
    assert all(low <= port <= high for port in ports)


def test_ports_in_use_by_others_are_skipped() -> None:
    low, high = free_ports(3)
    configure_ice(["127.0.0.1"], (low, high))
    taken = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for sock, port in zip(taken, (low, high)):
            sock.bind(("127.0.0.1", port))

        async def main() -> list[int]:
            ports = []
            for _ in range(2):  # from any starting point of the round robin
                pc, sdp = await gather_offer(rtc_configuration([]))
                ports += [port for _, port, _ in candidates(sdp)]
                await pc.close()
            return ports

        assert run(main()) == [low + 1, low + 1]
    finally:
        for sock in taken:
            sock.close()


def test_bad_port_range_is_refused() -> None:
    with pytest.raises(ValueError, match="port range"):
        configure_ice(["127.0.0.1"], (5000, 4000))
    with pytest.raises(ValueError, match="not an IP address"):
        configure_ice(["relay.example.org"], None)


# --- (c) no STUN unless configured ------------------------------------------------------------


def test_no_stun_server_is_contacted_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    config = rtc_configuration([])
    assert config.iceServers == []  # an explicit empty list: aiortc's default is Google's STUN

    async def no_stun(*args: Any) -> Any:
        raise AssertionError("a STUN server was contacted")

    monkeypatch.setattr(aioice.ice, "server_reflexive_candidate", no_stun)
    configure_ice(["127.0.0.1"], None)
    # After configure_ice, even a peer connection built without a configuration has no STUN server.
    assert aiortc.rtcicetransport.RTCIceGatherer.getDefaultIceServers() == []

    async def main() -> None:
        for pc_config in (config, None):
            pc, sdp = await gather_offer(pc_config)
            try:
                connection = pc.sctp.transport.transport.iceGatherer._connection
                assert connection.stun_server is None and connection.turn_server is None
                assert {typ for _, _, typ in candidates(sdp)} == {"host"}
            finally:
                await pc.close()

    run(main())


def test_a_configured_stun_server_is_used() -> None:
    """The positive control: a STUN server on loopback is asked, and its answer is a candidate."""
    configure_ice(["127.0.0.1"], None)
    requests: list[tuple[str, int]] = []

    class FakeStun(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            request = aioice.stun.parse_message(data)
            requests.append(addr)
            response = aioice.stun.Message(
                message_method=aioice.stun.Method.BINDING,
                message_class=aioice.stun.Class.RESPONSE,
                transaction_id=request.transaction_id,
            )
            response.attributes["XOR-MAPPED-ADDRESS"] = ("198.51.100.9", 4242)
            self.transport.sendto(bytes(response), addr)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(FakeStun, local_addr=("127.0.0.1", 0))
        try:
            port = transport.get_extra_info("sockname")[1]
            pc, sdp = await gather_offer(rtc_configuration([{"urls": [f"stun:127.0.0.1:{port}"]}]))
            await pc.close()
            return sdp
        finally:
            transport.close()

    found = candidates(run(main()))
    assert len(requests) == 1
    assert ("198.51.100.9", 4242, "srflx") in found
    assert {host for host, _, typ in found if typ == "host"} == {"127.0.0.1"}


def test_rtc_configuration_checks_servers() -> None:
    config = rtc_configuration(
        [
            {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"},
            {"urls": "stun:stun.example.org"},
        ]
    )
    assert [s.urls for s in config.iceServers] == [["turn:turn.example.org:3478"], ["stun:stun.example.org"]]
    assert config.iceServers[0].username == "u" and config.iceServers[1].username is None
    assert config.bundlePolicy.value == "max-bundle"
    with pytest.raises(ValueError, match="unknown key 'url'"):
        rtc_configuration([{"url": "stun:x"}])
    with pytest.raises(ValueError, match="not a usable STUN/TURN URL"):
        rtc_configuration([{"urls": ["http://stun.example.org"]}])
    with pytest.raises(ValueError, match="urls must be"):
        rtc_configuration([{"urls": []}])


# --- the version guard ------------------------------------------------------------------------


def test_guard_passes_on_the_tested_versions() -> None:
    compat.check()
    configure_ice(["127.0.0.1"], None)
    assert aiortc.rtcicetransport.Connection is gathering.RelayConnection
    ice.reset_ice()
    assert aiortc.rtcicetransport.Connection is aioice.Connection


@pytest.mark.parametrize(
    ("target", "name", "message"),
    [
        (aioice.ice.Connection, "get_component_candidates", "get_component_candidates is missing"),
        (aiortc.rtcicetransport.RTCIceGatherer, "getDefaultIceServers", "getDefaultIceServers is missing"),
        (aioice.ice, "server_reflexive_candidate", "aioice.ice.server_reflexive_candidate is missing"),
        (aiortc.rtcicetransport, "Connection", "is not aioice's Connection"),
    ],
)
def test_guard_fails_loudly_when_a_patched_internal_is_missing(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str, message: str
) -> None:
    monkeypatch.delattr(target, name)
    with pytest.raises(CompatibilityError, match=message):
        configure_ice(["127.0.0.1"], None)
    assert ice.current_settings() is None


def test_guard_fails_when_internals_change_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    async def changed(self: Any, component: int, addresses: list[str]) -> list[Any]:
        return []

    monkeypatch.setattr(aioice.ice.Connection, "get_component_candidates", changed)
    monkeypatch.setattr(aioice.ice.Connection, "__init__", lambda self, ice_controlling: None)
    with pytest.raises(CompatibilityError) as info:
        configure_ice(["127.0.0.1"], None)
    assert "new signature" in str(info.value)
    assert "instances lack _protocols" in str(info.value)


def test_guard_fails_on_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice, "__version__", "0.14.0")
    with pytest.raises(
        CompatibilityError, match=r"aioice 0\.14\.0 is installed, this was written for 0\.13\.0"
    ):
        configure_ice([], None)
    assert aiortc.rtcicetransport.Connection is aioice.Connection  # nothing was patched
