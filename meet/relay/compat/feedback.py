"""Transport-wide congestion control with subscribers: negotiation, and its feedback received.

aiortc knows neither the transport-wide-cc header extension in negotiation nor the
``transport-cc`` RTCP feedback (it would parse a TWCC feedback, RTPFB FMT 15, as a NACK).
Both directions use them on video: the relay's bandwidth estimate of a subscriber
(``meet.relay.bwe.Link``) comes from the feedback the browser sends about the relay's
packets, and a publishing browser estimates its own uplink from the feedback the relay sends
about its packets (``meet.relay.uplink``; this replaces the REMB aiortc would send).

- :func:`accept_transport_cc`: right after ``setRemoteDescription`` of a client's offer or
  answer, each video m-line on which the client lists the extension keeps it, with the
  client's id, in the transceiver's ``_headerExtensions`` (what the answer, the transport's
  extension map and the forwarding code read), and each codec the client marked
  ``transport-cc`` gets that ``rtcpFeedback`` back (aiortc's ``find_common_codecs`` drops
  what its own codec list lacks).
- :func:`offer_transport_cc`: the relay's own offers (after ``forwarding.rewrite_offer``) list
  the extension, with the id of :func:`transport_cc_id` (the client's, when it ever used one),
  and ``a=rtcp-fb:<pt> transport-cc`` on every video m-line.
- :func:`on_transport_feedback`: per ``RTCDtlsTransport`` instance, ``_handle_rtcp_data`` is
  wrapped; each TWCC packet of a compound RTCP packet goes to the callback (its FCI, the
  arrival time), the rest to the stock handler.

:func:`problems` is part of ``meet.relay.compat.check``.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import Any

import aiortc.codecs
import aiortc.sdp
from aiortc import RTCPeerConnection, RTCRtpHeaderExtensionParameters
from aiortc.rtcrtpparameters import RTCRtcpFeedback

log = logging.getLogger("meet.relay.feedback")

URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
FEEDBACK = RTCRtcpFeedback(type="transport-cc")
DEFAULT_ID = 5  # when the client never used one: free among aiortc's (1–3) and simulcast's (10, 11)
RTPFB, FMT_TWCC = 205, 15
_HOOKED = "_meet_transport_feedback"  # a hooked transport's current callback
_HEADER = struct.Struct("!BBH")

Callback = Callable[[bytes, float], None]


# --- negotiation --------------------------------------------------------------------------------


def accept_transport_cc(pc: RTCPeerConnection, sdp: str) -> None:
    """After ``pc.setRemoteDescription(sdp)``: keep transport-cc where the client offers it on video."""
    by_mid = {media.rtp.muxId: media for media in aiortc.sdp.SessionDescription.parse(sdp).media}
    for transceiver in pc.getTransceivers():
        media = by_mid.get(transceiver.mid) if transceiver.mid is not None else None
        if media is None or media.kind != "video":
            continue
        extension = next((e for e in media.rtp.headerExtensions if e.uri == URI), None)
        if extension is None:
            continue
        if all(e.uri != URI for e in transceiver._headerExtensions):
            transceiver._headerExtensions = [*transceiver._headerExtensions, extension]
        marked = {c.payloadType for c in media.rtp.codecs if FEEDBACK in c.rtcpFeedback}
        for codec in transceiver._codecs:
            if codec.payloadType in marked and FEEDBACK not in codec.rtcpFeedback:
                codec.rtcpFeedback = [*codec.rtcpFeedback, FEEDBACK]


def transport_cc_id(extension_ids: dict[str, int]) -> int:
    """The extension's id on this connection: the client's, else :data:`DEFAULT_ID` or a free one.

    ``extension_ids`` (uri → id, all the connection ever used) records the choice.
    """
    if URI not in extension_ids:
        used = set(extension_ids.values())
        free = [i for i in range(1, 15) if i not in used]
        if not free:
            raise ValueError("no one-byte header extension id left for transport-wide cc")
        extension_ids[URI] = DEFAULT_ID if DEFAULT_ID in free else free[0]
    return extension_ids[URI]


def offer_transport_cc(sdp: str, extension_id: int) -> str:
    """The relay's offer with transport-cc on every video m-line."""
    description = aiortc.sdp.SessionDescription.parse(sdp)
    for media in description.media:
        if media.kind != "video":
            continue
        if all(e.uri != URI for e in media.rtp.headerExtensions):
            media.rtp.headerExtensions.append(RTCRtpHeaderExtensionParameters(id=extension_id, uri=URI))
        for codec in media.rtp.codecs:
            if not aiortc.codecs.is_rtx(codec) and FEEDBACK not in codec.rtcpFeedback:
                codec.rtcpFeedback = [*codec.rtcpFeedback, FEEDBACK]
    return str(description)


