"""Sending RTP and RTCP on a relay connection without aiortc's coroutine layers (aiortc 1.16.0).

Stock, ``RTCDtlsTransport._send_rtp`` awaits through four coroutines per packet (the DTLS
transport, the ICE transport, aioice's connection, the datagram protocol). A forwarder sends each
packet once per subscriber, so :func:`transport_sender` does the same steps in one call: SRTP
protect with the transport's ``_tx_srtp`` session (bound once, :mod:`.srtp`), then the nominated
candidate pair's socket (``aioice.Connection._nominated``) — straight to the socket while asyncio
holds nothing queued for it, else through asyncio's ``sendto`` so the order is kept; a TURN pair
takes aioice's ``send_data``. Verified against the pinned versions by :func:`meet.relay.compat.check`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aioice.ice
import aiortc.rtcdtlstransport

from meet.relay.compat import receiving
from meet.relay.compat import srtp as srtp_fast

_CONNECTED = aiortc.rtcdtlstransport.State.CONNECTED


def transport_sender(dtls: Any, rtcp: bool = False) -> Callable[[bytes], bool]:
    """A function that SRTP-protects and sends one packet on ``dtls`` now; False if it cannot.

    Cheaper than ``await dtls._send_rtp(data)``: no coroutine chain, and nothing raised while
    the transport is not (or no longer) connected — a forwarder drops those packets.
    """
    nominated = dtls.transport._connection._nominated
    stun_protocol = aioice.ice.StunProtocol
    # What the last packet went through, kept while it stays the same (it does for a whole
    # call): the SRTP session's bound protect, the pair, its address and its socket's sendto.
    session: Any = None
    protect: Callable[[bytes], bytes] | None = None
    route: tuple[Any, Any, Any] | None = None  # (pair, remote address, socket sendto or None)

    def send(data: bytes) -> bool:
        nonlocal session, protect, route
        if dtls._state is not _CONNECTED:
            return False
        pair = nominated.get(1)
        if pair is None:
            return False
        srtp = dtls._tx_srtp
        if rtcp:
            data = srtp.protect_rtcp(data)
        else:
            if srtp is not session:
                session, protect = srtp, srtp_fast.protector(srtp)
            data = protect(data)  # type: ignore[misc]
        if route is None or route[0] is not pair:
            route = _route(pair, stun_protocol)
        _pair, addr, sendto = route
        if sendto is not None and not pair.protocol.transport._buffer:
            try:
                sendto(data, addr)
                return True
            except OSError:
                pass  # full, or an error: asyncio's sendto buffers it or reports it, as stock
        protocol = pair.protocol
        if type(protocol) is stun_protocol:
            protocol.transport.sendto(data, addr)
        else:  # a TURN allocation: its send_data wraps the datagram
            asyncio.ensure_future(protocol.send_data(data, addr))
        return True

    return send


def _route(pair: Any, stun_protocol: type) -> tuple[Any, Any, Any]:
    """(pair, its remote address, its socket's ``sendto`` when packets may go straight to it).

    asyncio's ``DatagramTransport.sendto`` runs a dozen lines of checks before the socket call;
    with nothing queued on the transport the packet may go straight to the socket (what asyncio
    does first too). Anything queued, a closed transport or a TURN pair takes the stock path.
    """
    protocol = pair.protocol
    transport: Any = getattr(protocol, "transport", None)
    direct = (
        type(protocol) is stun_protocol
        and isinstance(transport, receiving.DATAGRAM_TRANSPORT)
        and not transport._extra.get("peername")
    )
    return pair, pair.remote_addr, transport._sock.sendto if direct else None


def is_connected(dtls: Any) -> bool:
    """Whether ``dtls`` can send SRTP now."""
    return dtls._state is _CONNECTED
