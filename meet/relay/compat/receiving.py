"""The relay's receive path without aiortc's per-datagram layers (aiortc 1.16.0 / aioice 0.13.0).

Stock, every datagram a publisher sends goes: ``StunProtocol.datagram_received`` (tries
``stun.parse_message``, which raises for anything but STUN) → ``Connection.data_received``
(an ``asyncio.Queue``) → a wake-up of ``RTCDtlsTransport``'s receive task (``_recv_next``,
awaiting through ``RTCIceTransport._recv`` and ``Connection.recv``) → SRTP unprotect →
``_handle_rtp_data`` → ``RtpPacket.parse`` → ``RtpRouter.route_rtp`` → the receiver. For a
forwarder most of that is a queue hop and coroutine frames per packet: the receive half of
the relay cost three to five times Janus's per packet at one subscriber.

:func:`fast_receive` installs two per-instance hooks on one DTLS transport's ICE connection:

- each host ``StunProtocol.datagram_received`` demultiplexes by the first byte (RFC 7983:
  0–3 STUN, 20–63 DTLS, 128–191 RTP/RTCP) and only hands STUN to aioice's parser; it drops
  empty datagrams, which stock aioice queues and on which ``_recv_next`` raises ``IndexError``,
  ending that participant's connection: one empty UDP packet from anyone was enough;
- each host socket's asyncio transport reads into 64 KiB buffers, not 256 KiB (:func:`small_reads`);
- ``Connection.data_received`` handles SRTP **RTP** at once, in the datagram callback: the
  transport's receive counters, SRTP unprotect with its ``_rx_srtp`` session, ``RtpPacket.parse``
  with its header extension map, ``route_rtp`` (then :func:`route_by_mid` for what it cannot
  place), then the hooked receiver's synchronous
  handler (:data:`RECEIVE`, set by ``forwarding.hook_receiver``). Everything else — DTLS, SRTCP,
  RTP before the DTLS handshake gave an SRTP session, other components — takes the stock queue,
  so the stock task still owns the handshake, RTCP and the end of the connection.

A packet that fails to unprotect (a replay, a forged or damaged one) or to parse is dropped, as
stock does. The receiver's handler runs exactly the stock forwarding steps (REMB estimate,
statistics, RTX unwrap, NACKs), just without the coroutine around them.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import time
from collections.abc import Callable
from typing import Any

import aioice.ice
import aiortc.rtp
import pylibsrtp

#: The attribute ``forwarding.hook_receiver`` sets on a receiver: ``receive(packet, arrival_ms)``.
RECEIVE = "_meet_receive"
_HOOKED = "_meet_fast_receive"  # marks a connection (with the DTLS transport it serves)
_ARRIVALS = "_meet_arrivals"  # a DTLS transport's arrivals callback (fast_receive)
NTP_EPOCH = 2208988800  # aiortc's arrival times are milliseconds since 1900 (``clock.current_ms``)

MAX_DATAGRAM = 65536  # bytes read per datagram (see small_reads)

_parse = aiortc.rtp.RtpPacket.parse
#: asyncio's datagram transport class (private; verified by ``compat.check``).
DATAGRAM_TRANSPORT: type[Any] = getattr(asyncio.selector_events, "_SelectorDatagramTransport", type(None))


def fast_receive(dtls: Any, arrivals: Callable[[int, float], None] | None = None) -> bool:
    """Deliver ``dtls``'s incoming RTP synchronously from the socket; False if already done.

    Call it once the transport is final (after a negotiation: with BUNDLE aiortc may replace
    the transports an m-line was created with). Idempotent. ``arrivals(seq, now)`` is told
    the transport-wide sequence number and arrival time (``time.time()``) of every RTP packet
    that carries one — all of them, before routing: the publisher's congestion control needs
    to hear about padding probes and packets the relay does not forward too.
    """
    setattr(dtls, _ARRIVALS, arrivals)
    connection = dtls.transport._connection
    if getattr(connection, _HOOKED, None) is dtls:
        return False
    setattr(connection, _HOOKED, dtls)
    connection.data_received = _srtp_receiver(dtls, connection.data_received)
    for protocol in connection._protocols:
        if type(protocol) is aioice.ice.StunProtocol:
            protocol.datagram_received = _demultiplexer(protocol, connection)  # type: ignore[method-assign, assignment]
            small_reads(protocol.transport)
    return True


def small_reads(transport: Any) -> None:
    """Read datagrams into 64 KiB buffers instead of asyncio's 256 KiB.

    asyncio's datagram transport calls ``recvfrom(max_size)`` with ``max_size`` 256 KiB: Python
    allocates that much for every datagram and shrinks it, and above glibc's 128 KiB mmap
    threshold each packet costs mmap, a page fault, mremap and munmap (a sixth of the worker's
    CPU at one subscriber). 65536 is below the threshold and above the largest UDP payload
    (65507 bytes over IPv4, 65527 over IPv6), so no datagram is ever truncated.
    """
    if isinstance(transport, DATAGRAM_TRANSPORT):
        transport.max_size = MAX_DATAGRAM


def route_by_mid(router: Any, packet: Any) -> Any:
    """The receiver of a packet that ``RtpRouter.route_rtp`` could not place, by its mid extension.

    Stock aiortc routes by SSRC, else by payload type when exactly one receiver has it. A
    browser's simulcast layers are announced without ``a=ssrc`` lines, and with BUNDLE every
    video m-line shares VP8's payload type: stock drops them all. Their packets carry the
    m-line's mid (RFC 8843) until the sender knows the SSRC is established; the SSRC learned
    here routes the later ones, and their sender reports (``route_rtcp`` reads the same table).
    """
    receiver = router.mid_table.get(packet.extensions.mid)
    if receiver is None or receiver not in router.payload_type_table.get(packet.payload_type, ()):
        return None
    router.ssrc_table[packet.ssrc] = receiver
    return receiver


def _demultiplexer(protocol: Any, connection: Any) -> Callable[[bytes, Any], None]:
    """``datagram_received`` that gives aioice's STUN parser only STUN (RFC 7983: 0–3)."""
    stock = protocol.datagram_received
    component = protocol.local_candidate.component

    def datagram_received(data: bytes, addr: Any) -> None:
        if not data:
            return  # stock would queue it, and aiortc's receive task dies reading its first byte
        if data[0] > 3:
            connection.data_received(data, component)
        else:
            stock(data, addr)

    return datagram_received


