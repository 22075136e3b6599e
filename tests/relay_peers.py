"""Test helpers for the relay worker: real aiortc client peers around an in-process ``Relay``.

A :class:`Hub` owns one :class:`meet.relay.worker.Relay` and routes its events to
:class:`TestPeer` objects, which behave like the browser client of the relay contract: one
``RTCPeerConnection``, the first offer (microphone + camera, optionally a screen and ``recvonly``
slots), answers to the relay's offers. Each peer publishes synthetic media — VP8 video of
changing frames and Opus audio — really encoded by aiortc, decodes what it receives, and records
on both sides what went over the wire so tests can compare codec payloads byte for byte.

Capture points (aiortc internals are fine in tests): outgoing RTP at the client's
``RTCDtlsTransport._send_rtp`` (after packetization, before SRTP; optional loss of every n-th
camera packet there), incoming RTP at each
``RTCRtpReceiver._handle_rtp_packet`` (after SRTP, before depacketizing; RTX unwrapped here),
and optional loss injection at ``RTCDtlsTransport._handle_rtp_data`` (every n-th packet of
each SSRC, retransmissions included).
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy
from aiortc import (
    MediaStreamError,
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtp import RtcpSrPacket, RtpPacket, is_rtcp
from aiortc.sdp import SessionDescription
from av import AudioFrame, VideoFrame

from meet.relay.forward import vp8_picture_id
from meet.relay.worker import Relay

ROOM = "room-1"

# Chrome's numbering (aiortc's own: opus 96, VP8 97, RTX 98; mid 1, audio level 2, abs-send-time 3).
CHROME_PAYLOAD_TYPES = {96: 111, 97: 96, 98: 97, 99: 102, 100: 103, 101: 104, 102: 105}
CHROME_EXTENSION_IDS = {1: 4, 2: 1, 3: 2}


def chrome_numbering(sdp: str) -> str:
    """An aiortc offer renumbered like Chrome's: other payload types and header extension ids."""
    description = SessionDescription.parse(sdp)
    for media in description.media:
        for codec in media.rtp.codecs:
            codec.payloadType = CHROME_PAYLOAD_TYPES.get(codec.payloadType, codec.payloadType)
            if "apt" in codec.parameters:
                codec.parameters["apt"] = CHROME_PAYLOAD_TYPES[codec.parameters["apt"]]
        media.fmt = [c.payloadType for c in media.rtp.codecs]
        for extension in media.rtp.headerExtensions:
            extension.id = CHROME_EXTENSION_IDS[extension.id]
    return str(description)


