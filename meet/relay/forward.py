"""The relay's per-packet path: one publisher track in, its subscribers' RTP streams out.

Nothing here imports aiortc: :mod:`meet.relay.compat.forwarding` hooks a publisher's receiver and
calls :meth:`Source.on_rtp` with the fields of each packet after SRTP decryption, RTX unwrap
and NACK generation; a subscriber's sender reaches :class:`OutStream` for NACK, PLI/FIR and
sender reports. So this module can be profiled and benchmarked alone, with fake send functions.

- :class:`Source` does the per-publisher work once per packet: duplicate suppression, the
  shared history that answers every subscriber's NACKs, keyframe detection, the abs-send-time
  value, and upstream keyframe requests, coalesced to at most one PLI per
  :data:`PLI_INTERVAL` (a request inside the interval is deferred to its end, never dropped).
- :class:`OutStream` is one subscriber m-line. It outlives the sources it carries: its SSRC,
  sequence numbers and timestamps continue across a change of source (the next packet follows
  the last one), a new source starts at a keyframe (VP8: S bit set, partition 0, P bit clear),
  and VP8 picture ids are shifted after a change so they continue too. It rewrites SSRC, payload
  type, sequence number and timestamp, writes the negotiated header extensions (mid,
  abs-send-time, audio level), answers NACKs from the source's history (as RTX when
  negotiated), and keeps the counts and RTP/NTP pair that go into its sender reports.

Sequence arithmetic is modulo 2**16 and timestamps modulo 2**32 throughout; "older" means
more than half the space behind.
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol

HISTORY = 1024  # packets kept per video source for NACKs (~1-6 s of video); a power of two
_MASK = HISTORY - 1
PLI_INTERVAL = 0.5  # seconds: at most one upstream PLI per publisher track in this window
KEYFRAME_RETRY = 1.0  # seconds: a subscriber still waiting for a keyframe asks again
NTP_EPOCH = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)

_HDR = struct.Struct("!BBHII")
_OSN = struct.Struct("!H")
_LEVEL = [bytes([b]) for b in range(256)]

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

PacketEntry = tuple[int, int, int, bytes, "int | None"]  # seq, timestamp, marker, payload, audio level


class Counters:
    """Relay-wide counters of the rarer events (packet counts live on the streams)."""

    __slots__ = (
        "dropped_waiting", "duplicates", "keyframe_requests", "nack_misses", "nacks_received",
        "plis_deferred", "plis_sent", "remb_sent", "retransmitted", "upstream_nacks",
    )  # fmt: skip

    def __init__(self) -> None:
        self.dropped_waiting = 0  # packets not sent to a subscriber still waiting for a keyframe
        self.duplicates = 0  # publisher packets received twice (original and retransmission)
        self.keyframe_requests = 0  # from subscribers (PLI/FIR) and new subscriptions
        self.nack_misses = 0  # NACKed packets no longer (or never) in the history
        self.nacks_received = 0  # sequence numbers NACKed by subscribers
        self.plis_deferred = 0  # PLIs postponed to the end of a coalescing interval
        self.plis_sent = 0  # upstream, to publishers
        self.remb_sent = 0  # upstream, to publishers
        self.retransmitted = 0  # packets resent in answer to NACKs
        self.upstream_nacks = 0  # NACK packets sent to publishers

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def abs_send_time(now: float) -> bytes:
    """The abs-send-time extension value for Unix time ``now``: NTP seconds in 6.18 fixed point."""
    return (int((now + NTP_EPOCH) * 262144) & 0xFFFFFF).to_bytes(3, "big")


def ntp_time(now: float) -> int:
    """Unix time as a 64-bit NTP timestamp."""
    seconds = int(now)
    return ((seconds + NTP_EPOCH) << 32) | int((now - seconds) * 4294967296)


def _vp8_descriptor_end(payload: bytes) -> int:
    """Offset of the VP8 payload header after the RFC 7741 payload descriptor."""
    pos = 1
    if payload[0] & 0x80:
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # picture id: 7 or 15 bits
            pos += 2 if payload[2] & 0x80 else 1
        if ext & 0x40:  # TL0PICIDX
            pos += 1
        if ext & 0x30:  # TID/KEYIDX
            pos += 1
    return pos


def vp8_keyframe_start(payload: bytes) -> bool:
    """Whether a VP8 RTP payload is the first packet of a keyframe."""
    if len(payload) < 3 or payload[0] & 0x17 != 0x10:  # S set, partition id 0
        return False
    try:
        pos = _vp8_descriptor_end(payload)
        return not payload[pos] & 0x01  # P bit clear: a key frame
    except IndexError:
        return False


def vp8_picture_id(payload: bytes) -> tuple[int, int, int] | None:
    """(offset, bits, value) of the picture id in a VP8 payload descriptor, or None."""
    if len(payload) < 3 or not payload[0] & 0x80 or not payload[1] & 0x80:
        return None
    if payload[2] & 0x80:
        if len(payload) < 4:
            return None
        return 2, 15, ((payload[2] & 0x7F) << 8) | payload[3]
    return 2, 7, payload[2]


def shift_picture_id(payload: bytes, offset: int) -> bytes:
    """The payload with its VP8 picture id advanced by ``offset`` (same width)."""
    found = vp8_picture_id(payload)
    if found is None:
        return payload
    pos, bits, value = found
    value = (value + offset) & ((1 << bits) - 1)
    if bits == 15:
        return payload[:pos] + bytes(((value >> 8) | 0x80, value & 0xFF)) + payload[pos + 2 :]
    return payload[:pos] + bytes((value,)) + payload[pos + 1 :]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """The clock and timers PLI coalescing uses: the running asyncio loop, or a test's fake."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], Any]) -> Timer: ...