def _srtp_receiver(dtls: Any, stock: Callable[[bytes, int], None]) -> Callable[[bytes, int], None]:
    """``Connection.data_received`` that handles SRTP RTP now and queues the rest (stock)."""
    router = dtls._rtp_router
    extensions = dtls._rtp_header_extensions_map
    srtp_error = pylibsrtp.Error

    def data_received(data: bytes, component: int) -> None:
        if not data:
            return  # e.g. through a TURN allocation: see _demultiplexer
        srtp = dtls._rx_srtp
        if (
            srtp is None
            or component != 1
            or len(data) < 12
            or not 127 < data[0] < 192
            or 191 < data[1] < 209  # RTCP (aiortc's is_rtcp): the stock path
        ):
            stock(data, component)
            return
        dtls._RTCDtlsTransport__rx_bytes += len(data)
        dtls._RTCDtlsTransport__rx_packets += 1
        now = time.time()
        arrival_ms = int((now + NTP_EPOCH) * 1000)
        try:
            packet = _parse(srtp.unprotect(data), extensions)
        except (srtp_error, ValueError):
            return  # stock drops these too (after a debug log line)
        transport_seq = packet.extensions.transport_sequence_number
        if transport_seq is not None:
            arrivals = getattr(dtls, _ARRIVALS, None)
            if arrivals is not None:
                arrivals(transport_seq, now)
        receiver = router.route_rtp(packet)
        if receiver is None:
            receiver = route_by_mid(router, packet)
            if receiver is None:
                return
        receive = getattr(receiver, RECEIVE, None)
        if receive is not None:
            receive(packet, arrival_ms)
        else:  # a receiver the relay did not hook: its stock coroutine, in order of arrival
            asyncio.ensure_future(receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_ms))

    return data_received