class SyntheticVideo(MediaStreamTrack):
    """Moving bars and a frame-dependent block: every frame differs, so VP8 codes real content."""

    kind = "video"

    def __init__(self, fps: int = 20, width: int = 320, height: int = 240, shade: int = 0) -> None:
        super().__init__()
        self.fps, self.width, self.height, self.shade = fps, width, height, shade
        self.count = 0
        self.start: float | None = None
        self.ramp = numpy.tile(numpy.arange(width, dtype=numpy.uint16), (height, 1))

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.time()
        wait = self.start + self.count / self.fps - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        n = self.count
        self.count += 1
        luma = ((self.ramp + 4 * n + self.shade) % 256).astype(numpy.uint8)
        top = (n * 7) % (self.height - 40)
        luma[top : top + 40, 40:120] = (n * 37) % 256
        chroma = numpy.full((self.height // 2, self.width), 128 + (self.shade % 64), numpy.uint8)
        frame = VideoFrame.from_ndarray(numpy.vstack([luma, chroma]), format="yuv420p")
        frame.pts = n * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


class SineAudio(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames (48 kHz mono); digital silence while ``loud`` is False.

    aiortc's sender puts each frame's level in the RFC 6464 header extension (about -15 dBov for
    the tone, -127 for silence): what the relay's dominant-speaker detection reads.
    """

    kind = "audio"

    def __init__(self, loud: bool = True) -> None:
        super().__init__()
        self.samples = 0
        self.start: float | None = None
        self.loud = loud

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.time()
        wait = self.start + self.samples / 48000 - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (numpy.arange(960) + self.samples) / 48000
        amplitude = 8000 if self.loud else 0
        data = (numpy.sin(2 * numpy.pi * 440 * t) * amplitude).astype(numpy.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.samples
        frame.time_base = fractions.Fraction(1, 48000)
        self.samples += 960
        return frame


async def alice_to_bob(hub: Hub) -> tuple[TestPeer, str]:
    """alice publishes; bob, on one audio and one video slot, has decoded 10 of her frames.

    Returns bob and the mid of alice's camera at bob (alice is ``hub.peers["alice"]``).
    """
    alice, bob = TestPeer(hub, "alice"), TestPeer(hub, "bob", audio=False, video=False, recvonly=(1, 1))
    await alice.join()
    await bob.join()
    await until(lambda: len(bob.tracks) == 2, 10, "bob's tracks")
    (camera,) = bob.mids_of("alice")
    await until(lambda: len(bob.frames.get(camera, [])) >= 10, 20, "10 frames decoded at bob")
    return bob, camera


def run_hub(
    scenario: Callable[[Hub], Any],
    timeout: float = 60,
    host_addresses: tuple[str, ...] = ("127.0.0.1",),
    slots: tuple[int, int] = (9, 3),
) -> None:
    """Run ``scenario(hub)`` against a configured in-process relay in a fresh event loop; tear down.

    ``slots``: the receive slots (video, audio) of each connection; (0, 3) is one m-line per
    publication of the others. Peers with a ``stop()`` (a ``SimulcastPublisher``'s sending
    task) are stopped first.
    """

    async def main() -> None:
        hub = Hub()
        await hub.configure(list(host_addresses), slots)
        try:
            await asyncio.wait_for(scenario(hub), timeout)
        finally:
            for peer in list(hub.peers.values()):
                stop = getattr(peer, "stop", None)
                if stop is not None:
                    await stop()
            await hub.close()

    asyncio.run(main())


class Hub:
    """One in-process relay and the test peers talking to it."""

    def __init__(self) -> None:
        self.relay = Relay(on_event=self._event)
        self.peers: dict[str, TestPeer] = {}
        self.events: list[dict[str, Any]] = []

    async def configure(self, host_addresses: list[str] | None = None, slots: tuple[int, int] = (9, 3)) -> None:
        reply = await self.relay.handle(
            {
                "id": 0,
                "op": "configure",
                "ice_servers": [],
                "host_addresses": host_addresses or [],
                "udp_ports": None,
                "video_slots": slots[0],
                "audio_slots": slots[1],
            }
        )
        assert reply["ok"], reply

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        reply = await self.relay.handle({"id": 1, "op": op, "room": ROOM, **fields})
        assert reply["ok"], reply
        return reply

    async def stats(self) -> dict[str, Any]:
        return await self.relay.handle({"id": 2, "op": "stats"})

    def _event(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        peer = self.peers.get(message["peer"])
        if peer is not None:
            peer.on_event(message)

    async def close(self) -> None:
        for peer in list(self.peers.values()):
            await peer.pc.close()
        await self.relay.close()


class TestPeer:
    """A client of the relay: publishes, answers the relay's offers, decodes and records."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        hub: Hub,
        peer: str,
        *,
        audio: bool = True,
        video: bool = True,
        screen: bool = False,
        recvonly: tuple[int, int] = (0, 0),
        shade: int = 0,
        chrome: bool = False,
        size: tuple[int, int] = (320, 240),
        fps: int = 20,
    ) -> None:
        self.hub, self.peer = hub, peer
        self.audio, self.video, self.screen, self.recvonly, self.shade = audio, video, screen, recvonly, shade
        self.chrome = chrome  # number payload types and extension ids like Chrome, not like aiortc
        self.size, self.fps = size, fps  # of its camera
        self.voice = SineAudio()  # its microphone: set voice.loud to speak or fall silent
        # A browser answers the relay's offers after a signaling round trip, typically after
        # its ICE/DTLS handshake completed; in-process answers would come before it.
        self.answer_delay = 0.3 if chrome else 0.0
        hub.peers[peer] = self
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.pc.on("track", self._on_track)
        self.tracks: dict[str, dict[str, str]] = {}  # the relay's "tracks": mid -> {publisher, source}
        self.tracks_events: list[list[dict[str, str]]] = []
        self.frames: dict[str, list[float]] = defaultdict(list)  # mid -> times video frames decoded
        self.sent: dict[int, dict[int, bytes]] = defaultdict(dict)  # camera: picture id -> seq -> payload
        self.received: dict[str, dict[int, dict[int, bytes]]] = defaultdict(lambda: defaultdict(dict))
        self.last_rtp: dict[str, tuple[int, float]] = {}  # mid -> (RTP timestamp, arrival) of the newest
        self.rtp_count: dict[str, int] = defaultdict(int)  # mid -> media packets (not RTX) received
        self.reports: list[tuple[str, Any, float, tuple[int, float] | None, int]] = []  # SRs received
        self.offers_applied = 0
        self.auto_answer = True
        self.held_offers: list[str] = []
        self.loss_every = 0  # drop every n-th incoming RTP packet of each SSRC (0: none)
        self.send_loss_every = 0  # drop every n-th outgoing camera packet (after recording it)
        self.sent_dropped = self.sent_count = 0
        self._per_ssrc: dict[bytes, int] = {}
        self.rtp_in = self.dropped = 0
        self.camera_ssrc: int | None = None
        self._lock = asyncio.Lock()
        self._hooked: set[RTCRtpTransceiver] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- the contract -----------------------------------------------------------------------------

    async def join(self) -> None:
        """open, then the first offer (mic, camera, screen, recvonly slots) and the relay's answer."""
        await self.hub.request("open", peer=self.peer)
        if self.audio:
            self.pc.addTransceiver(self.voice, direction="sendrecv")
        if self.video:
            camera = self.pc.addTransceiver(SyntheticVideo(self.fps, *self.size, shade=self.shade), direction="sendrecv")
            self.camera_ssrc = camera.sender._ssrc
        if self.screen:
            self.pc.addTransceiver(SyntheticVideo(fps=5, shade=self.shade + 100), direction="sendrecv")
        for kind, count in zip(("audio", "video"), self.recvonly):
            for _ in range(count):
                self.pc.addTransceiver(kind, direction="recvonly")
        self._hook_transport()
        async with self._lock:
            offer = await self.pc.createOffer()
            sdp = chrome_numbering(offer.sdp) if self.chrome else offer.sdp
            await self.pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            reply = await self.hub.request("offer", peer=self.peer, sdp=self.pc.localDescription.sdp)
            assert "sdp" in reply, reply
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
            self._hook_receivers()

    async def offer_without_applying(self) -> dict[str, Any]:
        """Send a fresh client offer (to provoke glare) without applying it locally.

        aiortc cannot roll back, so this client keeps its offer out of its own state: a relay
        that ignores it leaves the client exactly where a polite browser's rollback would.
        """
        offer = await self.pc.createOffer()
        return await self.hub.relay.handle(
            {"id": 3, "op": "offer", "room": ROOM, "peer": self.peer, "sdp": offer.sdp}
        )

    async def leave(self) -> None:
        await self.hub.request("close", peer=self.peer)
        await self.pc.close()
        self.hub.peers.pop(self.peer, None)

    def on_event(self, message: dict[str, Any]) -> None:
        kind = message["event"]
        if kind == "tracks":
            self.tracks_events.append(message["tracks"])
            self.tracks = {  # empty receive slots left out: they carry nothing
                t["mid"]: {"publisher": t["publisher"], "source": t["source"]}
                for t in message["tracks"]
                if t["publisher"] is not None
            }
        elif kind == "offer":
            if self.auto_answer:
                self._spawn(self.answer(message["sdp"]))
            else:
                self.held_offers.append(message["sdp"])

    async def answer(self, sdp: str) -> None:
        """Apply a relay offer and answer it."""
        await asyncio.sleep(self.answer_delay)
        async with self._lock:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            self._hook_receivers()
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.hub.request("answer", peer=self.peer, sdp=self.pc.localDescription.sdp)
            self.offers_applied += 1

    # --- what a test looks at ---------------------------------------------------------------------

    def mids_of(self, publisher: str, source: str = "camera") -> list[str]:
        return [mid for mid, t in self.tracks.items() if t == {"publisher": publisher, "source": source}]

    def transceiver(self, mid: str) -> RTCRtpTransceiver:
        return next(t for t in self.pc.getTransceivers() if t.mid == mid)

    def decoded_since(self, mid: str, since: float) -> int:
        return sum(1 for t in self.frames.get(mid, []) if t >= since)

    def first_frame_after(self, mid: str, since: float) -> float | None:
        return next((t for t in self.frames.get(mid, []) if t >= since), None)

    def longest_gap(self, mid: str, since: float, until_time: float) -> float:
        """The longest time without a decoded frame on ``mid`` within [since, until_time]."""
        times = [since] + [t for t in self.frames.get(mid, []) if since <= t <= until_time] + [until_time]
        return max(b - a for a, b in itertools.pairwise(times))

    # --- plumbing ---------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._spawn(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track)
        try:
            while True:
                await track.recv()
                if track.kind == "video":
                    self.frames[str(mid)].append(time.time())
        except MediaStreamError:
            pass

    def _hook_transport(self) -> None:
        """Record my camera's VP8 payloads as sent; drop incoming RTP when told to."""
        dtls = self.pc.getTransceivers()[0].sender.transport
        send_rtp, handle_rtp = dtls._send_rtp, dtls._handle_rtp_data

        async def recording_send(data: bytes) -> None:
            if not is_rtcp(data) and self.camera_ssrc is not None:
                packet = RtpPacket.parse(data)
                if packet.ssrc == self.camera_ssrc:
                    found = vp8_picture_id(packet.payload)
                    if found is not None:
                        self.sent[found[2]][packet.sequence_number] = packet.payload
                    self.sent_count += 1
                    if self.send_loss_every and self.sent_count % self.send_loss_every == 0:
                        self.sent_dropped += 1
                        return  # lost on the way to the relay
            await send_rtp(data)

        async def lossy_receive(data: bytes, arrival_time_ms: int) -> None:
            self.rtp_in += 1
            ssrc = data[8:12]  # count per stream, so a periodic drop cannot hit only one kind
            count = self._per_ssrc[ssrc] = self._per_ssrc.get(ssrc, 0) + 1
            if self.loss_every and count % self.loss_every == 0:
                self.dropped += 1
                return
            await handle_rtp(data, arrival_time_ms)

        dtls._send_rtp = recording_send
        dtls._handle_rtp_data = lossy_receive

    def _hook_receivers(self) -> None:
        """Record each received video payload (RTX unwrapped), by mid and picture id."""
        for transceiver in self.pc.getTransceivers():
            if transceiver in self._hooked or transceiver.kind != "video":
                continue
            self._hooked.add(transceiver)
            receiver = transceiver.receiver
            receiver._handle_rtp_packet = self._recorder(transceiver, receiver._handle_rtp_packet)
            receiver._handle_rtcp_packet = self._report_recorder(transceiver, receiver._handle_rtcp_packet)

    def _report_recorder(
        self, transceiver: RTCRtpTransceiver, stock: Callable[..., Any]
    ) -> Callable[..., Any]:
        """Keep each sender report with what had arrived on that m-line when it came."""

        async def record(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                mid = str(transceiver.mid)
                self.reports.append(
                    (mid, packet.sender_info, time.time(), self.last_rtp.get(mid), self.rtp_count[mid])
                )
            await stock(packet)

        return record

    def _recorder(self, transceiver: RTCRtpTransceiver, stock: Callable[..., Any]) -> Callable[..., Any]:
        async def record(packet: RtpPacket, arrival_time_ms: int) -> None:
            codecs = {c.payloadType: c for c in transceiver._codecs}
            codec = codecs.get(packet.payload_type)
            payload, seq = packet.payload, packet.sequence_number
            if codec is not None and codec.mimeType.lower() == "video/rtx" and len(payload) >= 2:
                seq, payload = int.from_bytes(payload[:2], "big"), payload[2:]
            elif codec is not None:
                self.last_rtp[str(transceiver.mid)] = (packet.timestamp, time.time())
                self.rtp_count[str(transceiver.mid)] += 1
            found = vp8_picture_id(payload) if payload else None
            if found is not None:
                self.received[str(transceiver.mid)][found[2]][seq] = payload
            await stock(packet, arrival_time_ms)

        return record


def picture(packets: dict[int, bytes]) -> bytes:
    """One picture's payloads in sequence order (modulo 2**16)."""
    seqs = sorted(packets)
    if seqs and seqs[-1] - seqs[0] > 0x8000:  # wrapped around
        seqs = sorted(seqs, key=lambda s: (s + 0x8000) & 0xFFFF)
    return b"".join(packets[s] for s in seqs)


async def until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll ``predicate`` every ``interval`` seconds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
