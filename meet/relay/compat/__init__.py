"""Every touch of aiortc's and aioice's internals, behind one pin and one guard.

aiortc has no API for forwarding RTP without decoding it, nor for choosing which addresses and
ports ICE gathers on, so the relay reaches inside both libraries. This package is the only
place that does; the rest of the relay sees plain functions and plain values:

- :mod:`.forwarding`: receiver/sender hooks, sending SRTP straight to the nominated pair,
  negotiation details (codecs and header extension ids kept stable), candidate parsing.
- :mod:`.receiving`: incoming RTP handled in the socket callback (no STUN parse attempt, queue
  or task wake-up per packet) and smaller datagram reads.
- :mod:`.simulcast`: ``a=rid``/``a=simulcast`` read from offers and written into the relay's
  answers and offers; the simulcast stream-id header extensions parsed by aiortc.
- :mod:`.reports`: RTCP sender and receiver reports sent on the relay's clock, not by a timer
  task per sender and receiver.
- :mod:`.sending`: SRTP RTP/RTCP sent on the nominated pair in one call (no coroutine layers).
- :mod:`.srtp`: SRTP protect/unprotect bound once per pylibsrtp session (no wrapper per packet).
- :mod:`.gathering`: host candidates on sockets the relay binds itself (addresses, port range),
  no default public STUN server, STUN/TURN URL validation.

:data:`PINNED` is the one pin (``pyproject.toml`` pins the same versions) and :func:`check` the
one guard: it verifies the versions and every name, call path and instance field the two
modules rely on, and raises :class:`CompatibilityError` naming all that is missing. A relay
worker runs it before serving anything (``configure``), and ``meet.relay.ice.configure_ice``
before patching; the test suite removes internals one by one to prove it fails loudly. After
an aiortc/aioice upgrade, re-read the stock code paths the two modules name, then update
:data:`PINNED` and ``pyproject.toml`` together.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import aioice
import aioice.candidate
import aioice.ice
import aioice.turn
import aiortc
import aiortc.codecs
import aiortc.rtcdtlstransport
import aiortc.rtcicetransport
import aiortc.rtcrtpreceiver
import aiortc.rtp
import aiortc.sdp
import pylibsrtp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver

from meet.relay.compat import gathering, receiving, reports, srtp
from meet.relay.compat.feedback import problems as feedback_problems
from meet.relay.compat.simulcast import problems as simulcast_problems

T = TypeVar("T")

#: The versions the internals below were written against (see the module docstring first).
PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0"}


class CompatibilityError(RuntimeError):
    """The installed aiortc/aioice lacks something the relay relies on."""


# (class, attributes it must have)
_CLASS_ATTRIBUTES: tuple[tuple[type, tuple[str, ...]], ...] = (
    (RTCRtpReceiver, ("_handle_rtp_packet", "_handle_rtcp_packet", "transport")),
    (RTCRtpSender, ("_handle_rtcp_packet", "_send_rtcp", "_run_rtcp", "_next_encoded_frame", "replaceTrack")),
    (RTCRtpTransceiver, ("currentDirection", "direction", "mid")),
    (
        aiortc.rtcdtlstransport.RTCDtlsTransport,
        ("_handle_rtp_data", "_handle_rtcp_data", "_recv_next", "_send_rtp", "transport"),
    ),
    (aiortc.rtcdtlstransport.RtpRouter, ("route_rtp",)),
    (aiortc.rtp.HeaderExtensions, ("mid", "rtp_stream_id", "repaired_rtp_stream_id")),
    (aioice.ice.Connection, ("data_received", "get_component_candidates", "gather_candidates", "sendto")),
    (aioice.ice.StunProtocol, ("datagram_received",)),
    (
        receiving.DATAGRAM_TRANSPORT,
        ("max_size", "_read_ready", "_add_reader", "_fatal_error", "resume_reading"),
    ),
    (aiortc.rtcicetransport.RTCIceGatherer, ("getDefaultIceServers",)),
)
# (module, names it must define)
_MODULE_NAMES = (
    (
        aiortc.rtp,
        (
            "RtpPacket",
            "RtcpSrPacket",
            "RtcpSenderInfo",
            "RtcpRtpfbPacket",
            "RtcpPsfbPacket",
            "unwrap_rtx",
            "pack_remb_fci",
            "RTCP_RTPFB_NACK",
            "RTCP_PSFB_PLI",
            "RTCP_PSFB_FIR",
            "RTCP_PSFB_APP",
            "RTCP_PSFB",
            *reports.RTCP_NAMES,
        ),
    ),
    (aiortc.codecs, ("is_rtx", "HEADER_EXTENSIONS", "CODECS")),
    (aiortc.sdp, ("SessionDescription", "candidate_from_sdp")),
    (aiortc.rtcdtlstransport, ("State", "RtpRouter")),
    (pylibsrtp, ("Error",)),
    (asyncio.selector_events, ("_SelectorDatagramTransport",)),
    (aiortc.rtcicetransport, ("parse_stun_turn_uri",)),
    (aioice.ice, ("StunProtocol", "CandidatePair", "TransportPolicy", "server_reflexive_candidate")),
    (aioice.candidate, ("candidate_foundation", "candidate_priority")),
    (aioice.turn, ("UDP_SOCKET_BUFFER_SIZE",)),
)
# (owner, function name, a name its code must use): the stock call paths the hooks sit on.
_CALL_PATHS = (
    (aiortc.rtcdtlstransport.RTCDtlsTransport, "_handle_rtp_data", "_handle_rtp_packet"),
    (aiortc.rtcdtlstransport.RTCDtlsTransport, "_handle_rtcp_data", "_handle_rtcp_packet"),
    # receiving.fast_receive takes over these steps for SRTP RTP:
    (aiortc.rtcdtlstransport.RTCDtlsTransport, "_recv_next", "_rx_srtp"),
    (aiortc.rtcdtlstransport.RTCDtlsTransport, "_recv_next", "_handle_rtp_data"),
    (aiortc.rtcdtlstransport.RTCDtlsTransport, "_handle_rtp_data", "route_rtp"),
    (aioice.ice.StunProtocol, "datagram_received", "data_received"),
    (receiving.DATAGRAM_TRANSPORT, "_read_ready", "max_size"),
    # receiving.batch_reads: its reader repeats the stock one's steps, and is registered as it is
    *(
        (receiving.DATAGRAM_TRANSPORT, "_read_ready", name)
        for name in ("_conn_lost", "_sock", "recvfrom", "_protocol", "datagram_received", "error_received")
    ),
    (receiving.DATAGRAM_TRANSPORT, "__init__", "_sock_fd"),
    # sending.transport_sender writes to the socket itself when asyncio would (nothing queued)
    *((receiving.DATAGRAM_TRANSPORT, "sendto", name) for name in ("_buffer", "_sock", "_extra", "sendto")),
    (receiving.DATAGRAM_TRANSPORT, "__init__", "_read_ready"),
    (receiving.DATAGRAM_TRANSPORT, "resume_reading", "_read_ready"),
    # reports.take_over replaces the RTCP task these start, keeping what stop waits on
    (RTCRtpSender, "send", "_run_rtcp"),
    (RTCRtpReceiver, "receive", "_run_rtcp"),
    *((RTCRtpSender, "stop", name) for name in reports.SENDER_FIELDS[:3]),
    *((RTCRtpReceiver, "stop", name) for name in reports.RECEIVER_FIELDS[:3]),
    # feedback.on_transport_feedback wraps the transport's _handle_rtcp_data per instance
    (aiortc.rtcdtlstransport.RTCDtlsTransport, "_recv_next", "_handle_rtcp_data"),
    (RTCRtpSender, "_next_encoded_frame", "recv"),
    (RTCPeerConnection, "createOffer", "_codecs"),
    # forwarding.accept_extensions: the transport's extension map is configured later, in a task
    (RTCPeerConnection, "setRemoteDescription", "ensure_future"),
    (aioice.ice.Connection, "sendto", "_nominated"),
    (aioice.ice.Connection, "gather_candidates", "get_component_candidates"),
    (aiortc.rtcicetransport.RTCIceGatherer, "__init__", gathering.CONNECTION),
)
_RECEIVER_FIELDS = (
    "_enabled",
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__remote_streams",
    "_RTCRtpReceiver__nack_generator",
    *reports.RECEIVER_FIELDS,
)
_SENDER_FIELDS = (
    "_ssrc",
    "_rtx_ssrc",
    "_stream_id",
    *reports.SENDER_FIELDS,
)
_CONNECTION_FIELDS = (
    "_nominated",
    "_protocols",
    "_transport_policy",
    "_use_ipv4",
    "_use_ipv6",
    "stun_server",
    "turn_server",
)
_DTLS_FIELDS = (
    "_tx_srtp",
    "_state",
    "_transport",
    "_rx_srtp",
    "_rtp_router",
    "_rtp_header_extensions_map",
    "_RTCDtlsTransport__rx_bytes",
    "_RTCDtlsTransport__rx_packets",
)
_GATHER_PARAMETERS = ["self", "component", "addresses", "timeout"]


def check() -> None:
    """Raise :class:`CompatibilityError` naming everything the relay relies on that is missing."""
    found = problems()
    if found:
        raise CompatibilityError(
            "meet.relay uses aiortc/aioice internals that are not as expected: "
            + "; ".join(found)
            + f". Install aiortc=={PINNED['aiortc']} aioice=={PINNED['aioice']}, or re-check "
            "meet/relay/compat/ against the new versions and update PINNED."
        )


def problems() -> list[str]:
    """Everything :func:`check` would complain about (empty when all is as pinned)."""
    found = [
        f"{name} {getattr(module, '__version__', '?')} is installed, this was written for {PINNED[name]}"
        for name, module in (("aiortc", aiortc), ("aioice", aioice))
        if getattr(module, "__version__", None) != PINNED[name]
    ]
    for cls, names in _CLASS_ATTRIBUTES:
        found += [f"{cls.__module__}.{cls.__name__}.{n} is missing" for n in names if not hasattr(cls, n)]
    for module, names in _MODULE_NAMES:
        found += [f"{module.__name__}.{n} is missing" for n in names if not hasattr(module, n)]
    for owner, function, name in _CALL_PATHS:
        if name not in _names_used(getattr(owner, function, None)):
            found.append(f"{owner.__name__}.{function} is missing or no longer uses {name}")
    gather = getattr(aioice.ice.Connection, "get_component_candidates", None)
    if gather is not None and list(inspect.signature(gather).parameters) != _GATHER_PARAMETERS:
        found.append("aioice.ice.Connection.get_component_candidates has a new signature")
    if vars(aiortc.rtcicetransport).get(gathering.CONNECTION) not in gathering.CONNECTION_CLASSES:
        found.append("aiortc.rtcicetransport.Connection is not aioice's Connection")
    found += receiving.problems()  # its RTP parser against aiortc's
    found += srtp.problems()  # pylibsrtp's session fields
    return found + _instance_problems() + simulcast_problems() + feedback_problems()


def _instance_problems() -> list[str]:
    """Instance attributes (set in ``__init__``, invisible on the classes)."""
    found: list[str] = []
    for probe in (_connection_fields, _peer_connection_fields):
        try:
            objects = probe()
        except Exception as exc:  # noqa: BLE001 - any surprise here is exactly what we report
            found.append(f"probing {probe.__doc__} failed: {exc!r}")
            continue
        for obj, names in objects:
            found += [f"{type(obj).__name__} instances lack {n}" for n in names if not hasattr(obj, n)]
    return found


def _connection_fields() -> list[tuple[Any, Iterable[str]]]:
    """an aioice connection"""
    return [(aioice.ice.Connection(ice_controlling=False), _CONNECTION_FIELDS)]


def _peer_connection_fields() -> list[tuple[Any, Iterable[str]]]:
    """a peer connection"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # aiortc's constructors ask for the current loop: lend them one
        return asyncio.run(_called(_peer_connection_fields))
    # Never connected, so nothing opened that would need closing.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="sendrecv")
    dtls = transceiver.sender.transport
    return [
        (transceiver.receiver, _RECEIVER_FIELDS),
        (transceiver.sender, _SENDER_FIELDS),
        (transceiver, ("_offerDirection", "_codecs", "_headerExtensions")),
        (dtls, _DTLS_FIELDS),
        (dtls.transport, ("_connection",)),
        (dtls._rtp_router, ("mid_table", "ssrc_table", "payload_type_table")),  # receiving.route_by_mid
    ]


async def _called(function: Callable[[], T]) -> T:
    return function()


def _names_used(function: Any) -> set[str]:
    """Global and attribute names a function's code (nested code included) refers to."""
    code = getattr(function, "__code__", None)
    if code is None:
        return set()
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        stack.extend(c for c in current.co_consts if inspect.iscode(c))
    return names
