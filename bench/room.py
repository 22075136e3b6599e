"""Big relay rooms: how many participants one server holds, with receive slots and without.

N synthetic participants join one room of the real server (``meet serve``, ``[rtc] relay =
"always"``, its relay workers announcing 127.0.0.1) through its room WebSocket, like the call
page: ``welcome``, a ``view`` (speaker view: the dominant speaker in a 960x540 tile, eight others
in 320x180 thumbnails; sent again when the speaker or the roster changes), the first offer
(Opus microphone and a camera in three simulcast layers as Chrome sends them), answers to the
relay's offers. Each participant publishes replayed pre-encoded VP8 (960x540, 480x270, 240x135 at
30 fps, 1.5 Mbps / 500 / 150 kbps, a keyframe on each PLI) with the mid, rid, abs-send-time
header extensions and Opus with the RFC 6464 audio level: one participant talks at a time
(``--talk`` s each, in turn), the others are silent and send what Opus DTX sends (one tiny packet
every 400 ms). ``--modes noslots`` runs the same with ``video_slots = 0`` (one m-line per track
of everyone else, every join renegotiating everyone) and sends no ``view``, today's behaviour.

The load generator is this one process (asyncio + aiortc). It stays light: media is sent by
hand (pre-packetized VP8, headers built with ``struct``, SRTP and ``sendto`` through
``meet.relay.compat.sending``), and received RTP is counted (bytes, sequence gaps per SSRC) at
the UDP socket and dropped there, before aioice, SRTP or any decoder. Only a few *probes* (the
first two participants and each measured joiner) take the stock SRTP path, to read the send
time each video packet carries in its last 12 bytes (added delay) and to see a joiner's first
complete keyframe ("first picture"; nothing is decoded).

The room grows along ``--steps``; at each N, ``--runs`` times: the Nth participant joins alone
(timed: signaling bytes and first picture), then a ``--duration`` s window is measured; it
leaves again between runs. A run during which other processes used more than ``--max-others``
% of a core is measured again (for up to ``--patience`` s; still-disturbed runs are counted in
the report). The ladder stops at the first N whose median loss exceeds 1 % or whose median
99th-percentile added delay exceeds 100 ms (a failing step is measured once more first).

Each participant starts its media ``--media-delay`` s (1.5) after its DTLS connects, where a
browser starts at once. The relay as of 19819e0 now and then never forwards a participant's
camera to anyone (no PLI reaches it either), in both modes, with or without the delay: this
bench shows it as "videos flowing" below min(9, N-1). See bench/README.md.

    unshare -n sh -c 'ip link set lo up && exec python bench/room.py --runs 3'
    unshare -n sh -c 'ip link set lo up && exec python bench/room.py --steps 5,10 --runs 1 --modes slots'
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.realpath(__file__))
from _sibling import load_sibling  # before bench/ leaves sys.path (bench/http.py shadows http)

sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import argparse
import asyncio
import base64
import fractions
import hashlib
import http.client
import json
import logging
import platform
import random
import re
import secrets
import shlex
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder

from meet.relay import ice
from meet.relay.compat import sending, simulcast
from meet.relay.forward import vp8_keyframe_start
from meet.relay.slot import ForwardTrack

hb = load_sibling("http.py")

LOOPBACK = ["127.0.0.1"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
FPS, GOP, LOOP_FRAMES = 30, 60, 120  # replayed clip: 4 s, a keyframe every 2 s (and on PLI)
# The call page's camera (960x540) in its three encodings (web/js/call/encodings.js), lowest first.
LAYERS = (("l", 4, 150_000), ("m", 2, 500_000), ("h", 1, 1_500_000))
WIDTH, HEIGHT = 960, 540
LARGE, THUMB = (960, 540), (320, 180)
THUMBS = 8
CHUNK = 1180  # VP8 bytes per RTP packet
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
RID_ID, REPAIRED_RID_ID = 10, 11  # Chrome's ids
NTP_EPOCH = 2208988800
STAMP = b"MTB1"  # + a double (perf_counter at sending) in the last 12 bytes of each video packet
DTX_EVERY = 0.4  # s between the packets of a silent Opus DTX stream
DTX_PAYLOAD = b"\xf8\xff\xfe"  # an Opus 20 ms silence frame
SPEECH_LEVEL = 20  # -dBov of the talker's packets
LOSS_LIMIT, DELAY_LIMIT_MS = 0.01, 100.0
ROOM_SETTINGS = (
    "[rooms]\nmax_participants = 1000\nmessage_rate = 1000000.0\nmessage_burst = 1000000\n"
    "max_connections_per_user = 1000000\nmax_connections_per_address = 1000000\n"
)
_HDR = struct.Struct("!BBHII")
_STAMP = struct.Struct("!4sd")


# --------------------------------------------------------------------------- media, made once


def cached_layers() -> list[list[tuple[list[bytes], bool]]]:
    """:func:`encode_layers`, kept in the temp folder between runs (encoding takes ~30 s here)."""
    key = hashlib.sha1(repr((LAYERS, WIDTH, HEIGHT, FPS, GOP, LOOP_FRAMES, CHUNK, av.__version__)).encode())
    path = Path(tempfile.gettempdir()) / f"meet-room-bench-{key.hexdigest()[:12]}.json"
    try:
        raw = json.loads(path.read_text())
        return [[([bytes.fromhex(c) for c in chunks], key) for chunks, key in layer] for layer in raw]
    except (OSError, ValueError):
        pass
    layers = encode_layers()
    data = [[([c.hex() for c in chunks], key) for chunks, key in layer] for layer in layers]
    path.write_text(json.dumps(data))
    return layers


def encode_layers() -> list[list[tuple[list[bytes], bool]]]:
    """Per layer (low to high): LOOP_FRAMES frames, each its VP8 chunks (no descriptor) and keyframe flag."""
    ramp = numpy.tile(numpy.arange(WIDTH, dtype=numpy.uint16), (HEIGHT, 1))
    rng = numpy.random.default_rng(1)
    pictures = []
    for n in range(LOOP_FRAMES):
        luma = ((ramp + 4 * n) % 256).astype(numpy.uint8)
        top = (n * 7) % (HEIGHT - 120)
        luma[top : top + 120, 120:360] = (n * 37) % 256
        luma[::4, ::4] ^= rng.integers(0, 24, (HEIGHT // 4, WIDTH // 4), dtype=numpy.uint8)
        pictures.append(luma)
    out = []
    for _rid, scale, rate in LAYERS:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height, codec.pix_fmt = WIDTH // scale, HEIGHT // scale, "yuv420p"
        codec.bit_rate, codec.time_base = rate, fractions.Fraction(1, FPS)
        codec.framerate, codec.gop_size = fractions.Fraction(FPS, 1), GOP
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "auto-alt-ref": "0"}
        frames: list[tuple[list[bytes], bool]] = []
        for n, luma in enumerate(pictures):
            gray = av.VideoFrame.from_ndarray(numpy.ascontiguousarray(luma[::scale, ::scale]), format="gray")
            frame = gray.reformat(format="yuv420p")
            frame.pts = n
            frame.pict_type = (
                av.video.frame.PictureType.I if n % GOP == 0 else av.video.frame.PictureType.NONE
            )
            for packet in codec.encode(frame):
                data = bytes(packet)
                frames.append(
                    ([data[i : i + CHUNK] for i in range(0, len(data), CHUNK)], bool(packet.is_keyframe))
                )
        for packet in codec.encode(None):
            data = bytes(packet)
            frames.append(
                ([data[i : i + CHUNK] for i in range(0, len(data), CHUNK)], bool(packet.is_keyframe))
            )
        assert frames[0][1] and len(frames) == LOOP_FRAMES, (len(frames), frames[0][1])
        out.append(frames)
    return out


def encode_voice() -> list[bytes]:
    """One second of a 440 Hz tone as Opus payloads (20 ms each), aiortc's encoder."""
    encoder, payloads = OpusEncoder(), []
    for i in range(50):
        t = (numpy.arange(960) + 960 * i) / 48000
        data = (numpy.sin(2 * numpy.pi * 440 * t) * 8000).astype(numpy.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 960 * i, fractions.Fraction(1, 48000)
        payloads += encoder.encode(frame)[0]
    return payloads


def rtp(pt: int, marker: int, seq: int, ts: int, ssrc: int, elements: bytes, payload: bytes) -> bytes:
    """An RTP packet with one-byte header extensions (``elements``, unpadded)."""
    pad = -len(elements) % 4
    return (
        _HDR.pack(0x90, (marker << 7) | pt, seq, ts, ssrc)
        + b"\xbe\xde"
        + (len(elements) // 4 + (pad > 0)).to_bytes(2, "big")
        + elements
        + bytes(pad)
        + payload
    )


def element(ext_id: int, value: bytes) -> bytes:
    return bytes(((ext_id << 4) | (len(value) - 1),)) + value


def abs_send_time(ext_id: int) -> bytes:
    return element(ext_id, (int((time.time() + NTP_EPOCH) * 262144) & 0xFFFFFF).to_bytes(3, "big"))


# --------------------------------------------------------------------------- SDP


def _sections(sdp: str) -> tuple[str, list[list[str]]]:
    head, *sections = re.split(r"\r\n(?=m=)", sdp.rstrip("\r\n"))
    return head, [s.split("\r\n") for s in sections]


def _join(head: str, sections: list[list[str]]) -> str:
    return "\r\n".join([head, *("\r\n".join(lines) for lines in sections)]) + "\r\n"


def _mid(lines: list[str]) -> str | None:
    return next((line[6:] for line in lines if line.startswith("a=mid:")), None)


def simulcast_offer(sdp: str, mid: str) -> str:
    """aiortc's offer with Chrome's simulcast on the camera m-line (rids, extmaps, no a=ssrc)."""
    head, sections = _sections(sdp)
    for i, lines in enumerate(sections):
        if _mid(lines) == mid:
            lines = [line for line in lines if not line.startswith(("a=ssrc:", "a=ssrc-group:"))]
            lines += [
                f"a=extmap:{RID_ID} {simulcast.RID_URI}",
                f"a=extmap:{REPAIRED_RID_ID} {simulcast.REPAIRED_RID_URI}",
            ]
            lines += [f"a=rid:{rid} send" for rid, _s, _r in LAYERS]
            lines.append("a=simulcast:send " + ";".join(rid for rid, _s, _r in LAYERS))
            sections[i] = lines
    return _join(head, sections)


def simulcast_answer(sdp: str, relay_offer: str, camera: str) -> str:
    """aiortc's answer to a relay offer, as Chrome's: the camera m-line keeps the stream-id extmaps
    the offer lists (aiortc drops extensions it does not know, and without them the relay could no
    longer tell the layers apart), and sends the layers the offer receives (``a=simulcast:recv``)."""
    offered = {_mid(lines): lines for lines in _sections(relay_offer)[1]}
    lines = offered.get(camera, [])
    maps = [line for line in lines if line.startswith("a=extmap:") and "rtp-stream-id" in line]
    recv = next((line.split()[1].split(";") for line in lines if line.startswith("a=simulcast:recv ")), [])
    head, sections = _sections(sdp)
    for i, lines in enumerate(sections):
        if _mid(lines) == camera:
            lines = [line for line in lines if not line.startswith(("a=ssrc:", "a=ssrc-group:"))]
            at = next(j for j, line in enumerate(lines) if line.startswith("a=mid:"))
            lines[at:at] = [line for line in maps if line not in lines]
            if recv:
                lines += [f"a=rid:{rid} send" for rid in recv] + ["a=simulcast:send " + ";".join(recv)]
            sections[i] = lines
    return _join(head, sections)


# --------------------------------------------------------------------------- WebSocket


class Ws:
    """A minimal RFC 6455 client on asyncio (no extensions) that counts its bytes on the wire."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.rx = self.tx = 0  # bytes, the HTTP upgrade included
        self.rx_signaling = 0  # bytes of frames other than the heartbeat
        self.last_rx = time.perf_counter()  # last frame other than the heartbeat
        self.buf = bytearray()

    @classmethod
    async def connect(cls, port: int, path: str, token: str) -> Ws:
        reader, writer = await asyncio.open_connection(hb.HOST, port)
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {hb.HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
        ws = cls(reader, writer)
        writer.write(request)
        ws.tx += len(request)
        head = await reader.readuntil(b"\r\n\r\n")
        ws.rx += len(head)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"handshake answered {head[:60]!r}")
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        if accept not in head:
            raise ConnectionError("wrong Sec-WebSocket-Accept")
        return ws

    def send(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message, separators=(",", ":")).encode()
        n = len(payload)
        head = bytes((0x81, 0xFE)) + n.to_bytes(2, "big") if n >= 126 else bytes((0x81, 0x80 | n))
        if n >= 65536:
            head = bytes((0x81, 0xFF)) + n.to_bytes(8, "big")
        key = os.urandom(4)
        stream = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")
        frame = head + key + masked
        self.tx += len(frame)
        self.writer.write(frame)

    async def messages(self) -> Any:
        """Yield each text message as a dict until the connection ends."""
        buf = self.buf
        while True:
            chunk = await self.reader.read(262144)
            if not chunk:
                return
            self.rx += len(chunk)
            buf += chunk
            pos = 0
            while len(buf) - pos >= 2:
                length, head = buf[pos + 1] & 0x7F, 2
                if length == 126:
                    if len(buf) - pos < 4:
                        break
                    length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
                elif length == 127:
                    if len(buf) - pos < 10:
                        break
                    length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
                if len(buf) - pos < head + length:
                    break
                opcode, payload = buf[pos] & 0x0F, bytes(buf[pos + head : pos + head + length])
                pos += head + length
                if opcode == 8:
                    return
                if opcode == 1:
                    message = json.loads(payload)
                    if message.get("type") != "ping":
                        self.rx_signaling += head + length
                        self.last_rx = time.perf_counter()
                    yield message
            del buf[:pos]

    def close(self) -> None:
        self.writer.close()


# --------------------------------------------------------------------------- one participant


class Stream:
    __slots__ = ("first", "highest", "pt", "received")

    def __init__(self, seq: int, pt: int) -> None:
        self.first = self.highest = seq
        self.received, self.pt = 0, pt


def count_rtp(streams: dict[int, Stream], data: bytes) -> None:
    """Count one RTP packet per SSRC and keep its highest (extended) sequence number."""
    ssrc, seq = int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big")
    stream = streams.get(ssrc)
    if stream is None:
        stream = streams[ssrc] = Stream(seq, data[1] & 0x7F)
    else:
        last = stream.highest
        ext = last + ((seq - last + 0x8000) & 0xFFFF) - 0x8000
        if ext > last:
            stream.highest = ext
    stream.received += 1


def rtp_payload(data: bytes) -> tuple[int, bytes]:
    """(payload type, payload) of a clear RTP packet."""
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)
    return data[1] & 0x7F, data[offset:end]


class Layer:
    __slots__ = ("frames", "index", "keyframe_asked", "rid", "seq", "ssrc", "ts0")

    def __init__(self, rid: str, frames: list[tuple[list[bytes], bool]]) -> None:
        self.rid, self.frames, self.index = rid, frames, 0
        self.ssrc, self.seq, self.ts0 = (
            random.getrandbits(32),
            random.randrange(0x10000),
            random.getrandbits(32),
        )
        self.keyframe_asked = False


class Participant:
    """One synthetic participant: room WebSocket + one aiortc connection with the relay."""

    def __init__(self, room: Room, index: int, probe: bool) -> None:
        self.room, self.index, self.probe = room, index, probe
        self.ws: Ws | None = None
        self.peer_id = ""
        self.roster: list[str] = []
        self.speaker: str | None = None
        self.large: str | None = None
        self.view_sent: list[dict[str, Any]] | None = None
        self.paused: set[str] = set()  # camera encodings not sent: the relay's ``layers`` (dynacast)
        self.tracks: dict[str, tuple[str | None, str | None]] = {}
        self.streams: dict[int, Stream] = {}
        self.rx_bytes = 0  # UDP payload bytes received (RTP, RTCP, STUN)
        self.sent = 0  # RTP packets sent
        self.delays: list[float] = []
        self.pictures: dict[int, float] = {}  # ssrc -> when its first complete keyframe arrived
        self.first_picture_ws: tuple[int, int] | None = None  # (rx, tx) WebSocket bytes then
        self.keyframes: dict[int, list[int]] = {}  # ssrc -> [timestamp, first seq, packets]
        self.video_pts: set[int] = set()
        self.pc = RTCPeerConnection(ice.rtc_configuration([]))
        self.signals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.answered = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.welcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.layers = [Layer(rid, frames) for (rid, _s, _r), frames in zip(LAYERS, room.media, strict=True)]
        self.audio_ssrc, self.audio_seq = random.getrandbits(32), random.randrange(0x10000)
        self.closed = False
        self.camera_mid = ""

    # --- joining

    async def join(self) -> None:
        room = self.room
        self.ws = await Ws.connect(
            room.port, f"/api/rooms/{room.code}/ws", room.tokens[self.index % len(room.tokens)]
        )
        self._task(self._read())
        self._task(self._signaling())
        welcome = await asyncio.wait_for(self.welcome, 30)
        if welcome["mode"] != "relay":
            raise RuntimeError(f"the room is in {welcome['mode']} mode")
        audio = self.pc.addTransceiver(ForwardTrack("audio"), direction="sendonly")
        video = self.pc.addTransceiver(ForwardTrack("video"), direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._hook(audio.sender.transport)
        self.camera_mid = str(video.mid)
        sdp = simulcast_offer(self.pc.localDescription.sdp, self.camera_mid)
        self.ws.send(
            {"type": "signal", "to": "relay", "data": {"description": {"type": "offer", "sdp": sdp}}}
        )
        await asyncio.wait_for(self.answered.wait(), 30)
        dtls = audio.sender.transport
        deadline = time.monotonic() + 30
        while dtls.state != "connected":
            if time.monotonic() > deadline or dtls.state in ("failed", "closed"):
                raise RuntimeError(f"DTLS {dtls.state} after 30 s")
            await asyncio.sleep(0.02)
        # A browser starts sending at once. The relay at 19819e0 then sometimes never forwards
        # that camera to anyone (a race with the renegotiation that adds the joiner's slots):
        # --media-delay keeps the figures about load, 0 shows the race.
        await asyncio.sleep(self.room.args.media_delay)
        self._task(self._publish(audio, video))

    def _task(self, coro: Any) -> None:
        """Run ``coro`` until :meth:`leave`; a failure is kept in the room's errors."""
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)

        def done(task: asyncio.Task[Any]) -> None:
            if not task.cancelled() and task.exception() is not None:
                self.room.errors.append({"type": "task", "peer": self.index, "error": repr(task.exception())})

        task.add_done_callback(done)

    async def _read(self) -> None:
        assert self.ws is not None
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "welcome": self._on_welcome,
            "peer-joined": lambda m: self._roster(self.roster + [m["peer"]["peer_id"]]),
            "peer-left": lambda m: self._roster([p for p in self.roster if p != m["peer_id"]]),
            "speaker": self._on_speaker,
            "tracks": self._on_tracks,
            "layers": self._on_layers,
            "signal": lambda m: self.signals.put_nowait(m["data"]) if m.get("from") == "relay" else None,
            "ping": lambda m: self.ws.send({"type": "pong"}) if self.ws else None,
            "error": lambda m: self.room.errors.append(m),
        }
        try:
            async for message in self.ws.messages():
                handler = handlers.get(message.get("type", ""))
                if handler is not None:
                    handler(message)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not self.closed:
                self.room.errors.append({"type": "closed", "peer": self.index})
            if not self.welcome.done():
                self.welcome.set_exception(ConnectionError("closed before welcome"))

    def _on_welcome(self, message: dict[str, Any]) -> None:
        self.peer_id = message["peer_id"]
        self.speaker = message.get("speaker")
        peers = sorted(message["peers"], key=lambda p: p["joined_at"])
        self._roster([p["peer_id"] for p in peers])
        if not self.welcome.done():
            self.welcome.set_result(message)

    def _on_speaker(self, message: dict[str, Any]) -> None:
        self.speaker = message["peer_id"]
        self._send_view()

    def _on_tracks(self, message: dict[str, Any]) -> None:
        self.tracks = {t["mid"]: (t["publisher"], t["source"]) for t in message["tracks"]}

    def _on_layers(self, message: dict[str, Any]) -> None:
        """Send only the camera encodings the relay asks for, as the call page does (unless
        ``--ignore-layers``); one that resumes starts at a keyframe, as a browser's encoder does."""
        if message.get("source") != "camera" or self.room.args.ignore_layers:
            return
        paused = {layer.rid for layer in self.layers} - set(message.get("rids", []))
        for layer in self.layers:
            if layer.rid in self.paused and layer.rid not in paused:
                layer.keyframe_asked = True
        self.paused = paused

    def _roster(self, roster: list[str]) -> None:
        self.roster = roster
        self._send_view()

    def _send_view(self) -> None:
        """Speaker view, as the call page sends it: the speaker large, eight others as thumbnails."""
        if not self.room.views or self.ws is None:
            return
        others = self.roster
        if self.speaker in others:
            self.large = self.speaker
        elif self.large not in others:
            self.large = others[0] if others else None
        tiles = [] if self.large is None else [self._tile(self.large, LARGE)]
        tiles += [self._tile(p, THUMB) for p in others if p != self.large][:THUMBS]
        if tiles != self.view_sent:
            self.view_sent = tiles
            self.ws.send({"type": "view", "tiles": tiles})

    @staticmethod
    def _tile(peer: str, size: tuple[int, int]) -> dict[str, Any]:
        return {"peer_id": peer, "source": "camera", "width": size[0], "height": size[1]}

    async def _signaling(self) -> None:
        """The relay's answers and offers, one at a time, in order."""
        while True:
            data = await self.signals.get()
            description = data.get("description")
            if description is None:
                continue  # a candidate: the relay's are in its SDP
            if description["type"] == "answer":
                await self.pc.setRemoteDescription(
                    RTCSessionDescription(sdp=description["sdp"], type="answer")
                )
                self._video_pts()
                self.answered.set()
                continue
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=description["sdp"], type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            answer = simulcast_answer(self.pc.localDescription.sdp, description["sdp"], self.camera_mid)
            self._video_pts()
            if self.ws is not None:
                self.ws.send(
                    {
                        "type": "signal",
                        "to": "relay",
                        "data": {"description": {"type": "answer", "sdp": answer}},
                    }
                )

    def _video_pts(self) -> None:
        self.video_pts = {
            c.payloadType
            for t in self.pc.getTransceivers()
            if t.kind == "video"
            for c in t._codecs
            if c.payloadType is not None
        }

    # --- receiving

    def _hook(self, dtls: Any) -> None:
        """Count what arrives at the UDP socket; RTP stops there, except at probes (stock SRTP path,
        then :meth:`_probe_rtp` instead of aiortc's receivers: nothing is ever decoded)."""
        streams, probe = self.streams, self.probe
        for protocol in dtls.transport.iceGatherer._connection._protocols:
            stock = protocol.datagram_received

            def received(data: bytes, addr: Any, stock: Any = stock) -> None:
                self.rx_bytes += len(data)
                if not probe and 127 < data[0] < 192 and not 191 < data[1] < 224:  # RTP (RFC 5761)
                    count_rtp(streams, data)
                    return
                stock(data, addr)

            protocol.datagram_received = received
        stock_rtcp = dtls._handle_rtcp_data

        async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
            self._probe_rtp(data)

        async def handle_rtcp(data: bytes) -> None:
            self._on_rtcp(data)
            await stock_rtcp(data)

        dtls._handle_rtp_data = handle_rtp
        dtls._handle_rtcp_data = handle_rtcp

    def _probe_rtp(self, data: bytes) -> None:
        now = time.perf_counter()
        count_rtp(self.streams, data)
        pt, payload = rtp_payload(data)
        if pt not in self.video_pts or not payload:
            return
        if payload[-12:-8] == STAMP:
            self.delays.append(now - _STAMP.unpack(payload[-12:])[1])
        ssrc = int.from_bytes(data[8:12], "big")
        if ssrc in self.pictures:
            return
        seq, ts = int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:8], "big")
        if vp8_keyframe_start(payload):
            self.keyframes[ssrc] = [ts, seq, 0]
        frame = self.keyframes.get(ssrc)
        if frame is None or frame[0] != ts:
            return
        frame[2] += 1
        if data[1] & 0x80 and frame[2] == ((seq - frame[1]) & 0xFFFF) + 1:  # marker, nothing missing
            self.pictures[ssrc] = now
            if self.first_picture_ws is None and self.ws is not None:
                self.first_picture_ws = (self.ws.rx, self.ws.tx)

    def _on_rtcp(self, data: bytes) -> None:
        """A PLI for one of our layers: its next frame is a keyframe (browsers do the same)."""
        offset = 0
        while offset + 12 <= len(data):
            first, kind, length = (
                data[offset],
                data[offset + 1],
                int.from_bytes(data[offset + 2 : offset + 4], "big"),
            )
            if kind == 206 and first & 0x1F in (1, 4):  # PLI, FIR
                ssrc = int.from_bytes(data[offset + 8 : offset + 12], "big")
                for layer in self.layers:
                    if layer.ssrc == ssrc or first & 0x1F == 4:
                        layer.keyframe_asked = True
            offset += 4 * (length + 1)

    def describe(self) -> str:
        return (
            f"#{self.index} {self.peer_id}: sent {self.sent}, tracks {self.tracks}, streams {len(self.streams)},"
            f" {self.pc.connectionState}, view {len(self.view_sent or [])} tiles, roster {len(self.roster)}"
        )

    def counts(self) -> tuple[int, int]:
        """(packets received, packets expected) over every stream so far."""
        streams = list(self.streams.values())
        return sum(s.received for s in streams), sum(s.highest - s.first + 1 for s in streams)

    # --- sending

    async def _publish(self, audio: Any, video: Any) -> None:
        """The camera's three layers at FPS and the microphone (talking or DTX), phase-shifted per participant."""
        send = sending.transport_sender(video.sender.transport)
        vpt = next(c.payloadType for c in video._codecs if c.mimeType.lower() == "video/vp8")
        apt = next(c.payloadType for c in audio._codecs if c.mimeType.lower() == "audio/opus")
        vids = {e.uri: e.id for e in video._headerExtensions}
        aids = {e.uri: e.id for e in audio._headerExtensions}
        vmid, amid = (
            element(vids[MID_URI], str(video.mid).encode()),
            element(aids[MID_URI], str(audio.mid).encode()),
        )
        rids = [vmid + element(RID_ID, layer.rid.encode()) for layer in self.layers]
        loop = asyncio.get_running_loop()
        start = loop.time() + random.random() / FPS
        next_video = next_audio = start
        frame_no, talking = 0, False
        voice = self.room.voice
        while True:
            now = loop.time()
            if now >= next_video:
                for layer, static in zip(self.layers, rids, strict=True):
                    if layer.rid in self.paused:
                        continue
                    self._send_frame(send, layer, vpt, static + abs_send_time(vids[ABS_URI]), frame_no)
                frame_no += 1
                next_video = max(next_video + 1 / FPS, now - 0.1)
            if now >= next_audio:
                speaking = self.room.talker is self
                ts = int((now - start) * 50) * 960
                level = SPEECH_LEVEL if speaking else 127
                payload = voice[int((now - start) * 50) % len(voice)] if speaking else DTX_PAYLOAD
                elements = amid + element(aids[LEVEL_URI], bytes((0x80 | level if speaking else level,)))
                if ABS_URI in aids:
                    elements += abs_send_time(aids[ABS_URI])
                packet = rtp(
                    apt,
                    int(speaking and not talking),
                    self.audio_seq,
                    ts & 0xFFFFFFFF,
                    self.audio_ssrc,
                    elements,
                    payload,
                )
                self.audio_seq = (self.audio_seq + 1) & 0xFFFF
                self.sent += send(packet)
                talking = speaking
                next_audio = max(next_audio + (0.02 if speaking else DTX_EVERY), now - 0.1)
            await asyncio.sleep(max(0.0, min(next_video, next_audio) - loop.time()))

    def _send_frame(
        self, send: Callable[[bytes], bool], layer: Layer, pt: int, elements: bytes, frame_no: int
    ) -> None:
        if layer.keyframe_asked:
            layer.keyframe_asked = False
            if not layer.frames[layer.index][1]:
                layer.index = (layer.index // GOP + 1) * GOP % LOOP_FRAMES
        chunks, _key = layer.frames[layer.index]
        layer.index = (layer.index + 1) % LOOP_FRAMES
        ts = (layer.ts0 + frame_no * (90000 // FPS)) & 0xFFFFFFFF
        picture_id = frame_no & 0x7FFF
        last = len(chunks) - 1
        for i, chunk in enumerate(chunks):
            descriptor = bytes((0x90 if i == 0 else 0x80, 0x80, 0x80 | picture_id >> 8, picture_id & 0xFF))
            if len(chunk) > 40:
                chunk = chunk[:-12] + _STAMP.pack(STAMP, time.perf_counter())
            self.sent += send(
                rtp(pt, int(i == last), layer.seq, ts, layer.ssrc, elements, descriptor + chunk)
            )
            layer.seq = (layer.seq + 1) & 0xFFFF

    async def leave(self) -> None:
        self.closed = True
        if self.ws is not None:
            self.ws.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pc.close()


# --------------------------------------------------------------------------- CPU


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (the server's relay workers)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        if int(data[data.rindex(b")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


def cpu_s(pid: int) -> float:
    try:
        return float(hb.proc_cpu_seconds(pid))
    except OSError:
        return 0.0


class Snapshot:
    def __init__(self, server: int, workers: list[int]) -> None:
        self.at = time.perf_counter()
        self.server = cpu_s(server)
        self.workers = {w: cpu_s(w) for w in workers}
        self.own = time.process_time()
        self.machine = hb.MachineTicks.read()


def cpu_figures(a: Snapshot, b: Snapshot) -> dict[str, float]:
    """% of one core between two snapshots: relay workers (all, busiest), server, generator, others."""
    wall = b.at - a.at
    workers = {w: b.workers[w] - a.workers.get(w, 0.0) for w in b.workers}
    relay = sum(workers.values())
    server, own = b.server - a.server, b.own - a.own
    busy = (b.machine.busy - a.machine.busy) / CLK_TCK
    ticks = max(b.machine.total - a.machine.total, 1)
    return {
        "relay_cpu_pct": 100 * relay / wall,
        "relay_busiest_pct": 100 * max(workers.values(), default=0.0) / wall,
        "server_cpu_pct": 100 * server / wall,
        "generator_cpu_pct": 100 * own / wall,
        "others_cpu_pct": max(0.0, 100 * (busy - relay - server - own) / wall),
        "machine_busy_pct": 100 * (b.machine.busy - a.machine.busy) / ticks,  # of all cores
    }


# --------------------------------------------------------------------------- the room


class Room:
    """The participants of one room on one server, the talk rotation and the measurements."""

    def __init__(
        self,
        args: argparse.Namespace,
        mode: str,
        port: int,
        pid: int,
        code: str,
        tokens: list[str],
        media: list[list[tuple[list[bytes], bool]]],
        voice: list[bytes],
    ) -> None:
        self.args, self.mode, self.port, self.pid, self.code, self.tokens = (
            args,
            mode,
            port,
            pid,
            code,
            tokens,
        )
        self.media, self.voice = media, voice
        self.views = mode == "slots"
        self.people: list[Participant] = []
        self.talker: Participant | None = None
        self.frozen = False
        self.errors: list[dict[str, Any]] = []
        self.lag = 0.0

    async def rotate(self) -> None:
        """One talker at a time, each for ``--talk`` s, in join order."""
        turn = 0
        while True:
            if not self.frozen and self.people:
                turn += 1
                self.talker = self.people[turn % len(self.people)]
            await asyncio.sleep(self.args.talk)

    async def watch_lag(self) -> None:
        """The generator's event-loop lag (a busy generator inflates the measured delay)."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            self.lag = max(self.lag, loop.time() - t - 0.01)

    async def add(self, count: int) -> None:
        """``count`` more participants, joining a few at a time; each must receive media."""
        new = [Participant(self, len(self.people) + i, probe=len(self.people) + i < 2) for i in range(count)]
        for i in range(0, len(new), self.args.batch):
            batch = new[i : i + self.args.batch]
            await asyncio.gather(*(p.join() for p in batch))
            self.people += batch
        try:
            await self._until(
                lambda: all(p.counts()[0] > 0 for p in new), 30, "media at the new participants"
            )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {[p.describe() for p in new if not p.counts()[0]][:3]}") from None

    async def _until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} within {timeout:g} s")
            await asyncio.sleep(0.05)

    async def timed_join(self) -> dict[str, Any]:
        """The Nth participant joins alone: time to its first picture, and the signaling bytes."""
        self.frozen = True  # no talker change (speaker, views) while the join is measured
        members = list(self.people)
        before = [(p.ws.rx_signaling, p.ws.tx) for p in members if p.ws is not None]
        joiner = Participant(self, len(self.people), probe=True)
        workers = children(self.pid)
        start = Snapshot(self.pid, workers)
        t0 = time.perf_counter()
        try:
            await joiner.join()
            self.people.append(joiner)
            await self._until(lambda: bool(joiner.pictures), 30, "first picture at the joiner")
            tiles = min(THUMBS + 1, len(members))
            try:
                await self._until(
                    lambda: len(joiner.pictures) >= tiles, 15, f"{tiles} pictures at the joiner"
                )
            except RuntimeError:
                pass
            quiet = self.args.quiet
            await self._until(
                lambda: time.perf_counter() - max((p.ws.last_rx for p in members if p.ws), default=0) > quiet,
                20,
                "quiet signaling",
            )
        finally:
            self.frozen = False
        after = [(p.ws.rx_signaling, p.ws.tx) for p in members if p.ws is not None]
        others = cpu_figures(start, Snapshot(self.pid, workers))["others_cpu_pct"]
        got = sorted(joiner.pictures.values())
        assert joiner.first_picture_ws is not None
        return {
            "first_picture_ms": 1000 * (got[0] - t0),
            "all_tiles_ms": 1000 * (got[tiles - 1] - t0) if len(got) >= tiles else None,
            "pictures": len(got),
            "joiner_ws_rx": joiner.first_picture_ws[0],
            "joiner_ws_tx": joiner.first_picture_ws[1],
            "members_ws_rx": sum(a[0] - b[0] for a, b in zip(after, before)) / max(1, len(members)),
            "members_ws_tx": sum(a[1] - b[1] for a, b in zip(after, before)) / max(1, len(members)),
            "join_others_cpu_pct": others,
        }

    async def measure(self, duration: float) -> dict[str, Any]:
        workers = children(self.pid)
        for p in self.people:
            p.delays.clear()
        before = [(p.counts(), p.rx_bytes) for p in self.people]
        videos0 = [{k: v.received for k, v in p.streams.items() if v.pt in p.video_pts} for p in self.people]
        sent0 = sum(p.sent for p in self.people)
        self.lag = 0.0
        a = Snapshot(self.pid, workers)
        await asyncio.sleep(duration)
        b = Snapshot(self.pid, workers)
        after = [(p.counts(), p.rx_bytes) for p in self.people]
        flowing = [
            sum(v.pt in p.video_pts and v.received > v0.get(k, 0) for k, v in p.streams.items())
            for p, v0 in zip(self.people, videos0)
        ]
        wall = b.at - a.at
        n = len(self.people)
        received = sum(x[0][0] - y[0][0] for x, y in zip(after, before))
        gaps = max(0, sum((x[0][1] - y[0][1]) - (x[0][0] - y[0][0]) for x, y in zip(after, before)))
        delays = sorted(1000 * d for p in self.people if p.probe for d in p.delays)
        cpu = cpu_figures(a, b)
        return {
            "participants": n,
            **cpu,
            "relay_cpu_per_participant_pct": cpu["relay_cpu_pct"] / n,
            "loss": gaps / (received + gaps) if received else None,
            "delay_p50_ms": hb.percentile(delays, 0.5),
            "delay_p99_ms": hb.percentile(delays, 0.99),
            "delay_samples": len(delays),
            "rx_kbps_per_subscriber": 8 * sum(x[1] - y[1] for x, y in zip(after, before)) / wall / n / 1000,
            "rx_pps_per_subscriber": received / wall / n,
            "videos_per_subscriber": sum(flowing) / n,  # video streams with packets in the window
            "sent_pps": (sum(p.sent for p in self.people) - sent0) / wall,
            "generator_lag_ms": 1000 * self.lag,
        }

    async def close(self) -> None:
        await asyncio.gather(*(p.leave() for p in self.people), return_exceptions=True)


def passes(m: dict[str, Any]) -> bool:
    """Within the limits, and no connection failed (a saturated relay drops them, and the
    survivors' figures then look fine)."""
    return (m["loss"] or 0) <= LOSS_LIMIT and (m["delay_p99_ms"] or 0) <= DELAY_LIMIT_MS and not m["errors"]


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


async def measure_step(room: Room, n: int) -> dict[str, Any]:
    """``--runs`` times: the Nth participant joins (timed), a window is measured, it leaves (but the last time)."""
    args, runs = room.args, []
    for r in range(args.runs):
        deadline, tries = time.monotonic() + args.patience, 0
        while True:
            tries += 1
            errors = len(room.errors)
            join = await room.timed_join()
            await asyncio.sleep(args.settle)
            m = {**await room.measure(args.duration), **join, "tries": tries}
            m["errors"] = len(room.errors) - errors  # relay_failed, closed sockets, failed tasks
            m["disturbed"] = (
                m["others_cpu_pct"] > args.max_others
            )  # in the window (a join is too short to tell)
            print(run_line(room.mode, r, m), flush=True)
            if not m["disturbed"] or time.monotonic() > deadline:
                break
            # Other processes took the CPU the server and the clients need: not this N's figure.
            await room.people.pop().leave()
            await asyncio.sleep(args.settle + 3)
        runs.append(m)
        if r < args.runs - 1:
            await room.people.pop().leave()
            await asyncio.sleep(args.settle)
    step = {**{k: median_of(runs, k) for k in runs[0]}, "participants": n, "runs": runs}
    step["disturbed_runs"] = sum(bool(r["disturbed"]) for r in runs)
    step["errors"] = sum(r["errors"] for r in runs)
    step["passed"] = passes(step)
    return step


async def ladder(
    args: argparse.Namespace,
    mode: str,
    port: int,
    pid: int,
    code: str,
    tokens: list[str],
    media: list[list[tuple[list[bytes], bool]]],
    voice: list[bytes],
) -> dict[str, Any]:
    room = Room(args, mode, port, pid, code, tokens, media, voice)
    tasks = [asyncio.ensure_future(room.rotate()), asyncio.ensure_future(room.watch_lag())]
    steps: list[dict[str, Any]] = []
    result: dict[str, Any] = {"mode": mode, "steps": steps, "largest_n": 0}
    try:
        for n in args.steps:
            try:
                await room.add(n - 1 - len(room.people))
                step = await measure_step(room, n)
                if not step["passed"]:  # once more: on a shared box a burst of other work causes loss too
                    print(f"  {mode} N={n}: over the limits, measuring again", flush=True)
                    await room.people.pop().leave()  # the last run's joiner: the retry joins it again
                    await asyncio.sleep(args.settle)
                    step = await measure_step(room, n)
            except RuntimeError as exc:
                print(f"  {mode} N={n}: stopped: {exc}; errors: {room.errors[:3]}", flush=True)
                result["stopped"] = f"N={n}: {exc}"
                break
            steps.append(step)
            if not step["passed"]:
                result["stopped"] = f"over the limits at N={n}"
                break
            result["largest_n"] = n
            if step["generator_cpu_pct"] > 95:
                result["stopped"] = (
                    f"N={n}: the load generator used {step['generator_cpu_pct']:.0f}% of a core"
                )
                break
    finally:
        for task in tasks:
            task.cancel()
        await room.close()
    result["errors"] = room.errors[:20]
    return result


# --------------------------------------------------------------------------- report


def fmt(value: Any, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def run_line(mode: str, r: int, m: dict[str, Any]) -> str:
    return (
        f"  {mode:7s} N={m['participants']:3d} run {r + 1}{'*' if m.get('disturbed') else ' '} loss {fmt(100 * m['loss'] if m['loss'] is not None else None, '.2f')}%"
        f"  delay p50 {fmt(m['delay_p50_ms'], '.1f')} p99 {fmt(m['delay_p99_ms'], '.1f')} ms"
        f"  relay {fmt(m['relay_cpu_pct'])}% (busiest {fmt(m['relay_busiest_pct'])}%)  server {fmt(m['server_cpu_pct'])}%"
        f"  gen {fmt(m['generator_cpu_pct'])}% (lag {fmt(m['generator_lag_ms'])} ms)  others {fmt(m['others_cpu_pct'])}%"
        f"  rx {fmt(m['rx_kbps_per_subscriber'])} kbps {fmt(m['rx_pps_per_subscriber'])} pkt/s"
        f" {fmt(m['videos_per_subscriber'], '.1f')} videos per sub"
        f"  join: picture {fmt(m['first_picture_ms'])} ms, all {fmt(m['all_tiles_ms'])} ms,"
        f" ws {fmt(m['joiner_ws_rx'] / 1000, '.1f')}/{fmt(m['joiner_ws_tx'] / 1000, '.1f')} kB in/out,"
        f" members {fmt(m['members_ws_rx'] / 1000, '.2f')}/{fmt(m['members_ws_tx'] / 1000, '.2f')} kB"
        + (f"  {m['errors']} connections failed" if m.get("errors") else "")
    )


ROWS = (
    ("relay CPU, all workers (% of one core)", "relay_cpu_pct", ".0f", "%", 1),
    ("  busiest worker (the room's)", "relay_busiest_pct", ".0f", "%", 1),
    ("relay CPU per participant", "relay_cpu_per_participant_pct", ".2f", "%", 1),
    ("server process CPU (signaling)", "server_cpu_pct", ".1f", "%", 1),
    ("loss at subscribers", "loss", ".3f", "%", 100),
    ("added delay p50", "delay_p50_ms", ".1f", "ms", 1),
    ("added delay p99", "delay_p99_ms", ".1f", "ms", 1),
    ("received per subscriber", "rx_kbps_per_subscriber", ".0f", "kbit/s", 1),
    ("  RTP packets", "rx_pps_per_subscriber", ".0f", "/s", 1),
    ("  videos flowing (slots: of min(9, N-1); else N-1)", "videos_per_subscriber", ".1f", "", 1),
    ("sent by all publishers", "sent_pps", ".0f", "pkt/s", 1),
    ("Nth join -> first picture", "first_picture_ms", ".0f", "ms", 1),
    ("Nth join -> min(9, N-1) pictures", "all_tiles_ms", ".0f", "ms", 1),
    ("joiner's WebSocket bytes in, to 1st picture", "joiner_ws_rx", ".0f", "B", 1),
    ("joiner's WebSocket bytes out", "joiner_ws_tx", ".0f", "B", 1),
    ("each member's bytes in per join", "members_ws_rx", ".0f", "B", 1),
    ("each member's bytes out per join", "members_ws_tx", ".0f", "B", 1),
    ("load generator CPU (this process)", "generator_cpu_pct", ".0f", "%", 1),
    ("  its event-loop lag, max", "generator_lag_ms", ".0f", "ms", 1),
    ("other processes' CPU", "others_cpu_pct", ".0f", "%", 1),
    ("machine busy (% of all cores)", "machine_busy_pct", ".0f", "%", 1),
    ("runs other processes still disturbed", "disturbed_runs", ".0f", "", 1),
    ("connections failed (relay_failed, closed)", "errors", ".0f", "", 1),
)


def packet_costs(results: list[dict[str, Any]]) -> tuple[float, float, int] | None:
    """Relay CPU per packet received and per packet forwarded (µs), least squares through the
    origin over every measured step of every mode: cpu = a * received/s + b * forwarded/s. The
    fixed costs of a connection (ICE, RTCP, timers) are folded into both."""
    rows = [
        (s["relay_cpu_pct"] / 100, s["sent_pps"], s["rx_pps_per_subscriber"] * s["participants"])
        for r in results
        for s in r["steps"]
        if s.get("sent_pps") and s.get("rx_pps_per_subscriber")
    ]
    if len(rows) < 3:
        return None
    sxx = sum(x * x for _c, x, _y in rows)
    syy = sum(y * y for _c, _x, y in rows)
    sxy = sum(x * y for _c, x, y in rows)
    scx = sum(c * x for c, x, _y in rows)
    scy = sum(c * y for c, _x, y in rows)
    det = sxx * syy - sxy * sxy
    if abs(det) < 1e-9 * sxx * syy:
        return None
    return 1e6 * (scx * syy - scy * sxy) / det, 1e6 * (scy * sxx - scx * sxy) / det, len(rows)


def print_report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n=== medians over {args.runs} run(s) of {args.duration:g} s; loss > {100 * LOSS_LIMIT:g}% or p99 > "
        f"{DELAY_LIMIT_MS:g} ms ends the ladder ==="
    )
    for result in results:
        print(
            f"{result['mode']}: largest N within the limits: {result['largest_n']}"
            + (f" ({result['stopped']})" if "stopped" in result else "")
        )
    ns = sorted({s["participants"] for r in results for s in r["steps"]})
    for n in ns:
        cells = [next((s for s in r["steps"] if s["participants"] == n), None) for r in results]
        print(f"\nN = {n}" + "".join(f"  {r['mode']:>14s}" for r in results))
        for label, key, spec, unit, scale in ROWS:
            values = [None if c is None or c.get(key) is None else scale * c[key] for c in cells]
            print(f"  {label:46s}" + "".join(f"  {fmt(v, spec):>9s} {unit:4s}" for v in values))
        print(
            f"  {'within the limits':46s}"
            + "".join(f"  {('yes' if c['passed'] else 'NO') if c else '-':>14s}" for c in cells)
        )
    costs = packet_costs(results)
    if costs:
        print(
            f"\nrelay CPU per packet (least squares over {costs[2]} steps): received {costs[0]:.0f} us,"
            f" forwarded {costs[1]:.0f} us"
        )


# --------------------------------------------------------------------------- setup and main


def write_config(path: Path, data_dir: Path, slots: int) -> None:
    path.write_text(
        f'[server]\nhost = "{hb.HOST}"\ngraceful_timeout = 2.0\n\n'
        f"[storage]\ndata_dir = {hb.toml_str(str(data_dir))}\n\n"
        f"[auth]\nsecret_key = {hb.toml_str(secrets.token_urlsafe(48))}\n"
        "argon2_time_cost = 1\nargon2_memory_kib = 1024\nargon2_parallelism = 1\n\n"
        '[mail]\nbackend = "file"\n\n' + ROOM_SETTINGS + "\n"
        f'[rtc]\nrelay = "always"\nhost_addresses = ["127.0.0.1"]\nvideo_slots = {slots}\n'
        "offer_rate = 100.0\noffer_burst = 1000\n"
    )


def http_json(port: int, method: str, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    conn = http.client.HTTPConnection(hb.HOST, port, timeout=30)
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    try:
        conn.request(method, path, json.dumps(body), headers)
        response = conn.getresponse()
        data = response.read()
        if response.status not in (200, 201):
            raise SystemExit(f"bench: {method} {path}: HTTP {response.status} {data[:300]!r}")
        return json.loads(data)
    finally:
        conn.close()


def prepare(workdir: Path, mode: str, users: int) -> tuple[Any, list[str], str]:
    """A server for one mode (its own folder and config), its users signed in, a room."""
    folder = workdir / mode
    folder.mkdir()
    config = folder / "meet.toml"
    write_config(config, folder / "data", 9 if mode == "slots" else 0)
    names = hb.add_users(config, folder, users)
    server = hb.Server(config, folder, hb.free_port())
    server.start()
    tokens = [
        http_json(server.port, "POST", "/api/auth/login", {"login": n, "password": hb.PASSWORD})["token"]
        for n in names
    ]
    room = http_json(
        server.port, "POST", "/api/rooms", {"title": "room bench", "max_participants": 1000}, tokens[0]
    )
    return server, tokens, str(room["room"]["code"])


def revision() -> str:
    """The checkout's commit, and whether files differ from it (the bench measures the tree as it is)."""
    try:
        out = subprocess.run(
            ["git", "-C", _ROOT, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not a git checkout"
    return out.stdout.strip() or "not a git checkout"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="joins + windows per N, medians reported (3)")
    p.add_argument(
        "--steps",
        default="5,10,15,20,25,30,40,50,60",
        help="room sizes, in order (5,10,15,20,25,30,40,50,60)",
    )
    p.add_argument(
        "--modes", default="slots,noslots", help="slots (video_slots = 9, views) and/or noslots (0, no view)"
    )
    p.add_argument("--duration", type=float, default=4.0, help="measurement window (s, 4)")
    p.add_argument("--settle", type=float, default=1.5, help="s after a join before measuring (1.5)")
    p.add_argument("--talk", type=float, default=3.0, help="s each participant talks in turn (3)")
    p.add_argument(
        "--batch", type=int, default=5, help="participants joining at once while the room fills (5)"
    )
    p.add_argument(
        "--quiet", type=float, default=0.5, help="s without signaling that ends a join's count (0.5)"
    )
    p.add_argument(
        "--media-delay",
        type=float,
        default=1.5,
        help="s between a participant's DTLS connecting and its first media packet (1.5; see the docstring)",
    )
    p.add_argument("--users", type=int, default=8, help="accounts the participants are spread over (8)")
    p.add_argument(
        "--max-others",
        type=float,
        default=40.0,
        help="%% of one core other processes may use during a run before it is measured again (40)",
    )
    p.add_argument(
        "--patience",
        type=float,
        default=90.0,
        help="s to keep re-measuring a disturbed run before taking it as it is (90)",
    )
    p.add_argument(
        "--ignore-layers",
        action="store_true",
        help="publishers keep sending every encoding whatever the relay's layers messages ask (no dynacast)",
    )
    p.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = p.parse_args(argv)
    args.steps = [int(s) for s in args.steps.split(",")]
    args.modes = [m for m in args.modes.split(",") if m]
    if any(m not in ("slots", "noslots") for m in args.modes) or any(s < 2 for s in args.steps):
        p.error("--modes takes slots,noslots; --steps sizes of 2 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    logging.basicConfig(level=logging.ERROR)
    print(f"measuring the meet tree at {_ROOT}: {revision()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="meet-room-") as tmp:
        servers = {}
        try:
            for mode in args.modes:  # every server before any thread exists (they start with preexec_fn)
                servers[mode] = prepare(Path(tmp), mode, args.users)
            started = time.monotonic()
            media, voice = cached_layers(), encode_voice()
            rates = ", ".join(
                f"{rid} {WIDTH // s}x{HEIGHT // s} {8 * sum(len(c) for f, _ in frames for c in f) / (LOOP_FRAMES / FPS) / 1e6:.2f} Mbps"
                f" {sum(len(f) for f, _ in frames) / (LOOP_FRAMES / FPS):.0f} pkt/s"
                for (rid, s, _r), frames in zip(LAYERS, media, strict=True)
            )
            print(f"camera: {rates}; encoded in {time.monotonic() - started:.1f} s", flush=True)
            ice.configure_ice(LOOPBACK, None)
            for mode in args.modes:
                server, tokens, code = servers[mode]
                print(f"{mode}: server pid {server.pid}, relay workers {children(server.pid)}", flush=True)
                results.append(
                    asyncio.run(ladder(args, mode, server.port, server.pid, code, tokens, media, voice))
                )
                for error in results[-1]["errors"][:5]:
                    print(f"  {mode}: {error}")
        finally:
            for mode, (server, _tokens, _code) in servers.items():
                log = server.log_path.read_text(errors="replace").splitlines()
                bad = [line for line in log if "Traceback" in line or " ERROR " in line or "ERROR:" in line]
                if bad:
                    print(f"{mode}: {len(bad)} error lines in the server's log, the first: {bad[:3]}")
                code = server.stop()
                if code not in (0, None):
                    print(f"server exited with {code}:\n{server.log_tail()}")
    print_report(results, args)
    if args.json:
        out = {"command": sys.argv, "cores": os.cpu_count(), "load_at_start": load, "settings": vars(args)}
        Path(args.json).write_text(json.dumps({**out, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