# --- feedback received --------------------------------------------------------------------------


def on_transport_feedback(dtls: Any, callback: Callback) -> None:
    """Deliver each TWCC feedback arriving on ``dtls`` to ``callback(fci, arrival_seconds)``.

    Calling it again for the same transport replaces the callback. Everything else in a
    compound RTCP packet keeps the stock handling.
    """
    already = hasattr(dtls, _HOOKED)
    setattr(dtls, _HOOKED, callback)
    if already:
        return
    stock = dtls._handle_rtcp_data

    async def handle_rtcp_data(data: bytes) -> None:
        rest = _take_feedback(data, getattr(dtls, _HOOKED), time.time())
        if rest:
            await stock(rest)

    dtls._handle_rtcp_data = handle_rtcp_data


def _take_feedback(data: bytes, callback: Callback, now: float) -> bytes:
    """Hand the TWCC packets of a compound RTCP packet to ``callback``; the others' bytes."""
    rest: list[bytes] = []
    offset = 0
    while offset + 4 <= len(data):
        first, packet_type, words = _HEADER.unpack_from(data, offset)
        end = offset + (words + 1) * 4
        if first >> 6 != 2 or end > len(data):
            break  # not RTCP as we know it: leave the rest to the stock parser
        if packet_type == RTPFB and first & 0x1F == FMT_TWCC:
            _deliver(data, offset, end, first & 0x20, callback, now)
        else:
            rest.append(data[offset:end])
        offset = end
    rest.append(data[offset:])
    return b"".join(rest)


def _deliver(data: bytes, offset: int, end: int, padded: int, callback: Callback, now: float) -> None:
    """One TWCC packet's FCI (padding removed) to ``callback``; a callback's failure is logged."""
    if padded:
        end -= data[end - 1]
    if end - offset < 12:
        log.debug("a transport-cc feedback without room for its FCI: ignored")
        return
    try:
        callback(data[offset + 12 : end], now)
    except Exception:  # one bad feedback must not end the transport's RTCP handling
        log.exception("transport-cc feedback callback failed")


# --- the guard ----------------------------------------------------------------------------------


def problems() -> list[str]:
    """What ``compat.check`` reports if aiortc's SDP code no longer carries transport-cc through."""
    lines = [
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:0", "a=recvonly",
        f"a=extmap:7 {URI}", "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 transport-cc",
    ]  # fmt: skip
    text = "\r\n".join(lines) + "\r\n"
    try:
        media = aiortc.sdp.SessionDescription.parse(text).media[0]
        written = str(aiortc.sdp.SessionDescription.parse(text))
        seen = (
            [(e.id, e.uri) for e in media.rtp.headerExtensions] == [(7, URI)]
            and FEEDBACK in media.rtp.codecs[0].rtcpFeedback
            and "a=rtcp-fb:96 transport-cc" in written
            and f"a=extmap:7 {URI}" in written
        )
    except Exception as exc:  # noqa: BLE001 - any surprise here is exactly what we report
        return [f"parsing transport-cc in a session description failed: {exc!r}"]
    return [] if seen else ["aiortc.sdp no longer carries the transport-cc extmap and rtcp-fb"]
