"""A test client publishing one video m-line in three simulcast layers, as Chrome does.

:class:`SimulcastPublisher` is an aiortc peer of a :class:`relay_peers.Hub`. Its offer is
munged into Chrome's simulcast form: on the camera m-line ``a=rid:<id> send`` for each layer,
``a=simulcast:send q;h;f``, the rtp-stream-id and repaired-rtp-stream-id extmaps, and no
``a=ssrc`` lines (the relay cannot know the layers' SSRCs in advance). aiortc's own sender on
that m-line never sends (its track yields nothing); the layers are pre-encoded VP8 at
80x60, 160x120 and 320x240 (:func:`encoded_layers`, encoded once per test run with aiortc's
encoder, a keyframe every :data:`KEYFRAME_EVERY` frames), replayed at :data:`FPS` on three
SSRCs straight through the client's DTLS transport, each packet with the mid and rid header
extensions while :attr:`SimulcastPublisher.send_rids` is true (Chrome stops sending them once
the SSRCs are established), and a sender report per layer every second. NACKs are answered with RTX carrying the repaired-rid extension;
the RTCP the relay sends is recorded (NACKs, PLIs).

Optionally a second video m-line (``screen``) publishes aiortc-encoded video the usual way
(with ``a=ssrc``): two receiving video m-lines share VP8's payload type in the BUNDLE, so the
relay cannot route the layers by payload type.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import random
import re
import struct
import time
from typing import Any

import numpy
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCSessionDescription,
)
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import (
    HeaderExtensionsMap,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
)
from av import VideoFrame
from relay_peers import Hub, SineAudio, SyntheticVideo, until

from meet.relay.compat import forwarding, simulcast
from meet.relay.forward import vp8_keyframe_start
from meet.relay.slot import ForwardTrack

LAYERS = (("q", 80, 60), ("h", 160, 120), ("f", 320, 240))  # rid, width, height: low to high
FPS = 20
KEYFRAME_EVERY = 20
FRAMES = 60  # replayed in a loop (3 s)
TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
TRANSPORT_CC_ID = 5
RID_ID, REPAIRED_RID_ID = 10, 11  # Chrome's extmap ids
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
NTP_EPOCH = 2208988800


def _frame(n: int, width: int, height: int) -> VideoFrame:
    """Moving content: every frame differs, so every frame codes real data."""
    luma = ((numpy.tile(numpy.arange(width), (height, 1)) + 5 * n) % 256).astype(numpy.uint8)
    top = (n * 3) % (height - height // 4)
    luma[top : top + height // 4, width // 8 : width // 3] = (n * 37) % 256
    chroma = numpy.full((height // 2, width), 128, numpy.uint8)
    frame = VideoFrame.from_ndarray(numpy.vstack([luma, chroma]), format="yuv420p")
    frame.pts = n * (90000 // FPS)
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


@functools.cache
def encoded_layers() -> dict[str, list[list[bytes]]]:
    """rid -> frames -> the frame's VP8 RTP payloads (aiortc's encoder and packetizer)."""
    layers: dict[str, list[list[bytes]]] = {}
    for rid, width, height in LAYERS:
        encoder = Vp8Encoder()
        frames = []
        for n in range(FRAMES):
            payloads, _timestamp = encoder.encode(
                _frame(n, width, height), force_keyframe=n % KEYFRAME_EVERY == 0
            )
            frames.append(payloads)
        assert vp8_keyframe_start(frames[0][0])
        layers[rid] = frames
    return layers


def chrome_simulcast_offer(sdp: str, mid: str, rids: list[str], simulcast_line: str | None = None) -> str:
    """aiortc's offer with Chrome's simulcast attributes on the m-line ``mid`` and no a=ssrc there.

    ``simulcast_line`` replaces the ``a=simulcast`` line (to test malformed ones).
    """
    head, *sections = re.split(r"\r\n(?=m=)", sdp.rstrip("\r\n"))
    out = [head]
    for section in sections:
        lines = section.split("\r\n")
        if f"a=mid:{mid}" in lines:
            lines = [line for line in lines if not line.startswith(("a=ssrc:", "a=ssrc-group:"))]
            lines += [
                f"a=extmap:{RID_ID} {simulcast.RID_URI}",
                f"a=extmap:{REPAIRED_RID_ID} {simulcast.REPAIRED_RID_URI}",
            ]
            lines += [f"a=rid:{rid} send" for rid in rids]
            lines.append(
                simulcast_line if simulcast_line is not None else "a=simulcast:send " + ";".join(rids)
            )
        out.append("\r\n".join(lines))
    return "\r\n".join(out) + "\r\n"


def with_transport_cc(sdp: str, mid: str) -> str:
    """Transport-wide cc offered on the m-line ``mid``, as Chrome offers it."""
    head, *sections = re.split(r"\r\n(?=m=)", sdp.rstrip("\r\n"))
    out = [head]
    for section in sections:
        lines = section.split("\r\n")
        if f"a=mid:{mid}" in lines:
            types = [line.split()[0][9:] for line in lines if line.startswith("a=rtpmap:") and "VP8" in line]
            lines += [f"a=extmap:{TRANSPORT_CC_ID} {TRANSPORT_CC_URI}"]
            lines += [f"a=rtcp-fb:{pt} transport-cc" for pt in types]
        out.append("\r\n".join(lines))
    return "\r\n".join(out) + "\r\n"


def chrome_simulcast_answer(sdp: str, relay_offer: str) -> str:
    """aiortc's answer to a relay offer, with the send side of the simulcast the offer receives.

    Like Chrome's, it keeps the stream-id and transport-cc header extensions the offer lists on
    those m-lines (aiortc drops extensions it does not know): else they would no longer be
    negotiated.
    """
    wanted = {mid: rids for mid, rids in _received_rids(relay_offer).items()}
    rid_maps = _rid_extmaps(relay_offer)
    head, *sections = re.split(r"\r\n(?=m=)", sdp.rstrip("\r\n"))
    out = [head]
    for section in sections:
        lines = section.split("\r\n")
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        if mid in wanted:
            lines = [line for line in lines if not line.startswith(("a=ssrc:", "a=ssrc-group:"))]
            at = next(i for i, line in enumerate(lines) if line.startswith("a=mid:"))
            lines[at:at] = [line for line in rid_maps.get(mid, []) if line not in lines]
            lines += [f"a=rid:{rid} send" for rid in wanted[mid]]
            lines.append("a=simulcast:send " + ";".join(wanted[mid]))
        out.append("\r\n".join(lines))
    return "\r\n".join(out) + "\r\n"


_KEPT_EXTENSION = re.compile(r"rtp-stream-id|transport-wide-cc")


def _rid_extmaps(sdp: str) -> dict[str, list[str]]:
    """mid -> the ``a=extmap`` lines of the stream-id and transport-cc extensions of a description."""
    found: dict[str, list[str]] = {}
    for section in re.split(r"\r\n(?=m=)", sdp)[1:]:
        lines = section.split("\r\n")
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        if mid is not None:
            found[mid] = [line for line in lines if line.startswith("a=extmap:") and _KEPT_EXTENSION.search(line)]
    return found


def _received_rids(sdp: str) -> dict[str, list[str]]:
    """mid -> the ``a=simulcast:recv`` list of a description."""
    found: dict[str, list[str]] = {}
    for section in re.split(r"\r\n(?=m=)", sdp)[1:]:
        lines = section.split("\r\n")
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        for line in lines:
            if mid is not None and line.startswith("a=simulcast:recv "):
                found[mid] = line.split()[1].split(";")
    return found


class Layer:
    """One simulcast encoding as sent: SSRCs, sequence numbers, what went out."""

    def __init__(self, rid: str, frames: list[list[bytes]]) -> None:
        self.rid, self.frames = rid, frames
        self.ssrc, self.rtx_ssrc = random.getrandbits(32), random.getrandbits(32)
        self.seq, self.rtx_seq = random.randrange(0x8000), random.randrange(0x8000)
        self.ts_offset = random.getrandbits(32)  # each SSRC has its own RTP timestamp origin
        self.reports: list[tuple[int, int]] = []  # (NTP, RTP timestamp) of each sender report sent
        self.sent: dict[int, tuple[int, int, bytes]] = {}  # seq -> (timestamp, marker, payload)
        self.dropped: list[int] = []  # sequence numbers "lost" on the way (never sent)
        self.drop_next = False  # lose the next packet that does not start a keyframe
        self.retransmitted: list[int] = []


class SimulcastPublisher:
    """A participant publishing audio and a three-layer simulcast camera (and maybe a screen)."""

    def __init__(self, hub: Hub, peer: str, *, screen: bool = False, transport_cc: bool = False) -> None:
        self.hub, self.peer, self.screen = hub, peer, screen
        # Number every camera packet for transport-wide cc, as browsers do when it is negotiated.
        self.transport_cc = transport_cc
        self.transport_seq = random.randrange(0x10000)
        self.numbered: list[int] = []  # transport-wide sequence numbers sent (lost ones included)
        self.lose_every = 0  # skip sending every n-th numbered packet (0: none)
        self.feedback: list[bytes] = []  # the FCI of each transport-cc feedback from the relay
        self.rembs = 0  # REMB packets from the relay
        hub.peers[peer] = self  # type: ignore[assignment]  # the hub routes events by peer
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.layers = [Layer(rid, frames) for (rid, _w, _h), frames in zip(LAYERS, encoded_layers().values())]
        self.send_rids = True  # the mid and rid extensions on every packet (Chrome stops after a while)
        self.obey_layers = False  # follow the relay's ``layers`` (dynacast) as the call page does
        self.paused: set[str] = set()  # encodings not sent: the relay's ``layers`` asked for others
        self.answer_sdp = ""  # the relay's answer to the first offer
        self.relay_offers: list[str] = []
        self.nacks: list[tuple[int, list[int]]] = []  # (media SSRC, lost) of each NACK from the relay
        self.plis: list[int] = []  # media SSRC of each PLI from the relay
        self.camera_mid = ""
        self._timestamp = random.getrandbits(32)
        self._frame = 0
        self._ids = HeaderExtensionsMap()
        self._send: Any = None
        self._send_rtcp: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- the contract -----------------------------------------------------------------------------

    async def join(self, simulcast_line: str | None = None, rids: list[str] | None = None) -> None:
        """open, the munged first offer, the relay's answer; then the layers start."""
        await self.hub.request("open", peer=self.peer)
        self.pc.addTransceiver(SineAudio(), direction="sendrecv")
        camera = self.pc.addTransceiver(ForwardTrack("video"), direction="sendrecv")
        if self.screen:
            self.pc.addTransceiver(SyntheticVideo(fps=5, shade=90), direction="sendrecv")
        dtls = camera.sender.transport
        self._hook_rtcp(dtls)
        async with self._lock:
            await self.pc.setLocalDescription(await self.pc.createOffer())
            self.camera_mid = str(camera.mid)
            rids = rids if rids is not None else [layer.rid for layer in self.layers]
            sdp = chrome_simulcast_offer(self.pc.localDescription.sdp, self.camera_mid, rids, simulcast_line)
            if self.transport_cc:
                sdp = with_transport_cc(sdp, self.camera_mid)
            reply = await self.hub.request("offer", peer=self.peer, sdp=sdp)
            self.answer_sdp = reply["sdp"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        await until(lambda: dtls.state == "connected", 10, "the publisher's DTLS connected")
        self._configure(camera)
        self._send = forwarding.transport_sender(dtls)
        self._send_rtcp = forwarding.transport_sender(dtls, rtcp=True)
        self._task = asyncio.ensure_future(self._run())

    def on_event(self, message: dict[str, Any]) -> None:
        if message["event"] == "layers" and message["source"] == "camera" and self.obey_layers:
            self.paused = {layer.rid for layer in self.layers} - set(message["rids"])
        if message["event"] == "offer":
            self.relay_offers.append(message["sdp"])
            task = asyncio.ensure_future(self._answer(message["sdp"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, sdp: str) -> None:
        async with self._lock:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            answer = chrome_simulcast_answer(self.pc.localDescription.sdp, sdp)
            await self.hub.request("answer", peer=self.peer, sdp=answer)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # --- sending ----------------------------------------------------------------------------------

    def _configure(self, camera: Any) -> None:
        codecs = camera._codecs
        self.pt = next(c.payloadType for c in codecs if c.mimeType.lower() == "video/vp8")
        self.rtx_pt = next(
            c.payloadType
            for c in codecs
            if c.mimeType.lower() == "video/rtx" and c.parameters.get("apt") == self.pt
        )
        ids = {ext.uri: ext.id for ext in camera._headerExtensions}
        self._ids.configure(
            RTCRtpParameters(
                headerExtensions=[
                    RTCRtpHeaderExtensionParameters(id=ids[MID_URI], uri=MID_URI),
                    RTCRtpHeaderExtensionParameters(id=ids[ABS_SEND_TIME_URI], uri=ABS_SEND_TIME_URI),
                    RTCRtpHeaderExtensionParameters(id=RID_ID, uri=simulcast.RID_URI),
                    RTCRtpHeaderExtensionParameters(id=REPAIRED_RID_ID, uri=simulcast.REPAIRED_RID_URI),
                    RTCRtpHeaderExtensionParameters(id=TRANSPORT_CC_ID, uri=TRANSPORT_CC_URI),
                ]
            )
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            n = self._frame
            for layer in self.layers:
                if layer.rid not in self.paused:
                    self._send_frame(layer, layer.frames[n % FRAMES])
            self._frame += 1
            self._timestamp = (self._timestamp + 90000 // FPS) & 0xFFFFFFFF
            await asyncio.sleep(max(0.0, start + self._frame / FPS - loop.time()))

    def _send_frame(self, layer: Layer, payloads: list[bytes]) -> None:
        timestamp = (self._timestamp + layer.ts_offset) & 0xFFFFFFFF
        if self._frame % FPS == 0:  # a sender report per layer every second, as browsers do
            self._send_report(layer, timestamp)
        for i, payload in enumerate(payloads):
            marker = int(i == len(payloads) - 1)
            seq = layer.seq
            layer.seq = (layer.seq + 1) & 0xFFFF
            layer.sent[seq] = (timestamp, marker, payload)
            if layer.drop_next and not vp8_keyframe_start(payload):
                layer.drop_next = False
                layer.dropped.append(seq)
                continue
            packet = RtpPacket(self.pt, marker, seq, timestamp, layer.ssrc, payload)
            self._extensions(packet, rid=layer.rid)
            if self._numbered_and_lost(packet):
                continue
            self._send(packet.serialize(self._ids))

    def _numbered_and_lost(self, packet: RtpPacket) -> bool:
        """Number a packet for transport-wide cc (when negotiated); whether to lose it."""
        if not self.transport_cc:
            return False
        self.transport_seq = (self.transport_seq + 1) & 0xFFFF
        packet.extensions.transport_sequence_number = self.transport_seq
        self.numbered.append(self.transport_seq)
        return bool(self.lose_every) and len(self.numbered) % self.lose_every == 0

    def _send_report(self, layer: Layer, timestamp: int) -> None:
        seconds = time.time() + NTP_EPOCH
        ntp = (int(seconds) << 32) | int((seconds % 1) * 2**32)
        info = RtcpSenderInfo(ntp_timestamp=ntp, rtp_timestamp=timestamp, packet_count=0, octet_count=0)
        layer.reports.append((ntp, timestamp))
        self._send_rtcp(bytes(RtcpSrPacket(ssrc=layer.ssrc, sender_info=info)))

    def _retransmit(self, layer: Layer, seq: int) -> None:
        found = layer.sent.get(seq)
        if found is None:
            return
        timestamp, marker, payload = found
        packet = RtpPacket(
            self.rtx_pt, marker, layer.rtx_seq, timestamp, layer.rtx_ssrc, struct.pack("!H", seq) + payload
        )
        layer.rtx_seq = (layer.rtx_seq + 1) & 0xFFFF
        self._extensions(packet, repaired=layer.rid)
        layer.retransmitted.append(seq)
        self._send(packet.serialize(self._ids))

    def _extensions(self, packet: RtpPacket, rid: str | None = None, repaired: str | None = None) -> None:
        packet.extensions.abs_send_time = (int(asyncio.get_running_loop().time() * 262144)) & 0xFFFFFF
        if self.send_rids:
            packet.extensions.mid = self.camera_mid
            packet.extensions.rtp_stream_id = rid
            packet.extensions.repaired_rtp_stream_id = repaired

    # --- RTCP from the relay ----------------------------------------------------------------------

    def _hook_rtcp(self, dtls: Any) -> None:
        stock = dtls._handle_rtcp_data

        async def handle_rtcp_data(data: bytes) -> None:
            self._take_transport_feedback(data)
            try:
                packets = RtcpPacket.parse(data)
            except ValueError:
                packets = []
            for packet in packets:
                self._on_rtcp(packet)
            await stock(data)

        dtls._handle_rtcp_data = handle_rtcp_data

    def _take_transport_feedback(self, data: bytes) -> None:
        """Keep the FCI of each transport-cc feedback (RTPFB FMT 15) of a compound packet."""
        offset = 0
        while offset + 4 <= len(data):
            first, kind, length = struct.unpack_from("!BBH", data, offset)
            end = offset + 4 * (length + 1)
            if kind == 205 and first & 0x1F == 15:
                self.feedback.append(data[offset + 12 : end])
            elif kind == 206 and first & 0x1F == 15:
                self.rembs += 1
            offset = end

    def _on_rtcp(self, packet: Any) -> None:
        by_ssrc = {layer.ssrc: layer for layer in self.layers}
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == 1:  # generic NACK
            self.nacks.append((packet.media_ssrc, list(packet.lost)))
            layer = by_ssrc.get(packet.media_ssrc)
            if layer is not None:
                for seq in packet.lost:
                    self._retransmit(layer, seq)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == 1:  # PLI
            self.plis.append(packet.media_ssrc)

    def layer(self, rid: str) -> Layer:
        return next(layer for layer in self.layers if layer.rid == rid)
