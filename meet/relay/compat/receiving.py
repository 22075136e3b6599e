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
- each host socket's asyncio transport reads into 64 KiB buffers, not 256 KiB (:func:`small_reads`),
  and reads every datagram already queued when the socket wakes the loop, up to :data:`BATCH`
  (:func:`batch_reads`; stock reads one per event-loop round). Both apply to asyncio's own
  transport (the worker in-process, as the tests run it); the worker process runs uvloop,
  whose transport already reads up to 32 datagrams per wake-up (libuv), each into the loop's
  one receive buffer and copied out at its size;
- ``Connection.data_received`` handles SRTP **RTP** at once, in the datagram callback: the
  transport's receive counters, SRTP unprotect with its ``_rx_srtp`` session, :func:`parse_rtp`
  (``RtpPacket.parse``'s result, with its header extension map, at ~60 % of its cost), ``route_rtp`` (then :func:`route_by_mid` for what it cannot
  place), then the hooked receiver's synchronous
  handler (:data:`RECEIVE`, set by ``forwarding.hook_receiver``). Everything else — DTLS, SRTCP,
  RTP before the DTLS handshake gave an SRTP session, other components — takes the stock queue,
  so the stock task still owns the handshake, RTCP and the end of the connection.

A packet that fails to unprotect (a replay, a forged or damaged one) or to parse is dropped, as
stock does. The receiver's handler runs the stock forwarding steps (statistics, RTX unwrap,
NACKs), just without the coroutine around them. The REMB estimate is not aiortc's per-receiver
one: the relay's own for the whole connection, fed through ``sent_at`` (``meet.relay.remb``).
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import dataclasses
import struct
import time
from collections.abc import Callable
from typing import Any

import aioice.ice
import aiortc.rtp
import pylibsrtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

from meet.relay.compat import srtp as srtp_fast

#: The attribute ``forwarding.hook_receiver`` sets on a receiver: ``receive(packet, now)``.
RECEIVE = "_meet_receive"
_HOOKED = "_meet_fast_receive"  # marks a connection (with the DTLS transport it serves)
_ARRIVALS = "_meet_arrivals"  # a DTLS transport's (arrivals, sent_at) callbacks (fast_receive)
NTP_EPOCH = 2208988800  # aiortc's arrival times are milliseconds since 1900 (``clock.current_ms``)

MAX_DATAGRAM = 65536  # bytes read per datagram (see small_reads)
BATCH = 32  # datagrams read per wake-up at most (see batch_reads), then other callbacks run

_parse = aiortc.rtp.RtpPacket.parse
_RtpPacket = aiortc.rtp.RtpPacket
_HeaderExtensions = aiortc.rtp.HeaderExtensions
_new = object.__new__
_HEADER = struct.Struct("!BBHLL")
_EXTENSION_HEADER = struct.Struct("!HH")
#: What ``RtpPacket.__init__`` sets: :func:`parse_rtp` builds packets with exactly these fields.
PACKET_FIELDS = (
    "version", "marker", "payload_type", "sequence_number", "timestamp", "ssrc", "csrc", "extensions",
    "payload", "padding_size",
)  # fmt: skip
#: ``HeaderExtensions`` fields in the order ``HeaderExtensionsMap.get`` tests their ids.
EXTENSION_FIELDS = (
    "mid", "repaired_rtp_stream_id", "rtp_stream_id", "abs_send_time", "transmission_offset",
    "audio_level", "transport_sequence_number",
)  # fmt: skip
_MID, _REPAIRED_RID, _RID, _ABS_SEND_TIME, _OFFSET, _LEVEL, _TRANSPORT_SEQ = range(7)
_FIXED_SIZE = {_ABS_SEND_TIME: 3, _OFFSET: 3, _LEVEL: 1, _TRANSPORT_SEQ: 2}
_tables: dict[tuple[Any, ...], dict[int, int]] = {}
#: asyncio's datagram transport class (private; verified by ``compat.check``).
DATAGRAM_TRANSPORT: type[Any] = getattr(asyncio.selector_events, "_SelectorDatagramTransport", type(None))


def fast_receive(
    dtls: Any,
    arrivals: Callable[[int, float], None] | None = None,
    sent_at: Callable[[int, float, int], None] | None = None,
) -> bool:
    """Deliver ``dtls``'s incoming RTP synchronously from the socket; False if already done.

    Call it once the transport is final (after a negotiation: with BUNDLE aiortc may replace
    the transports an m-line was created with). Idempotent. ``arrivals(seq, now)`` is told
    the transport-wide sequence number and arrival time (``time.time()``) of every RTP packet
    that carries one — all of them, before routing: the publisher's congestion control needs
    to hear about padding probes and packets the relay does not forward too. ``sent_at(abs,
    now, size)`` is told the abs-send-time, arrival time and size of every other packet that
    carries an abs-send-time (for the REMB estimate of a publisher without transport-cc).
    """
    setattr(dtls, _ARRIVALS, (arrivals, sent_at))
    connection = dtls.transport._connection
    if getattr(connection, _HOOKED, None) is dtls:
        return False
    setattr(connection, _HOOKED, dtls)
    connection.data_received = _srtp_receiver(dtls, connection.data_received)
    for protocol in connection._protocols:
        if type(protocol) is aioice.ice.StunProtocol:
            protocol.datagram_received = _demultiplexer(protocol, connection)  # type: ignore[method-assign, assignment]
            small_reads(protocol.transport)
            batch_reads(protocol.transport)
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


