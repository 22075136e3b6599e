"""The aiortc internals the relay's forwarding needs (aiortc 1.16.0 / aioice 0.13.0).

aiortc has no API for forwarding RTP without decoding it, so the relay reaches inside here:
``forward.py`` and the signaling code see plain functions and plain values. Every name below is
verified against the installed versions by :func:`meet.relay.compat.check` before a worker
serves anything.

What is touched, and why:

- Inbound, ``RTCRtpReceiver._handle_rtp_packet`` (called by ``RTCDtlsTransport._handle_rtp_data``
  for each decrypted RTP packet) is replaced per instance. The replacement keeps the stock
  steps a forwarder needs, in the stock order — receive statistics for RTCP RR
  (``__remote_streams``, with the relay's :class:`meet.relay.reception.Statistics` in place of
  ``StreamStatistics``: the same fields, cheaper per packet), RTX unwrapping (``__codecs``,
  ``__rtx_ssrc``, ``unwrap_rtx``) and NACK generation where negotiated (``__nack_generator``)
  — and then hands the packet's fields to the forwarder instead of depayloading,
  jitter-buffering and decoding it: to one layer of the publication (simulcast: by SSRC once
  learned, else by the rtp-stream-id / repaired-rtp-stream-id extensions), with the gaps of
  each layer's SSRC tracked apart (:class:`meet.relay.reception.Gaps`) instead of the
  receiver's one ``NackGenerator``, which would mix the sequence numbers of several SSRCs. ``_handle_rtcp_packet`` is wrapped to
  read the publisher's sender reports.
  Upstream RTCP (NACK, PLI, REMB) is sent with the receiver's RTCP SSRC (``__rtcp_ssrc``).
- Outbound, per ``RTCRtpSender`` instance: ``_handle_rtcp_packet`` is wrapped so subscriber
  NACKs and PLI/FIR reach the forwarder (stock aiortc would look in its own RTP history and flag
  its own encoder). ``_stream_id`` is set to the publisher's peer id (the msid stream id);
  ``_ssrc``/``_rtx_ssrc`` are read.
- Reports (:mod:`.reports`): hooked senders and receivers send no RTCP of their own on a
  timer; :func:`send_reports` sends their SRs — carrying the forwarder's packet/octet counts and
  RTP/NTP pair (the stock counters ``__packet_count``, ``__octet_count``, ``__ntp_timestamp``,
  ``__rtp_timestamp`` and ``__lsr`` are updated too, for getStats and RTT) — and RRs when the
  relay's pacer says they are due. ``_send_rtcp`` is wrapped so an idle sender sends no BYE.
- Sending (:mod:`.sending`): RTP is SRTP-protected with ``RTCDtlsTransport._tx_srtp`` and
  written straight to the nominated candidate pair's socket (``aioice.Connection._nominated``),
  skipping the four coroutine layers of ``_send_rtp`` (the stock path, used for TURN pairs).
- Negotiation: ``RTCRtpTransceiver._codecs``/``_headerExtensions``/``_offerDirection`` are read
  and ``_codecs`` narrowed to the room's codecs. aiortc's ``createOffer`` resets every
  transceiver's ``_codecs``/``_headerExtensions`` to its own defaults: :func:`create_offer`
  restores the negotiated ones at once, because ``RTCPeerConnection.__connect`` reads them to
  register receivers and senders only when DTLS connects — an offer made during a participant's
  first handshake would otherwise register aiortc's payload types and extension ids for a
  browser's streams (its packets then fail to parse, which closes the transport). The offer
  text is rewritten with ``aiortc.sdp`` to keep the client's payload types and extension ids,
  which browsers require to stay stable within a BUNDLE group. aiortc negotiates only the
  header extensions it knows: :func:`accept_extensions` adds :data:`EXTRA_EXTENSIONS` (the
  simulcast stream ids) to ``_headerExtensions`` after each ``setRemoteDescription``, and
  :func:`local_description` adds the ``a=rid``/``a=simulcast`` lines aiortc drops.
"""