class Source:
    """One publisher track: per-packet work done once, then fanned out to its subscribers."""

    __slots__ = (
        "_deferred", "_last_pli", "_loop", "_pending", "_send_pli", "clock_rate", "counters",
        "history", "kind", "label", "live", "octets", "packets", "publisher", "sr", "ssrc", "targets",
        "video",
    )  # fmt: skip

    def __init__(
        self,
        publisher: str,
        kind: str,
        send_pli: Callable[[int], bool],
        counters: Counters,
        clock_rate: int | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.publisher = publisher
        self.label: str | None = None  # "audio" | "camera" | "screen", fixed when first published
        self.kind = kind
        self.video = kind == "video"
        self.clock_rate = clock_rate or (90000 if self.video else 48000)
        self.targets: list[OutStream] = []
        self.history: list[PacketEntry | None] | None = [None] * HISTORY if self.video else None
        self.ssrc: int | None = None
        self.sr: tuple[int, int, float] | None = None  # the last SR: (NTP, RTP timestamp, arrival)
        self.packets = self.octets = 0
        self.live = False  # negotiated as sending to the relay
        self.counters = counters
        self._send_pli = send_pli
        self._loop: Scheduler = scheduler or asyncio.get_running_loop()
        self._last_pli = -math.inf
        self._deferred: Timer | None = None
        self._pending = False  # a PLI is owed but could not be sent yet (no SSRC or transport)

    def on_rtp(self, ssrc: int, seq: int, ts: int, marker: int, payload: bytes, level: int | None) -> None:
        """One packet from the publisher (the hot path)."""
        if ssrc != self.ssrc:
            self._new_stream(ssrc)
        self.packets += 1
        self.octets += len(payload)
        history = self.history
        if history is not None:
            slot = seq & _MASK
            entry = history[slot]
            if entry is not None and entry[0] == seq:
                self.counters.duplicates += 1  # the original and its retransmission both came
                return
            history[slot] = (seq, ts, marker, payload, level)
            keyframe = bool(payload) and payload[0] & 0x10 != 0 and vp8_keyframe_start(payload)
        else:
            keyframe = True  # audio: any packet starts a stream
        if self._pending:
            self._try_pli()
        targets = self.targets
        if targets:
            now = time.time()
            abs3 = abs_send_time(now)
            for out in targets:
                out.forward(seq, ts, marker, payload, level, keyframe, abs3, now)

    def on_sender_report(self, ntp: int, rtp_timestamp: int) -> None:
        """The publisher's SR: its wallclock/RTP pair, for our subscribers' reports (lip sync)."""
        self.sr = (ntp, rtp_timestamp, time.time())

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: now, or at the end of the current PLI interval."""
        if not self.video:
            return
        self.counters.keyframe_requests += 1
        if self._deferred is not None or self._pending:
            return  # one is already owed: this request rides on it
        due = self._last_pli + PLI_INTERVAL
        if self._loop.time() >= due:
            self._try_pli()
        else:
            self.counters.plis_deferred += 1
            self._deferred = self._loop.call_at(due, self._fire_deferred)

    def close(self) -> None:
        """The track is gone: stop its subscribers and any deferred PLI."""
        self.live = False
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        for out in list(self.targets):
            out.detach()

    def _fire_deferred(self) -> None:
        self._deferred = None
        self._try_pli()

    def _try_pli(self) -> None:
        if self.ssrc is not None and self._send_pli(self.ssrc):
            self._pending = False
            self._last_pli = self._loop.time()
            self.counters.plis_sent += 1
        else:
            self._pending = True  # retried on the next packet: deferred, never dropped

    def _new_stream(self, ssrc: int) -> None:
        """First packet, or the publisher restarted its stream with a new SSRC."""
        if self.ssrc is not None:
            if self.history is not None:
                self.history = [None] * HISTORY
            for out in self.targets:
                out.restart()
        self.ssrc = ssrc


def _never(data: bytes) -> bool:
    return False


def _not_ready() -> bool:
    return False


class OutStream:
    """One subscriber m-line: a continuous RTP stream fed by one source at a time."""

    __slots__ = (
        "_abs", "_ext_a", "_ext_b", "_ext_plain", "_level", "_ready", "_send", "clock_rate",
        "counters", "floor", "kf_asked", "kind", "last_time", "last_ts_out", "max_in", "next_seq",
        "octets", "packets", "pic_next", "pic_off", "pt", "retransmitted", "rtx_pt", "rtx_seq",
        "rtx_ssrc", "seq_off", "source", "ssrc", "started", "ts_off", "video", "waiting",
    )  # fmt: skip

    def __init__(self, kind: str, counters: Counters) -> None:
        self.kind = kind
        self.video = kind == "video"
        self.source: Source | None = None
        self.counters = counters
        self.pt = 0
        self.rtx_pt: int | None = None
        self.ssrc = self.rtx_ssrc = 0
        self.clock_rate = 90000 if self.video else 48000
        self._send: Callable[[bytes], bool] = _never
        self._ready: Callable[[], bool] = _not_ready
        self._ext_a = self._ext_b = self._ext_plain = b""
        self._abs = self._level = False
        self.waiting = True  # for a source's keyframe (and a connected transport)
        self.started = False  # has ever sent: sender reports carry real values
        self.seq_off = self.ts_off = self.max_in = self.floor = 0
        self.next_seq: int | None = None  # where the next segment continues
        self.last_ts_out = 0
        self.last_time = 0.0
        self.pic_off = 0
        self.pic_next: int | None = None
        self.rtx_seq = random.randrange(0x8000)
        self.packets = self.octets = self.retransmitted = 0
        self.kf_asked = -math.inf

    # --- set-up ---------------------------------------------------------------------------------

    def configure(
        self,
        *,
        pt: int,
        rtx_pt: int | None,
        ssrc: int,
        rtx_ssrc: int,
        clock_rate: int,
        extensions: dict[str, int],
        mid: str | None,
        send: Callable[[bytes], bool],
        ready: Callable[[], bool],
    ) -> None:
        """What the subscriber's connection negotiated for this m-line (after each negotiation)."""
        self.pt, self.rtx_pt, self.ssrc, self.rtx_ssrc = pt, rtx_pt, ssrc, rtx_ssrc
        self.clock_rate = clock_rate
        self._send, self._ready = send, ready
        extensions = {uri: i for uri, i in extensions.items() if 1 <= i <= 14}  # one-byte headers only
        static = [(extensions[URI_MID], mid.encode())] if mid and URI_MID in extensions else []
        dynamic_uri, size = (URI_ABS_SEND_TIME, 3) if self.video else (URI_AUDIO_LEVEL, 1)
        dynamic_id = extensions.get(dynamic_uri)
        self._abs = self.video and dynamic_id is not None
        self._level = not self.video and dynamic_id is not None
        self._ext_plain = b"".join(_extension_block(static, None))
        self._ext_a, self._ext_b = _extension_block(static, (dynamic_id, size) if dynamic_id else None)

    def attach(self, source: Source) -> None:
        """Carry ``source`` from its next keyframe on (asking for one now)."""
        if source is self.source:
            return
        self.detach()
        self.source = source
        source.targets.append(self)
        self.waiting = True
        self.kf_asked = -math.inf
        self._ask_keyframe(time.time())

    def detach(self) -> None:
        """Stop carrying the current source; the next one continues the numbering."""
        source = self.source
        if source is None:
            return
        self._end_segment()
        source.targets.remove(self)
        self.source = None

    def restart(self) -> None:
        """The source restarted its stream: continue from its next keyframe."""
        self._end_segment()
        self.kf_asked = -math.inf

    # --- the hot path ---------------------------------------------------------------------------

    def forward(
        self,
        seq: int,
        ts: int,
        marker: int,
        payload: bytes,
        level: int | None,
        keyframe: bool,
        abs3: bytes,
        now: float,
    ) -> None:
        """Rewrite one source packet for this subscriber and send it."""
        newest = True
        if self.waiting:
            if not keyframe or not self._ready():
                self.counters.dropped_waiting += 1
                self._ask_keyframe(now)
                return
            self._start(seq, ts, payload, now)
        else:
            ahead = (seq - self.max_in) & 0xFFFF
            if ahead < 0x8000:
                self.max_in = seq
                if (seq - self.floor) & 0xFFFF > 0x4000:
                    self.floor = (seq - 0x2000) & 0xFFFF
            elif (seq - self.floor) & 0xFFFF >= 0x8000:
                return  # from before this segment started
            else:
                newest = False
        out_ts = (ts + self.ts_off) & 0xFFFFFFFF
        if self.pic_off:
            payload = shift_picture_id(payload, self.pic_off)
        if self._abs:
            ext = self._ext_a + abs3 + self._ext_b
        elif self._level and level is not None:
            ext = self._ext_a + _LEVEL[level] + self._ext_b
        else:
            ext = self._ext_plain
        header = _HDR.pack(
            0x90 if ext else 0x80, self.pt | (marker << 7), (seq + self.seq_off) & 0xFFFF, out_ts, self.ssrc
        )
        if self._send(header + ext + payload):
            self.packets += 1
            self.octets += len(payload)
        if newest:
            self.last_ts_out = out_ts
            self.last_time = now

    # --- feedback from the subscriber -----------------------------------------------------------

    def on_nack(self, lost: list[int]) -> None:
        """Retransmit what the subscriber lost, from the source's history."""
        counters = self.counters
        counters.nacks_received += len(lost)
        source = self.source
        history = source.history if source is not None else None
        if history is None or self.waiting:
            counters.nack_misses += len(lost)
            return
        abs3 = abs_send_time(time.time())
        for out_seq in lost:
            seq = (out_seq - self.seq_off) & 0xFFFF
            entry = history[seq & _MASK]
            if (
                entry is None
                or entry[0] != seq
                or (seq - self.floor) & 0xFFFF >= 0x8000  # before this segment
                or (self.max_in - seq) & 0xFFFF >= 0x8000  # never forwarded yet
            ):
                counters.nack_misses += 1
                continue
            self._retransmit(out_seq, entry, abs3)

    def on_keyframe_request(self) -> None:
        """The subscriber sent PLI or FIR."""
        if self.source is not None:
            self.source.request_keyframe()

    def sender_info(self) -> tuple[int, int, int, int] | None:
        """(NTP time, RTP timestamp, packets, octets) for a sender report now; None before media."""
        if not self.started:
            return None
        now = time.time()
        source = self.source
        if source is not None and source.sr is not None and not self.waiting:
            # The publisher's own pair, in its own clock, moved forward by the time since it
            # came and shifted into our timestamps: its audio and video stay in sync at the
            # subscriber whatever the publisher's clock or the delay of its reports.
            sr_ntp, sr_rtp, at = source.sr
            elapsed = max(0.0, now - at)
            ntp = (sr_ntp + int(elapsed * 4294967296)) & 0xFFFFFFFFFFFFFFFF
            rtp = sr_rtp + self.ts_off + int(elapsed * self.clock_rate)
        else:
            ntp = ntp_time(now)
            rtp = self.last_ts_out + int((now - self.last_time) * self.clock_rate)
        return ntp, rtp & 0xFFFFFFFF, self.packets, self.octets

    # --- internals ------------------------------------------------------------------------------

    def _start(self, seq: int, ts: int, payload: bytes, now: float) -> None:
        """Begin a segment at this (keyframe) packet, continuing the previous numbering."""
        if self.next_seq is None:
            out_seq, out_ts = random.randrange(0x8000), random.getrandbits(32)
        else:
            out_seq = self.next_seq
            gap = max(1, int((now - self.last_time) * self.clock_rate))
            out_ts = (self.last_ts_out + gap) & 0xFFFFFFFF
        self.seq_off = (out_seq - seq) & 0xFFFF
        self.ts_off = (out_ts - ts) & 0xFFFFFFFF
        self.max_in = self.floor = seq
        self.pic_off = 0
        if self.video and self.pic_next is not None:
            found = vp8_picture_id(payload)
            if found is not None:
                self.pic_off = (self.pic_next - found[2]) & ((1 << found[1]) - 1)
        self.waiting = False
        self.started = True
        self.last_time = now

    def _end_segment(self) -> None:
        """Remember where the numbering continues, and wait for the next keyframe."""
        if not self.waiting:
            self.next_seq = (self.max_in + self.seq_off + 1) & 0xFFFF
            history = self.source.history if self.source is not None else None
            entry = history[self.max_in & _MASK] if history is not None else None
            found = vp8_picture_id(entry[3]) if entry is not None and entry[0] == self.max_in else None
            if found is not None:
                self.pic_next = (found[2] + self.pic_off + 1) & ((1 << found[1]) - 1)
        self.waiting = True

    def _ask_keyframe(self, now: float) -> None:
        if self.source is not None and now - self.kf_asked >= KEYFRAME_RETRY and self._ready():
            self.kf_asked = now
            self.source.request_keyframe()

    def _retransmit(self, out_seq: int, entry: PacketEntry, abs3: bytes) -> None:
        _seq, ts, marker, payload, _level = entry
        if self.pic_off:
            payload = shift_picture_id(payload, self.pic_off)
        ext = self._ext_a + abs3 + self._ext_b if self._abs else self._ext_plain
        out_ts = (ts + self.ts_off) & 0xFFFFFFFF
        first = 0x90 if ext else 0x80
        if self.rtx_pt is not None:
            header = _HDR.pack(first, self.rtx_pt | (marker << 7), self.rtx_seq, out_ts, self.rtx_ssrc)
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            data = header + ext + _OSN.pack(out_seq) + payload
        else:
            data = _HDR.pack(first, self.pt | (marker << 7), out_seq, out_ts, self.ssrc) + ext + payload
        if self._send(data):
            self.retransmitted += 1
            self.counters.retransmitted += 1


def _extension_block(static: list[tuple[int, bytes]], dynamic: tuple[int, int] | None) -> tuple[bytes, bytes]:
    """A one-byte-header extension block (RFC 8285) split around a dynamic value: (before, after).

    ``dynamic`` is (id, size): the caller puts ``size`` bytes between the two parts.
    """
    body = b"".join(bytes(((ext_id << 4) | (len(value) - 1),)) + value for ext_id, value in static)
    size = len(body)
    if dynamic is not None:
        body += bytes(((dynamic[0] << 4) | (dynamic[1] - 1),))
        size += 1 + dynamic[1]
    if not size:
        return b"", b""
    padding = -size % 4
    head = b"\xbe\xde" + struct.pack("!H", (size + padding) // 4)
    return head + body, b"\x00" * padding