def batch_reads(transport: Any) -> None:
    """Read every queued datagram (up to :data:`BATCH`) when the socket wakes the event loop.

    asyncio's datagram transport reads one datagram per readiness callback, so each packet
    costs an ``epoll_wait`` and a round of the event loop. A publisher's video frame arrives as
    a burst of packets (a keyframe: dozens): they are read in one callback here, each handed to
    the protocol exactly as stock does (same errors, same order). The bound is for fairness with
    the loop's other callbacks (timers, other sockets); what is left is read on the next round.
    """
    if not isinstance(transport, DATAGRAM_TRANSPORT):
        return
    recvfrom = transport._sock.recvfrom

    def read_ready() -> None:
        for _ in range(BATCH):
            if transport._conn_lost:
                return
            try:
                data, addr = recvfrom(transport.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                transport._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # noqa: BLE001 - as stock asyncio: the transport fails
                transport._fatal_error(exc, "Fatal read error on datagram transport")
                return
            transport._protocol.datagram_received(data, addr)

    transport._read_ready = read_ready  # what resume_reading registers
    transport._add_reader(transport._sock_fd, read_ready)  # replaces the registered reader, if reading


def parse_rtp(data: bytes, extensions_map: Any) -> Any:
    """``RtpPacket.parse(data, extensions_map)``, the same packet for a fraction of the cost.

    Stock builds the packet through ``__init__`` (a ``HeaderExtensions`` it then throws away),
    a list of ``(id, bytes)`` for the extensions, and tests every id in turn. Here the common
    case — no CSRC, no padding, one-byte extensions (RFC 8285, what browsers send) — is read in
    one pass with a table from id to field; anything else is stock's. A malformed packet raises
    ``ValueError`` as stock does, and so does a fixed-size extension of the wrong size (stock
    raised ``struct.error`` from inside the datagram callback).
    """
    size = len(data)
    if size < 12:
        raise ValueError("RTP packet length is less than 12 bytes")
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data)
    if first & 0xEF != 0x80:  # not version 2, or padding, or CSRCs: the stock parser
        return _parse(data, extensions_map)
    values = _HeaderExtensions()
    end = 12
    if first & 0x10:
        if size < 16:
            raise ValueError("RTP packet has truncated extension profile / length")
        profile, length = _EXTENSION_HEADER.unpack_from(data, 12)
        end = 16 + 4 * length
        if size < end:
            raise ValueError("RTP packet has truncated extension value")
        if profile != 0xBEDE:
            return _parse(data, extensions_map)
        _one_byte_extensions(data, end, _table(extensions_map._HeaderExtensionsMap__ids), values)
    packet = _new(_RtpPacket)
    packet.version = 2
    packet.marker = second >> 7
    packet.payload_type = second & 0x7F
    packet.sequence_number = seq
    packet.timestamp = timestamp
    packet.ssrc = ssrc
    packet.csrc = []
    packet.extensions = values
    packet.payload = data[end:]
    packet.padding_size = 0
    return packet


def _one_byte_extensions(data: bytes, end: int, table: dict[int, int], values: Any) -> None:
    """Fill ``values`` from the one-byte header extensions in ``data[16:end]``."""
    pos = 16
    while pos < end:
        byte = data[pos]
        if not byte:  # padding between elements
            pos += 1
            continue
        start = pos + 1
        pos = start + (byte & 0x0F) + 1
        if pos > end:
            raise ValueError("RTP one-byte header extension value is truncated")
        code = table.get(byte >> 4)
        if code is None:
            continue
        if _FIXED_SIZE.get(code, pos - start) != pos - start:
            raise ValueError(f"RTP header extension {EXTENSION_FIELDS[code]} has a wrong size")
        if code == _ABS_SEND_TIME:
            values.abs_send_time = int.from_bytes(data[start:pos], "big")
        elif code == _TRANSPORT_SEQ:
            values.transport_sequence_number = int.from_bytes(data[start:pos], "big")
        elif code == _LEVEL:
            level = data[start]
            values.audio_level = (level & 0x80 == 0x80, level & 0x7F)
        elif code == _MID:
            values.mid = data[start:pos].decode("utf8")
        elif code == _RID:
            values.rtp_stream_id = data[start:pos].decode("ascii")
        elif code == _REPAIRED_RID:
            values.repaired_rtp_stream_id = data[start:pos].decode("ascii")
        else:
            values.transmission_offset = int.from_bytes(data[start:pos], "big", signed=True)