from __future__ import annotations

import copy
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import aiortc
import aiortc.codecs
import aiortc.rtcdtlstransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtp
import aiortc.sdp
from aiortc import (
    RTCIceCandidate,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)

from meet.relay.compat import receiving, reports, simulcast
from meet.relay.compat.sending import transport_sender
from meet.relay.reception import Gaps, Statistics

_PLI = struct.Struct("!BBHLL")
_FEEDBACK = _PLI  # same header: V/P/FMT, type, length, sender SSRC, media SSRC
_FMT_TWCC = 15
_rtp = aiortc.rtp
_ROUTES = "_meet_routes"  # a hooked receiver's learned SSRC tables (see set_layers)
_RIDS = "_meet_rids"  # the RIDs a receiver's m-line receives, in the client's order

#: Header extensions the relay negotiates beyond aiortc's own (``accept_extensions``), by kind,
#: with the id it offers when the client never used one (Chrome's ids).
EXTRA_EXTENSIONS: dict[str, list[tuple[int, str]]] = {
    "audio": [],
    "video": [(10, simulcast.RID_URI), (11, simulcast.REPAIRED_RID_URI)],
}
#: Header extensions the relay negotiates, by media kind: ``aiortc.codecs.HEADER_EXTENSIONS``
#: and :data:`EXTRA_EXTENSIONS`.
SUPPORTED_EXTENSIONS = {
    kind: [(ext.id, ext.uri) for ext in exts] + EXTRA_EXTENSIONS[kind]
    for kind, exts in aiortc.codecs.HEADER_EXTENSIONS.items()
}


class PacketSink(Protocol):
    """Where a hooked receiver delivers one RTP stream's packets (``forward.Source``: a layer)."""

    @property
    def ssrc(self) -> int | None: ...

    def on_rtp(
        self, ssrc: int, seq: int, ts: int, marker: int, payload: bytes, level: int | None
    ) -> None: ...

    def on_sender_report(self, ntp: int, rtp_timestamp: int) -> None: ...


class Layered(Protocol):
    """What a hooked receiver feeds (``forward.Publication``): one or several layers."""

    @property
    def layers(self) -> Sequence[PacketSink]: ...

    def layer_for_rid(self, rid: str | None) -> PacketSink | None: ...

    def set_rids(self, rids: Sequence[str]) -> None: ...


class Counters(Protocol):
    upstream_nacks: int
    remb_sent: int


# --- inbound: the publisher's receiver ---------------------------------------------------------


