"""The relay's per-packet path: publisher streams in, each subscriber's RTP streams out.

Nothing here imports aiortc: :mod:`meet.relay.compat.forwarding` hooks a publisher's receiver and
calls :meth:`Source.on_rtp` (:mod:`meet.relay.source`) with the fields of each packet after SRTP
decryption, RTX unwrap and NACK generation; a subscriber's sender reaches :class:`OutStream`
for NACK, PLI/FIR and sender reports. So this module can be profiled and benchmarked alone,
with fake send functions.

:class:`OutStream` is one subscriber m-line. It outlives the sources it carries: its SSRC,
sequence numbers and timestamps continue across a change of source (the next packet follows
the last one), a new source starts at a keyframe (VP8: S bit set, partition 0, P bit clear),
and VP8 picture ids and TL0PICIDX are shifted after a change so they continue too. It rewrites
SSRC, payload type, sequence number and timestamp, writes the negotiated header extensions
(mid, abs-send-time, audio level, transport-wide sequence number), answers NACKs from the
source's history (as RTX when negotiated), and keeps the counts and RTP/NTP pair that go into
its sender reports.

Simulcast: a subscriber carries one layer of a :class:`~meet.relay.source.Publication` at a
time. :meth:`OutStream.switch` moves it to another layer without a gap: the current layer keeps
flowing until the target layer's next keyframe (requested at once, coalesced per layer), and
the stream continues from that keyframe. ``switch(None)`` pauses a video (the subscriber's link
cannot carry even the lowest layer); audio is never paused.

Sequence arithmetic is modulo 2**16 and timestamps modulo 2**32 throughout; "older" means
more than half the space behind.
"""

from __future__ import annotations

import math
import random
import struct
import time
from collections.abc import Callable
from typing import Protocol

from meet.relay import vp8
from meet.relay.source import (
    HISTORY,
    MASK,
    NTP_EPOCH,
    PLI_INTERVAL,
    Counters,
    PacketEntry,
    Publication,
    Scheduler,
    Source,
    abs_send_time,
    ntp_time,
)

__all__ = [
    "HISTORY", "KEYFRAME_RETRY", "NTP_EPOCH", "PLI_INTERVAL", "Counters", "Link", "OutStream",
    "Publication", "Scheduler", "Source", "abs_send_time", "ntp_time", "shift_picture_id",
    "vp8_keyframe_start", "vp8_picture_id",
]  # fmt: skip

KEYFRAME_RETRY = 0.5  # seconds: a subscriber still waiting for a keyframe asks again (one lost keyframe: a freeze under 1 s; upstream PLIs are coalesced per PLI_INTERVAL anyway)
MAX_PADDING_PACKETS = 16  # per call of OutStream.pad (every 10 ms): up to ~3.5 Mbit/s of padding-only packets
PADDING_SIZE = 255  # bytes of a padding-only packet's padding (the last one counts them)

_HDR = struct.Struct("!BBHII")
_SEQ = struct.Struct("!H")
_LEVEL = [bytes([b]) for b in range(256)]
_PADDING = bytes(PADDING_SIZE - 1) + bytes((PADDING_SIZE,))

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

vp8_keyframe_start = vp8.keyframe_start
vp8_picture_id = vp8.picture_id
shift_picture_id = vp8.shift_picture_id


class Link(Protocol):
    """A subscriber connection's congestion control (``meet.relay.bwe.Link``)."""

    def sent(self, size: int, now: float) -> int: ...


def _never(data: bytes) -> bool:
    return False


def _not_ready() -> bool:
    return False


class _Switch:
    """Listens to a layer an :class:`OutStream` is switching to, until its first keyframe."""

    __slots__ = ("out", "target")

    def __init__(self, out: OutStream, target: Source) -> None:
        self.out, self.target = out, target

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
        out = self.out
        if keyframe and out._ready():
            out._complete_switch(self)
            out.forward(seq, ts, marker, payload, level, keyframe, abs3, now)
        elif now - out.kf_asked >= KEYFRAME_RETRY:
            out.kf_asked = now
            self.target.request_keyframe()

    def detach(self) -> None:
        """The target layer went away: stay on the current one."""
        self.out._cancel_switch()

    def restart(self) -> None:
        """The target layer restarted its stream: keep waiting for its keyframe."""


