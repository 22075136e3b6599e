"""A publisher's side of forwarding: one :class:`Source` per RTP stream, grouped in publications.

- :class:`Source` is one RTP stream (one SSRC: a track, or one simulcast layer of it). It does
  the per-publisher work once per packet: duplicate suppression, the shared history that
  answers every subscriber's NACKs, keyframe detection, the abs-send-time value, and upstream
  keyframe requests, coalesced to at most one PLI per :data:`PLI_INTERVAL` (a request inside
  the interval is deferred to its end, never dropped). It fans each packet out to the
  subscriber streams (``forward.OutStream``) it feeds.
- :class:`Publication` is one m-line a participant publishes on: one Source per simulcast
  layer (RID), or one for a single encoding. It measures each layer's bitrate and ranks the
  layers from the lowest to the highest, which is what a subscriber's allocator chooses from.

Nothing here imports aiortc (``compat.forwarding`` delivers the packets).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from meet.relay import vp8
from meet.relay.speaker import SPEECH_LEVEL

HISTORY = 1024  # packets kept per video source for NACKs (~1-6 s of video); a power of two
MASK = HISTORY - 1
PLI_INTERVAL = 0.5  # seconds: at most one upstream PLI per publisher track in this window
NTP_EPOCH = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
MAX_LAYERS = 3  # simulcast encodings one publication may have
RATE_WINDOW = 0.5  # seconds over which a layer's bitrate is measured (at least)
RATE_SMOOTHING = 0.5  # weight of the newest window in the smoothed bitrate
PACKET_OVERHEAD = 40  # bytes per packet beyond the payload (RTP header, extensions, SRTP tag)

PacketEntry = tuple[int, int, int, bytes, "int | None"]  # seq, timestamp, marker, payload, audio level


class Counters:
    """Relay-wide counters of the rarer events (packet counts live on the streams)."""

    __slots__ = (
        "dropped_waiting", "duplicates", "keyframe_requests", "layer_switches", "nack_misses",
        "nacks_received", "piped", "plis_deferred", "plis_sent", "remb_sent", "retransmitted",
        "upstream_nacks",
    )  # fmt: skip

    def __init__(self) -> None:
        self.dropped_waiting = 0  # packets not sent to a subscriber still waiting for a keyframe
        self.duplicates = 0  # publisher packets received twice (original and retransmission)
        self.keyframe_requests = 0  # from subscribers (PLI/FIR) and new subscriptions
        self.layer_switches = 0  # simulcast layer switches completed by subscriber streams
        self.nack_misses = 0  # NACKed packets no longer (or never) in the history
        self.nacks_received = 0  # sequence numbers NACKed by subscribers
        self.piped = 0  # packets sent on to another worker holding the same room (pipe.py)
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


class Target(Protocol):
    """What a source feeds: a subscriber's ``forward.OutStream`` (or a switch waiting for a keyframe)."""

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
    ) -> None: ...

    def detach(self) -> None: ...

    def restart(self) -> None: ...