def hook_receiver(receiver: RTCRtpReceiver, publication: Layered, counters: Counters) -> None:
    """Forward ``receiver``'s packets to ``publication``'s layers after RTX unwrap and NACKs.

    Depayloading, the jitter buffer and the decoder are skipped: nothing is decoded. Each
    packet goes to one layer (a :class:`PacketSink`): by its SSRC once learned, else by the
    rtp-stream-id extension (RTX: by a=ssrc-group FID, else by repaired-rtp-stream-id, to the
    media SSRC of that layer); a single-encoding publication's one layer takes any SSRC. Each
    layer's media SSRC has its own NACK generator (aiortc's one per receiver would mix the
    sequence numbers of several SSRCs) and sender reports reach the layer of their SSRC.
    """
    codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
    fid: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
    streams: dict[int, Any] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    nacking = receiver._RTCRtpReceiver__nack_generator is not None  # type: ignore[attr-defined]
    stock_rtcp = receiver._handle_rtcp_packet
    is_rtx = aiortc.codecs.is_rtx
    routes: dict[int, tuple[PacketSink, Gaps | None]] = {}  # media SSRC -> (layer, its gaps to NACK)
    kinds: dict[int, tuple[RTCRtpCodecParameters, bool]] = {}  # payload type -> (codec, is RTX)
    repairs: dict[int, int] = {}  # RTX SSRC -> media SSRC, learned from repaired-rtp-stream-id
    setattr(receiver, _ROUTES, (routes, repairs))  # forgotten when the layers change (set_layers)

    def send_rtcp(packet: Any) -> None:
        transport_sender(receiver.transport, rtcp=True)(bytes(packet))

    def rtcp_ssrc() -> int | None:
        return receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined, no-any-return]

    def learn(packet: Any) -> tuple[PacketSink, Any] | None:
        """The layer of a media SSRC seen for the first time (or again after set_layers)."""
        ext = packet.extensions
        rid = ext.rtp_stream_id or ext.repaired_rtp_stream_id
        ssrc = packet.ssrc
        if rid:
            layer = publication.layer_for_rid(rid)
        else:  # no rid (a single encoding, or a browser that stopped sending it)
            layer = _layer_with_ssrc(publication, ssrc) or publication.layer_for_rid(None)
        if layer is None:
            return None  # an encoding the negotiation did not accept: not forwarded
        for known, (sink, _nacks) in list(routes.items()):
            if sink is layer:
                del routes[known]  # the layer restarted with a new SSRC
        route = routes[ssrc] = (layer, Gaps() if nacking else None)
        return route

    def repaired_ssrc(packet: Any) -> int | None:
        """The media SSRC an RTX packet repairs (None: unknown yet)."""
        ssrc = fid.get(packet.ssrc)
        if ssrc is not None:
            return ssrc
        rid = packet.extensions.repaired_rtp_stream_id
        layer = publication.layer_for_rid(rid) if rid else None
        if layer is not None and layer.ssrc is not None:  # the layer's current SSRC (RTX is rare)
            repairs[packet.ssrc] = layer.ssrc
            return layer.ssrc
        return repairs.get(packet.ssrc)  # browsers stop sending the rid once it is established

    def receive(packet: Any, now: float) -> None:
        if not receiver._enabled:
            return
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        stats = streams.get(packet.ssrc)
        if stats is None:
            stats = streams[packet.ssrc] = Statistics(codec.clockRate)
        stats.add(packet.sequence_number, packet.timestamp, now)
        kind = kinds.get(packet.payload_type)
        if kind is None or kind[0] is not codec:  # is_rtx parses the MIME type: once per codec
            kind = kinds[packet.payload_type] = (codec, is_rtx(codec))
        if kind[1]:
            apt = codec.parameters.get("apt")
            if len(packet.payload) < 2 or apt not in codecs:
                return  # padding-only probe: nothing to forward
            original_ssrc = repaired_ssrc(packet)
            if original_ssrc is None:
                return  # a repair of a stream not seen yet
            packet = _rtp.unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
        route = routes.get(packet.ssrc) or learn(packet)
        if route is None:
            return
        sink, gaps = route
        if gaps is not None and gaps.add(packet.sequence_number) and (sender_ssrc := rtcp_ssrc()) is not None:
            counters.upstream_nacks += 1
            nack = _rtp.RtcpRtpfbPacket(fmt=_rtp.RTCP_RTPFB_NACK, ssrc=sender_ssrc, media_ssrc=packet.ssrc)
            nack.lost = sorted(gaps.missing)
            send_rtcp(nack)
        level = packet.extensions.audio_level
        sink.on_rtp(
            packet.ssrc,
            packet.sequence_number,
            packet.timestamp,
            packet.marker,
            packet.payload,
            None if level is None else (level[0] << 7) | level[1],
        )

    async def handle_rtp(packet: Any, arrival_time_ms: int) -> None:
        receive(packet, time.time())

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, _rtp.RtcpSrPacket):
            route = routes.get(packet.ssrc)
            layer = route[0] if route is not None else _layer_with_ssrc(publication, packet.ssrc)
            if layer is None:  # no media yet: a single encoding's layer takes it (as before simulcast)
                layer = publication.layer_for_rid(None)
            if layer is not None:
                layer.on_sender_report(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)
        await stock_rtcp(packet)

    receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]
    setattr(receiver, receiving.RECEIVE, receive)  # the synchronous path (receiving.fast_receive)
    receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    reports.take_over(receiver)  # its receiver reports: send_reports


