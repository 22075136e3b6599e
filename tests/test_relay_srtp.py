"""SRTP bound once per session (meet/relay/compat/srtp.py) and packets written straight to the socket.

The bound functions must give exactly what pylibsrtp's own ``protect``/``unprotect`` give, bytes and
errors alike; the sender must write to the socket only when asyncio would (nothing queued), and
fall back to asyncio's ``sendto`` behind anything queued so that the order is kept.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pylibsrtp
import pytest
from relay_peers import ROOM, Hub, alice_to_bob, run_hub, until

from meet.relay import compat, ice
from meet.relay.compat import receiving, srtp

KEY = bytes(range(30))  # master key (16) + salt (14) of SRTP_AES128_CM_SHA1_80


@pytest.fixture(autouse=True)
def _stock_ice() -> Iterator[None]:
    yield
    ice.reset_ice()


def _session(direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(policy=pylibsrtp.Policy(key=KEY, ssrc_type=direction))


def _rtp(seq: int, size: int = 1000) -> bytes:
    return struct.pack("!BBHLL", 0x80, 96, seq, seq * 3000, 0x1234) + os.urandom(size)


def test_bound_protect_and_unprotect_give_what_pylibsrtp_gives() -> None:
    stock_out, fast_out = (
        _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND),
        _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND),
    )
    stock_in, fast_in = (
        _session(pylibsrtp.Policy.SSRC_ANY_INBOUND),
        _session(pylibsrtp.Policy.SSRC_ANY_INBOUND),
    )
    protect, unprotect = srtp.protector(fast_out), srtp.unprotector(fast_in)
    assert srtp.protector(fast_out) is protect  # bound once per session
    for seq in range(1, 40):
        packet = _rtp(seq, size=seq * 30)
        protected = protect(packet)
        assert protected == stock_out.protect(packet)
        assert len(protected) == len(packet) + 10  # the 80-bit tag
        assert unprotect(protected) == stock_in.unprotect(protected) == packet


def test_bound_functions_refuse_what_pylibsrtp_refuses() -> None:
    out, inbound = _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND), _session(pylibsrtp.Policy.SSRC_ANY_INBOUND)
    protect, unprotect = srtp.protector(out), srtp.unprotector(inbound)
    too_long = _rtp(1, size=1500)
    for stock, fast in ((out.protect, protect), (inbound.unprotect, unprotect)):
        with pytest.raises(ValueError, match="too long"):
            stock(too_long)
        with pytest.raises(ValueError, match="too long"):
            fast(too_long)
    protected = protect(_rtp(7))
    unprotect(protected)
    with pytest.raises(pylibsrtp.Error):
        unprotect(protected)  # a replay
    damaged = bytearray(protect(_rtp(8)))
    damaged[-1] ^= 0xFF
    with pytest.raises(pylibsrtp.Error):
        unprotect(bytes(damaged))  # a wrong tag
    assert unprotect(protect(_rtp(9))) is not None  # and the session goes on


def test_guard_names_what_the_binding_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert srtp.problems() == []
    stock_init = pylibsrtp.Session.__init__

    def init_without_buffer(self: Any, *args: Any, **kwargs: Any) -> None:
        stock_init(self, *args, **kwargs)
        del self._buffer

    monkeypatch.setattr(pylibsrtp.Session, "__init__", init_without_buffer)
    monkeypatch.setattr(pylibsrtp, "__version__", "9.9.9")
    found = srtp.problems()
    assert any("pylibsrtp 9.9.9 is installed" in problem for problem in found)
    assert any("lack _buffer" in problem for problem in found)
    assert any("pylibsrtp" in problem for problem in compat.problems())


def _relay_transports(hub: Hub, peer: str) -> list[Any]:
    participant = hub.relay.rooms[ROOM].participants[peer]
    connections = {
        id(t.receiver.transport): t.receiver.transport.transport._connection
        for t in participant.pc.getTransceivers()
    }
    return [p.transport for c in connections.values() for p in c._protocols if hasattr(p, "transport")]


def test_forwarded_packets_go_straight_to_the_socket_unless_asyncio_holds_some(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RTP to a subscriber skips asyncio's sendto; behind a queued datagram it goes through it."""
    calls: Counter[int] = Counter()  # id(transport) -> RTP datagrams through asyncio's sendto
    stock_sendto = receiving.DATAGRAM_TRANSPORT.sendto

    def sendto(self: Any, data: bytes, addr: Any = None) -> None:
        if len(data) > 12 and 127 < data[0] < 192 and not 191 < data[1] < 209:
            calls[id(self)] += 1
        stock_sendto(self, data, addr)

    async def scenario(hub: Hub) -> None:
        monkeypatch.setattr(receiving.DATAGRAM_TRANSPORT, "sendto", sendto)
        bob, camera = await alice_to_bob(hub)
        transports = _relay_transports(hub, "bob")
        assert transports and not any(calls[id(t)] for t in transports), "RTP went through asyncio's sendto"

        # A datagram asyncio is holding (as when the socket was full): what follows queues behind it,
        # and goes out, in order, once the socket takes datagrams again.
        for transport in transports:
            transport._buffer.append((b"", ("127.0.0.1", 9)))  # empty: harmless to send
        await until(lambda: all(calls[id(t)] >= 5 for t in transports), 10, "packets queued behind it")
        assert all(len(t._buffer) > 1 for t in transports)
        loop: Any = asyncio.get_running_loop()
        for transport in transports:
            loop._add_writer(transport._sock_fd, transport._sendto_ready)  # what asyncio does on EAGAIN
        frames = len(bob.frames[camera])
        await until(lambda: len(bob.frames[camera]) >= frames + 10, 20, "10 more frames after the queue")
        assert all(not t._buffer for t in transports)

    run_hub(scenario)