class Timer(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """The clock and timers PLI coalescing uses: the running asyncio loop, or a test's fake."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], Any]) -> Timer: ...


class Source:
    """One publisher track: per-packet work done once, then fanned out to its subscribers."""

    __slots__ = (
        "_deferred", "_last_pli", "_loop", "_mark", "_pending", "_send_pli", "clock_rate", "counters",
        "history", "kind", "octets", "packets", "publisher", "rate", "rid", "size", "speech", "sr", "ssrc",
        "targets", "video",
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
        self.kind = kind
        self.video = kind == "video"
        self.clock_rate = clock_rate or (90000 if self.video else 48000)
        self.targets: list[Target] = []  # replaced, never mutated: see OutStream.attach
        self.history: list[PacketEntry | None] | None = [None] * HISTORY if self.video else None
        self.ssrc: int | None = None
        self.sr: tuple[int, int, float] | None = None  # the last SR: (NTP, RTP timestamp, arrival)
        self.packets = self.octets = 0
        self.speech = 0  # audio packets at least speaker.SPEECH_LEVEL loud (the dominant speaker)
        self.size: tuple[int, int] | None = None  # video: (width, height) of its latest keyframe
        self.rid: str | None = None  # the simulcast encoding it is (None: a single encoding)
        self.rate = 0.0  # bits per second, smoothed (Publication.measure)
        self._mark: tuple[float, int, int] | None = None  # (time, packets, octets) when last measured
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
            slot = seq & MASK
            entry = history[slot]
            if entry is not None and entry[0] == seq:
                self.counters.duplicates += 1  # the original and its retransmission both came
                return
            history[slot] = (seq, ts, marker, payload, level)
            keyframe = bool(payload) and payload[0] & 0x10 != 0 and vp8.keyframe_start(payload)
            if keyframe:
                self.size = vp8.keyframe_size(payload) or self.size
        else:
            keyframe = True  # audio: any packet starts a stream
            if level is not None and level & 0x7F <= SPEECH_LEVEL:  # RFC 6464: -dBov, V bit on top
                self.speech += 1
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
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        for out in list(self.targets):
            out.detach()

    def measure(self, now: float) -> bool:
        """Update :attr:`rate` once :data:`RATE_WINDOW` has passed; whether packets came since."""
        mark = self._mark
        if mark is None:
            self._mark = (now, self.packets, self.octets)
            return self.packets > 0
        at, packets, octets = mark
        if now - at < RATE_WINDOW:
            return self.packets > packets
        bits = 8 * (self.octets - octets + PACKET_OVERHEAD * (self.packets - packets))
        fresh = bits / (now - at)
        self.rate = fresh if self.rate == 0.0 else RATE_SMOOTHING * fresh + (1 - RATE_SMOOTHING) * self.rate
        self._mark = (now, self.packets, self.octets)
        if self.packets == packets:
            self.rate = 0.0  # stopped (a paused simulcast layer): not a choice for anyone
        return self.packets > packets

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


class Publication:
    """One m-line a participant publishes on: one :class:`Source` per simulcast layer.

    ``layers`` is ranked from the lowest bitrate to the highest (:meth:`measure`); before there
    is anything to measure it keeps the order of the client's ``a=simulcast`` list. A layer that
    stopped sending (a publisher whose uplink cannot carry its top layer pauses it) ranks by its
    last rate but is not :meth:`active`.
    """

    def __init__(
        self,
        publisher: str,
        kind: str,
        send_pli: Callable[[int], bool],
        counters: Counters,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.publisher = publisher
        self.kind = kind
        self.label: str | None = None  # "audio" | "camera" | "screen", fixed when first published
        self.live = False  # negotiated as sending to the relay
        self.counters = counters
        self._send_pli = send_pli
        self._scheduler = scheduler
        self.layers: list[Source] = [self._layer(None)]
        self._active: set[Source] = set()

    def set_rids(self, rids: Sequence[str]) -> None:
        """The encodings the client's offer announced (``()``: a single one), in its order."""
        wanted: Sequence[str | None] = [None]
        if rids:
            wanted = [rid for rid in dict.fromkeys(rids) if rid][:MAX_LAYERS]
        if [layer.rid for layer in self.layers] == list(wanted):
            return
        kept = {layer.rid: layer for layer in self.layers}
        fresh = [kept.pop(rid) if rid in kept else self._layer(rid) for rid in wanted]
        for gone in kept.values():
            gone.close()
            self._active.discard(gone)
        self.layers = fresh

    def layer_for_rid(self, rid: str | None) -> Source | None:
        """The layer sending with this RID; a single-encoding publication's one layer for any."""
        if len(self.layers) == 1 and self.layers[0].rid is None:
            return self.layers[0]
        return next((layer for layer in self.layers if layer.rid == rid), None)

    def layer_for_ssrc(self, ssrc: int) -> Source | None:
        return next((layer for layer in self.layers if layer.ssrc == ssrc), None)

    def measure(self, now: float) -> None:
        """Measure every layer's bitrate and rank them (the allocator calls this periodically)."""
        self._active = {layer for layer in self.layers if layer.measure(now)}
        if all(layer.rate > 0 for layer in self.layers):
            self.layers.sort(key=lambda layer: layer.rate)

    def active(self, layer: Source) -> bool:
        """Whether ``layer`` sent anything in the last measurement window."""
        return layer in self._active

    @property
    def simulcast(self) -> bool:
        return len(self.layers) > 1

    @property
    def packets(self) -> int:
        return sum(layer.packets for layer in self.layers)

    def close(self) -> None:
        """The track is gone: stop every layer's subscribers and deferred PLIs."""
        self.live = False
        for layer in self.layers:
            layer.close()

    def _layer(self, rid: str | None) -> Source:
        source = Source(self.publisher, self.kind, self._send_pli, self.counters, scheduler=self._scheduler)
        source.rid = rid
        return source


def speech_packets(publications: Sequence[Publication]) -> int | None:
    """Audio packets of speech received on ``publications`` (None: no audio among them)."""
    audio = [publication for publication in publications if publication.kind == "audio"]
    return sum(layer.speech for publication in audio for layer in publication.layers) if audio else None