def set_layers(receiver: RTCRtpReceiver, publication: Layered, rids: Sequence[str]) -> None:
    """``publication.set_rids(rids)`` for a hooked receiver: its packets are routed anew."""
    setattr(receiver, _RIDS, tuple(rids))
    before = list(publication.layers)
    publication.set_rids(rids)
    if publication.layers != before:
        for table in getattr(receiver, _ROUTES, ()):
            table.clear()


def receive_simulcast(
    pc: RTCPeerConnection, publications: Mapping[RTCRtpTransceiver, Layered], sdp: str
) -> None:
    """After the client's offer ``sdp``: each publication gets a layer per RID it announced."""
    offered = simulcast.offered_rids(sdp)
    for transceiver in pc.getTransceivers():
        publication = publications.get(transceiver)
        if publication is not None and transceiver.mid is not None:
            set_layers(transceiver.receiver, publication, offered.get(transceiver.mid, ()))


def local_description(pc: RTCPeerConnection) -> str:
    """``pc.localDescription.sdp`` as the relay sends it: receiving the simulcast it accepted.

    aiortc drops ``a=rid``/``a=simulcast`` when it serializes a description, so they are added
    to the text of every answer and offer the relay emits (see :mod:`.simulcast`).
    """
    rids = {
        str(t.mid): getattr(t.receiver, _RIDS) for t in pc.getTransceivers() if getattr(t.receiver, _RIDS, ())
    }
    return simulcast.with_simulcast(pc.localDescription.sdp, rids)


def _layer_with_ssrc(publication: Layered, ssrc: int) -> PacketSink | None:
    return next((layer for layer in publication.layers if layer.ssrc == ssrc), None)


def _send_upstream(receiver: RTCRtpReceiver, build: Callable[[int], bytes]) -> bool:
    """Send ``build(rtcp_ssrc)`` now, upstream on ``receiver``'s transport, with the receiver's
    RTCP SSRC as the sender's; False before the receiver has one or while it cannot send."""
    ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    if ssrc is None:
        return False
    return transport_sender(receiver.transport, rtcp=True)(build(ssrc))


def feedback_sender(receiver: RTCRtpReceiver) -> Callable[[bytes, int], bool]:
    """A function sending one transport-cc feedback (its FCI) upstream on ``receiver``'s transport.

    Its second argument is a media SSRC of the publisher's (libwebrtc does not check it).
    """

    def send_feedback(fci: bytes, media_ssrc: int) -> bool:
        def build(ssrc: int) -> bytes:
            return (
                _FEEDBACK.pack(0x80 | _FMT_TWCC, _rtp.RTCP_RTPFB, 2 + len(fci) // 4, ssrc, media_ssrc) + fci
            )

        return _send_upstream(receiver, build)

    return send_feedback


def remb_sender(receiver: RTCRtpReceiver) -> Callable[[int, list[int]], bool]:
    """A function sending a REMB (``bitrate`` bps for ``ssrcs``) upstream on ``receiver``'s transport."""

    def send_remb(bitrate: int, ssrcs: list[int]) -> bool:
        fci = _rtp.pack_remb_fci(bitrate, ssrcs)
        return _send_upstream(
            receiver,
            lambda ssrc: bytes(_rtp.RtcpPsfbPacket(fmt=_rtp.RTCP_PSFB_APP, ssrc=ssrc, media_ssrc=0, fci=fci)),
        )

    return send_remb


def pli_sender(receiver: RTCRtpReceiver) -> Callable[[int], bool]:
    """A function sending one PLI for a media SSRC upstream on ``receiver``'s transport."""

    def send_pli(media_ssrc: int) -> bool:
        return _send_upstream(
            receiver, lambda ssrc: _PLI.pack(0x80 | _rtp.RTCP_PSFB_PLI, _rtp.RTCP_PSFB, 2, ssrc, media_ssrc)
        )

    return send_pli


# --- outbound: the subscriber's sender ---------------------------------------------------------


def hook_sender(
    sender: RTCRtpSender,
    on_nack: Callable[[list[int]], None],
    on_keyframe_request: Callable[[], None],
    sender_info: Callable[[], tuple[int, int, int, int] | None],
) -> None:
    """Route a forwarding sender's NACK and PLI/FIR to the forwarder; take over its reports.

    ``sender_info()`` returns ``(ntp, rtp_timestamp, packets, octets)``, or None (no media yet:
    no sender report goes out). Its reports are the relay's to send (:func:`send_reports`).
    """
    stock_rtcp = sender._handle_rtcp_packet
    stock_send = sender._send_rtcp

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, _rtp.RtcpRtpfbPacket) and packet.fmt == _rtp.RTCP_RTPFB_NACK:
            on_nack(list(packet.lost))
        elif isinstance(packet, _rtp.RtcpPsfbPacket) and packet.fmt in (
            _rtp.RTCP_PSFB_PLI,
            _rtp.RTCP_PSFB_FIR,
        ):
            on_keyframe_request()
        else:  # receiver reports (RTT, stats) and REMB: the stock handling is fine
            await stock_rtcp(packet)

    async def send_rtcp(packets: list[Any]) -> None:
        # Only the BYE of its end comes this way: the relay sends its reports (send_reports).
        if sender_info() is None:
            return  # nothing forwarded on it (an idle receive slot): no stream to say goodbye to
        await stock_send(packets)

    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    sender._send_rtcp = send_rtcp  # type: ignore[method-assign]
    reports.take_over(sender)