def _table(ids: Any) -> dict[int, int]:
    """Extension id -> field code, for a map's current ids (``configure`` changes them in place)."""
    fields = ids.__dict__
    key = tuple(fields.values())  # cheaper per packet than reading the fields by name
    table = _tables.get(key)
    if table is None:
        # stock tests the fields in EXTENSION_FIELDS order: the first one with an id wins it
        ordered = [(code, fields[name]) for code, name in enumerate(EXTENSION_FIELDS)]
        table = {x_id: code for code, x_id in reversed(ordered) if x_id is not None}
        _tables[key] = table
    return table


def problems() -> list[str]:
    """What :func:`parse_rtp` relies on, checked against this aiortc (``compat.check``)."""
    found = []
    fields = {f.name for f in dataclasses.fields(_HeaderExtensions)}
    if fields != set(EXTENSION_FIELDS):
        found.append(
            f"aiortc.rtp.HeaderExtensions has the fields {sorted(fields)}, not {sorted(EXTENSION_FIELDS)}"
        )
    if set(vars(_RtpPacket())) != set(PACKET_FIELDS):
        found.append(f"aiortc.rtp.RtpPacket instances have the fields {sorted(vars(_RtpPacket()))}")
    ids = vars(aiortc.rtp.HeaderExtensionsMap()).get("_HeaderExtensionsMap__ids")
    if type(ids) is not _HeaderExtensions:
        found.append("aiortc.rtp.HeaderExtensionsMap instances lack _HeaderExtensionsMap__ids")
    if not found:
        try:
            for data, extensions_map in _samples():
                if vars(parse_rtp(data, extensions_map)) != vars(_parse(data, extensions_map)):
                    found.append("receiving.parse_rtp no longer parses as aiortc.rtp.RtpPacket.parse")
                    break
        except Exception as exc:  # noqa: BLE001 - any surprise here is exactly what we report
            found.append(f"receiving.parse_rtp no longer parses as aiortc.rtp.RtpPacket.parse: {exc!r}")
    return found


def _samples() -> list[tuple[bytes, Any]]:
    """RTP packets with every header extension aiortc knows (and none), with their map."""
    uris = [
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "urn:ietf:params:rtp-hdrext:toffset",
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    ]
    extensions_map = aiortc.rtp.HeaderExtensionsMap()
    extensions_map.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i + 1, uri=u) for i, u in enumerate(uris)]
        )
    )
    packet = _RtpPacket(payload_type=96, marker=1, sequence_number=65535, timestamp=2**32 - 1, ssrc=7)
    packet.payload = b"\x10payload"
    plain = packet.serialize(extensions_map)
    packet.extensions = _HeaderExtensions(
        abs_send_time=0xABCDEF,
        audio_level=(True, 42),
        mid="0",
        repaired_rtp_stream_id="h",
        rtp_stream_id="q",
        transport_sequence_number=65000,
    )  # fmt: skip (aiortc writes toffset in 2 bytes, not RFC 5450's 3: the tests cover it)
    return [(plain, extensions_map), (packet.serialize(extensions_map), extensions_map)]


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
    session: Any = None  # the SRTP session unprotect is bound to (the same for a whole call)
    unprotect: Callable[[bytes], bytes] = bytes

    def data_received(data: bytes, component: int) -> None:
        nonlocal session, unprotect
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
        if srtp is not session:
            session, unprotect = srtp, srtp_fast.unprotector(srtp)
        try:
            packet = parse_rtp(unprotect(data), extensions)
        except (srtp_error, ValueError):
            return  # stock drops these too (after a debug log line)
        extensions_found = packet.extensions
        transport_seq = extensions_found.transport_sequence_number
        if transport_seq is not None:
            arrivals = getattr(dtls, _ARRIVALS)[0]
            if arrivals is not None:
                arrivals(transport_seq, now)
        elif extensions_found.abs_send_time is not None:
            sent_at = getattr(dtls, _ARRIVALS)[1]
            if sent_at is not None:
                sent_at(extensions_found.abs_send_time, now, len(data))
        receiver = router.route_rtp(packet)
        if receiver is None:
            receiver = route_by_mid(router, packet)
            if receiver is None:
                return
        receive = getattr(receiver, RECEIVE, None)
        if receive is not None:
            receive(packet, now)
        else:  # a receiver the relay did not hook: its stock coroutine, in order of arrival
            arrival_ms = int((now + NTP_EPOCH) * 1000)
            asyncio.ensure_future(receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_ms))

    return data_received