class OutStream:
    """One subscriber m-line: a continuous RTP stream fed by one source at a time."""

    __slots__ = (
        "_ext", "_ext_plain", "_ext_size", "_level", "_link", "_ready", "_send",
        "_switch", "clock_rate", "counters", "floor", "kf_asked", "kind", "last_time", "last_ts_out",
        "max_in", "next_seq", "octets", "packets", "padding", "paused", "pic_next", "pic_off", "pt",
        "publication", "retransmitted", "rtx_pt", "rtx_seq", "rtx_ssrc", "seq_off", "source", "ssrc",
        "started", "switches", "tl0_next", "tl0_off", "ts_off", "video", "waiting",
    )  # fmt: skip

    def __init__(self, kind: str, counters: Counters) -> None:
        self.kind = kind
        self.video = kind == "video"
        self.source: Source | None = None  # the layer carried now
        self.publication: Publication | None = None  # the track it belongs to (subscribe)
        self.counters = counters
        self.pt = 0
        self.rtx_pt: int | None = None
        self.ssrc = self.rtx_ssrc = 0
        self.clock_rate = 90000 if self.video else 48000
        self._send: Callable[[bytes], bool] = _never
        self._ready: Callable[[], bool] = _not_ready
        self._link: Link | None = None
        # The extension block: parts around the dynamic values (see _extension_parts).
        self._ext: list[bytes] = [b""]
        self._ext_plain = b""
        self._ext_size = 0
        self._level = False
        self._switch: _Switch | None = None
        self.waiting = True  # for a source's keyframe (and a connected transport)
        self.paused = False  # a video the subscriber's link cannot carry (switch(None))
        self.started = False  # has ever sent: sender reports carry real values
        self.seq_off = self.ts_off = self.max_in = self.floor = 0
        self.next_seq: int | None = None  # where the next segment continues
        self.last_ts_out = 0
        self.last_time = 0.0
        self.pic_off = self.tl0_off = 0
        self.pic_next: int | None = None
        self.tl0_next: int | None = None
        self.rtx_seq = random.randrange(0x8000)
        self.packets = self.octets = self.retransmitted = self.padding = self.switches = 0
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
        link: Link | None = None,
    ) -> None:
        """What the subscriber's connection negotiated for this m-line (after each negotiation).

        ``link``: the connection's congestion control; when the transport-wide-cc extension is
        negotiated, every packet sent carries the sequence number ``link.sent()`` hands out.
        """
        self.pt, self.rtx_pt, self.ssrc, self.rtx_ssrc = pt, rtx_pt, ssrc, rtx_ssrc
        self.clock_rate = clock_rate
        self._send, self._ready = send, ready
        extensions = {uri: i for uri, i in extensions.items() if 1 <= i <= 14}  # one-byte headers only
        static = [(extensions[URI_MID], mid.encode())] if mid and URI_MID in extensions else []
        dynamic: list[tuple[int, int]] = []
        if self.video and URI_ABS_SEND_TIME in extensions:
            dynamic.append((extensions[URI_ABS_SEND_TIME], 3))
        self._level = not self.video and URI_AUDIO_LEVEL in extensions
        if self._level:
            dynamic.append((extensions[URI_AUDIO_LEVEL], 1))
        self._link = link if URI_TRANSPORT_CC in extensions else None
        if self._link is not None:
            dynamic.append((extensions[URI_TRANSPORT_CC], 2))
        self._ext = _extension_parts(static, dynamic)
        self._ext_size = sum(map(len, self._ext)) + sum(n for _, n in dynamic)
        self._ext_plain = b"".join(_extension_parts(static, []))

    def subscribe(self, publication: Publication, layer: Source | None) -> None:
        """Carry ``publication`` (its ``layer``: None pauses it) from the next keyframe on."""
        if publication is not self.publication:
            self.unsubscribe()
            self.publication = publication
        self.switch(layer)

    def unsubscribe(self) -> None:
        """Carry nothing (the numbering continues with whatever comes next)."""
        self._cancel_switch()
        self.detach()
        self.publication = None
        self.paused = False

    def switch(self, layer: Source | None) -> None:
        """Carry ``layer`` instead: at once when nothing flows, else from its next keyframe."""
        if layer is None:
            self._cancel_switch()
            self.detach()
            self.paused = True
            return
        self.paused = False
        if layer is self.source or (self._switch is not None and self._switch.target is layer):
            if layer is self.source:
                self._cancel_switch()
            return
        self._cancel_switch()
        if self.source is None or self.waiting:
            self.attach(layer)
            return
        self._switch = _Switch(self, layer)
        layer.targets = [*layer.targets, self._switch]
        self.kf_asked = time.time()
        layer.request_keyframe()

    @property
    def target(self) -> Source | None:
        """The layer a switch in progress waits for (None: no switch in progress)."""
        return self._switch.target if self._switch is not None else None

    def attach(self, source: Source) -> None:
        """Carry ``source`` from its next keyframe on (asking for one now)."""
        if source is self.source:
            return
        self.detach()
        self.source = source
        # Copy on write: a source's packet loop iterates the list it read, unaffected.
        source.targets = [*source.targets, self]
        self.waiting = True
        self.kf_asked = -math.inf
        self._ask_keyframe(time.time())

    def detach(self) -> None:
        """Stop carrying the current source; the next one continues the numbering."""
        source = self.source
        if source is None:
            return
        self._end_segment()
        source.targets = [t for t in source.targets if t is not self]
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
        if self.pic_off or self.tl0_off:
            payload = vp8.shift(payload, self.pic_off, self.tl0_off)
        ext = self._ext
        if len(ext) == 1:
            block = ext[0]
        elif self._link is not None:
            transport_seq = _SEQ.pack(self._link.sent(12 + self._ext_size + len(payload), now))
            if len(ext) == 3:
                value = abs3 if self.video else _LEVEL[127 if level is None else level]
                block = ext[0] + value + ext[1] + transport_seq + ext[2]
            else:
                block = ext[0] + transport_seq + ext[1]
        elif self.video:
            block = ext[0] + abs3 + ext[1]
        elif level is not None:
            block = ext[0] + _LEVEL[level] + ext[1]
        else:
            block = self._ext_plain
        header = _HDR.pack(
            0x90 if block else 0x80, self.pt | (marker << 7), (seq + self.seq_off) & 0xFFFF, out_ts, self.ssrc
        )
        if self._send(header + block + payload):
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
        now = time.time()
        abs3 = abs_send_time(now)
        for out_seq in lost:
            seq = (out_seq - self.seq_off) & 0xFFFF
            entry = history[seq & MASK]
            if (
                entry is None
                or entry[0] != seq
                or (seq - self.floor) & 0xFFFF >= 0x8000  # before this segment
                or (self.max_in - seq) & 0xFFFF >= 0x8000  # never forwarded yet
            ):
                counters.nack_misses += 1
                continue
            if self._retransmit(out_seq, entry, abs3, now):
                self.retransmitted += 1
                counters.retransmitted += 1

    def pad(self, size: int, now: float) -> int:
        """Send about ``size`` bytes of probing padding now; the bytes actually sent.

        Padding resends the newest packet forwarded, as RTX (the subscriber drops it as a
        duplicate); with no stream in progress (a paused video), padding-only RTX packets. It
        needs RTX, so audio sends none.
        """
        if self.rtx_pt is None or size <= 0 or not self._ready():
            return 0
        source = self.source
        history = source.history if source is not None and not self.waiting else None
        entry = history[self.max_in & MASK] if history is not None else None
        abs3 = abs_send_time(now)
        sent = 0
        for _ in range(MAX_PADDING_PACKETS):
            if sent >= size:
                break
            if entry is not None and entry[0] == self.max_in:
                count = self._retransmit((self.max_in + self.seq_off) & 0xFFFF, entry, abs3, now)
            elif self.video:
                count = self._padding_only(abs3, now)
            else:
                count = 0
            if not count:
                break
            sent += count
            self.padding += 1
        return sent

    def _padding_only(self, abs3: bytes, now: float) -> int:
        """One RTX packet of nothing but :data:`PADDING_SIZE` bytes of padding (RFC 3550 P bit)."""
        block = self._video_block(abs3, PADDING_SIZE, now)
        first = 0xB0 if block else 0xA0  # version 2, padding, extension
        header = _HDR.pack(first, self.rtx_pt or 0, self.rtx_seq, self.last_ts_out, self.rtx_ssrc)
        self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        data = header + block + _PADDING
        return len(data) if self._send(data) else 0

    def on_keyframe_request(self) -> None:
        """The subscriber sent PLI or FIR."""
        if self.source is not None:
            self.source.request_keyframe()

    def sender_info(self) -> tuple[int, int, int, int] | None:
        """(NTP time, RTP timestamp, packets, octets) for a sender report now; None before media
        and while the stream carries nothing (an empty receive slot reports nothing)."""
        if not self.started or (self.source is None and self.publication is None):
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
        self.pic_off = self.tl0_off = 0
        if self.video:
            picture, tl0, bits = vp8.numbering(payload)
            if picture is not None and self.pic_next is not None:
                self.pic_off = (self.pic_next - picture) & ((1 << bits) - 1)
            if tl0 is not None and self.tl0_next is not None:
                self.tl0_off = (self.tl0_next - tl0) & 0xFF
        self.waiting = False
        self.started = True
        self.last_time = now

    def _end_segment(self) -> None:
        """Remember where the numbering continues, and wait for the next keyframe."""
        if not self.waiting:
            self.next_seq = (self.max_in + self.seq_off + 1) & 0xFFFF
            history = self.source.history if self.source is not None else None
            entry = history[self.max_in & MASK] if history is not None else None
            if entry is not None and entry[0] == self.max_in:
                picture, tl0, bits = vp8.numbering(entry[3])
                if picture is not None:
                    self.pic_next = (picture + self.pic_off + 1) & ((1 << bits) - 1)
                if tl0 is not None:
                    self.tl0_next = (tl0 + self.tl0_off + 1) & 0xFF
        self.waiting = True

    def _complete_switch(self, switch: _Switch) -> None:
        """The target layer's keyframe came: leave the current layer, continue on the target."""
        target = switch.target
        target.targets = [t for t in target.targets if t is not switch]
        self._switch = None
        self.detach()
        self.source = target
        target.targets = [*target.targets, self]
        self.waiting = True
        self.switches += 1
        self.counters.layer_switches += 1

    def _cancel_switch(self) -> None:
        switch = self._switch
        if switch is not None:
            self._switch = None
            switch.target.targets = [t for t in switch.target.targets if t is not switch]

    def _ask_keyframe(self, now: float) -> None:
        if self.source is not None and now - self.kf_asked >= KEYFRAME_RETRY and self._ready():
            self.kf_asked = now
            self.source.request_keyframe()

    def _retransmit(self, out_seq: int, entry: PacketEntry, abs3: bytes, now: float) -> int:
        """Resend one history entry (as RTX when negotiated); the bytes sent, 0 if not."""
        _seq, ts, marker, payload, _level = entry
        if self.pic_off or self.tl0_off:
            payload = vp8.shift(payload, self.pic_off, self.tl0_off)
        out_ts = (ts + self.ts_off) & 0xFFFFFFFF
        if self.rtx_pt is not None:
            body = _SEQ.pack(out_seq) + payload
            pt, seq, ssrc = self.rtx_pt, self.rtx_seq, self.rtx_ssrc
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        else:
            body, pt, seq, ssrc = payload, self.pt, out_seq, self.ssrc
        block = self._video_block(abs3, len(body), now)
        data = _HDR.pack(0x90 if block else 0x80, pt | (marker << 7), seq, out_ts, ssrc) + block + body
        return len(data) if self._send(data) else 0

    def _video_block(self, abs3: bytes, body_size: int, now: float) -> bytes:
        """The extension block of a packet sent outside the hot path (RTX, padding), numbered
        for transport-wide cc when negotiated (mid, abs-send-time and transport seq as negotiated)."""
        ext = self._ext
        if len(ext) == 1:
            return ext[0]
        if self._link is None:
            return ext[0] + abs3 + ext[1]
        transport_seq = _SEQ.pack(self._link.sent(12 + self._ext_size + body_size, now))
        if len(ext) == 3:
            return ext[0] + abs3 + ext[1] + transport_seq + ext[2]
        return ext[0] + transport_seq + ext[1]  # transport-cc without abs-send-time


def _extension_parts(static: list[tuple[int, bytes]], dynamic: list[tuple[int, int]]) -> list[bytes]:
    """A one-byte-header extension block (RFC 8285) cut around its dynamic values.

    ``dynamic`` lists (id, size) in order; the caller joins the returned parts with a value of
    each size in between: ``parts[0] + v1 + parts[1] + v2 + ...``. No extensions at all: ``[b""]``.
    """
    body = b"".join(bytes(((ext_id << 4) | (len(value) - 1),)) + value for ext_id, value in static)
    size = len(body) + sum(1 + n for _, n in dynamic)
    if not size:
        return [b""]
    parts = [b"\xbe\xde" + struct.pack("!H", (size + -size % 4) // 4) + body]
    for ext_id, n in dynamic:
        parts[-1] += bytes(((ext_id << 4) | (n - 1),))
        parts.append(b"")
    parts[-1] += b"\x00" * (-size % 4)
    return parts