def send_reports(
    senders: Iterable[tuple[RTCRtpSender, tuple[int, int, int, int] | None]],
    receivers: Iterable[RTCRtpReceiver],
) -> int:
    """Send each sender's SR (given its ``sender_info``; None: nothing sent, no report) and each
    receiver's RR now, as their stock RTCP tasks would have; the number of reports sent."""
    sent = 0
    for sender, info in senders:
        if info is not None:
            sent += transport_sender(sender.transport, rtcp=True)(reports.sender_report(sender, info))
    for receiver in receivers:
        report = reports.receiver_report(receiver)
        if report is not None:
            sent += transport_sender(receiver.transport, rtcp=True)(report)
    return sent


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The msid stream id this sender's m-line announces (aiortc has no ``setStreams``)."""
    sender._stream_id = stream_id


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC) of a sender."""
    return sender._ssrc, sender._rtx_ssrc


# --- negotiation -------------------------------------------------------------------------------


async def create_offer(pc: RTCPeerConnection) -> str:
    """``pc.createOffer()`` without losing what earlier negotiations settled (see above)."""
    settled = {t: (t._codecs, t._headerExtensions) for t in pc.getTransceivers() if t.mid is not None}
    offer = await pc.createOffer()  # no suspension inside: nothing can read the defaults
    for transceiver, (codecs, extensions) in settled.items():
        transceiver._codecs, transceiver._headerExtensions = codecs, extensions
    return str(offer.sdp)


def accept_extensions(pc: RTCPeerConnection, sdp: str) -> None:
    """Right after ``pc.setRemoteDescription(sdp)``: also negotiate :data:`EXTRA_EXTENSIONS`.

    aiortc keeps only the header extensions it knows (``aiortc.codecs.HEADER_EXTENSIONS``) of a
    remote description. Those the relay needs besides (the simulcast stream ids) are added to
    each m-line that ``sdp`` lists them on, with the remote's ids, before anything reads them:
    the answer, and the receive parameters that configure the transport's extension map when
    DTLS connects (a task that runs only at the caller's next suspension).
    """
    by_mid = {media.rtp.muxId: media for media in aiortc.sdp.SessionDescription.parse(sdp).media}
    for transceiver in pc.getTransceivers():
        media = by_mid.get(transceiver.mid) if transceiver.mid is not None else None
        if media is None:
            continue
        wanted = {uri for _id, uri in EXTRA_EXTENSIONS.get(transceiver.kind, [])}
        have = {ext.uri for ext in transceiver._headerExtensions}
        extra = [ext for ext in media.rtp.headerExtensions if ext.uri in wanted and ext.uri not in have]
        transceiver._headerExtensions = transceiver._headerExtensions + extra
        # And into the transport's id map at once. It is configured from each receiver's
        # parameters when the receiver starts; a start that ran inside setRemoteDescription
        # (DTLS completing while a renegotiation was being applied) saw the extensions before
        # they were added, and the simulcast ids would never be parsed: the layers of that
        # publication unroutable for good (seen for 1 in 5 participants in bench/room.py).
        extension_map = getattr(transceiver.receiver.transport, "_rtp_header_extensions_map", None)
        if extra and extension_map is not None:
            extension_map.configure(RTCRtpParameters(headerExtensions=extra))


def offer_direction(transceiver: RTCRtpTransceiver) -> str | None:
    """The direction the remote's last offer allows us (``sendonly`` = the remote only receives)."""
    return transceiver._offerDirection


def restrict_codecs(transceiver: RTCRtpTransceiver, keep: Callable[[RTCRtpCodecParameters], bool]) -> None:
    """Narrow the negotiated codecs to ``keep`` (and the RTX of kept codecs), before an answer."""
    kept = [c for c in transceiver._codecs if not aiortc.codecs.is_rtx(c) and keep(c)]
    kept_types = {c.payloadType for c in kept}
    transceiver._codecs = [
        c
        for c in transceiver._codecs
        if c in kept or (aiortc.codecs.is_rtx(c) and c.parameters.get("apt") in kept_types)
    ]


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The transceiver's codecs: the first is the one media is sent with."""
    return list(transceiver._codecs)


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    """Header extension URI → id as negotiated for this m-line."""
    return {ext.uri: ext.id for ext in transceiver._headerExtensions}


def is_rtx(codec: RTCRtpCodecParameters) -> bool:
    return bool(aiortc.codecs.is_rtx(codec))


def default_codecs(kind: str) -> list[RTCRtpCodecParameters]:
    """aiortc's own codec list for a kind (payload types included), as fresh copies."""
    return copy.deepcopy(aiortc.codecs.CODECS[kind])


def describe_description(sdp: str) -> tuple[set[int], dict[str, int]]:
    """(payload types used by any m-line, header extension uri → id) of a session description."""
    description = aiortc.sdp.SessionDescription.parse(sdp)
    types: set[int] = set()
    extensions: dict[str, int] = {}
    for media in description.media:
        types.update(c.payloadType for c in media.rtp.codecs if c.payloadType is not None)
        extensions.update((ext.uri, ext.id) for ext in media.rtp.headerExtensions)
    return types, extensions


def rewrite_offer(
    sdp: str,
    codecs: dict[str, list[RTCRtpCodecParameters]],
    extensions: dict[str, list[tuple[int, str]]],
) -> str:
    """Our offer with each audio/video m-line's codecs and extension ids replaced by ours."""
    description = aiortc.sdp.SessionDescription.parse(sdp)
    for media in description.media:
        if media.kind not in codecs:
            continue
        media.rtp.codecs = copy.deepcopy(codecs[media.kind])
        media.fmt = [c.payloadType for c in media.rtp.codecs]
        media.rtp.headerExtensions = [
            RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in extensions[media.kind]
        ]
    return str(description)


def parse_candidate(candidate: dict[str, Any]) -> RTCIceCandidate:
    """An aiortc candidate from a browser's ``RTCIceCandidateInit`` dictionary."""
    text = str(candidate.get("candidate", ""))
    text = text.removeprefix("candidate:")
    parsed: RTCIceCandidate = aiortc.sdp.candidate_from_sdp(text)
    parsed.sdpMid = candidate.get("sdpMid")
    parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
    return parsed
