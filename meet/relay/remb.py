"""The REMB rate for a publisher that does not number its packets for transport-wide cc.

A browser numbers what it sends for transport-wide congestion control and estimates its own
uplink from the relay's feedback (:mod:`.uplink`). A publisher that does not (aiortc, older
clients) learns what its uplink carries only from the receiver's estimate, sent back as REMB
(draft-alvestrand-rmcat-remb): the relay's receive-side estimate, from the abs-send-time header
extension of every packet the publisher sends on the connection, audio and video alike.

:class:`Remb` is Google congestion control's delay-based half on the receive side, built from
the pieces the relay's send-side estimate uses: the 5 ms send groups, trendline and overuse
detector of :mod:`.delay`, and the AIMD rate control of :mod:`.bwe`, fed with the rate that
arrived over the last 500 ms. As in libwebrtc and aiortc, the estimate starts from the received
rate once that has been known for :data:`SETTLE` (a first REMB below what a starting encoder
sends would cut it for nothing; aiortc's even restarts its encoder, a keyframe, on a change),
or at the first overuse. Per packet only the send time is unwrapped and the packet added
to its group (:meth:`Remb.add`); the detector and the rate move once per group (about once
per video frame). :meth:`Remb.due` says when a REMB goes out: at once when the estimate fell
by 3 % or more since the last one, else every :data:`INTERVAL`. (aiortc's receive-side
estimator ran all of it for every packet: a tenth of a relay worker's CPU at one subscriber.)

Pure: no I/O, no clock; times come in as seconds of the caller's clock.
"""

from __future__ import annotations

from meet.relay.bwe import INITIAL, MAX_RATE, MIN_RATE, Aimd, Throughput
from meet.relay.delay import Detector, Groups, Trendline

UNIT = 1 / (1 << 18)  # seconds per abs-send-time unit (6.18 fixed point)
INTERVAL = 1.0  # s between two REMBs of an estimate that did not fall
DECREASE = 0.97  # an estimate below this × the last one sent goes out at once
GAP = 3.0  # s: a group delta beyond this (a pause, a restart) says nothing about queues
SETTLE = 3.0  # s of known received rate before the estimate starts (unless a queue grows first)


class Remb:
    """One publisher connection's receive-side estimate, from the abs-send-time of its packets."""

    __slots__ = ("_aimd", "_bytes", "_detector", "_due", "_groups", "_known", "_raw", "_send", "_throughput", "_trend",
                 "packets", "sent")  # fmt: skip

    def __init__(self) -> None:
        self._groups = Groups()
        self._trend = Trendline()
        self._detector = Detector()
        self._aimd = Aimd(INITIAL)
        self._throughput = Throughput()
        self._raw: int | None = None  # the last abs-send-time as sent (24 bits)
        self._send = 0.0  # and unwrapped, in seconds since the first packet
        self._bytes = 0  # of the group being filled
        self._due = 0.0
        self._known: float | None = None  # when the received rate was first known
        self.packets = 0  # packets with a send time seen
        self.sent: float | None = None  # bps of the last REMB handed out

    @property
    def estimate(self) -> float:
        """bps the publisher's uplink carries, as far as the relay can tell."""
        return min(max(self._aimd.rate, MIN_RATE), MAX_RATE)

    def add(self, abs_send_time: int, arrival: float, size: int) -> None:
        """A packet of ``size`` bytes sent at ``abs_send_time`` (24 bits, 6.18 s) arrived at ``arrival``."""
        self.packets += 1
        raw = self._raw
        if raw is not None:  # within half the 64 s wrap either way
            self._send += (((abs_send_time - raw + 0x800000) & 0xFFFFFF) - 0x800000) * UNIT
        self._raw = abs_send_time
        groups = self._groups
        current = groups.current
        deltas = groups.add(self._send, arrival)
        if current is not None and groups.current is not current:  # this packet began a group
            self._throughput.add([(0.0, current[3], self._bytes)])
            self._bytes = 0
            if deltas is not None and deltas[1] - deltas[0] <= GAP:
                self._detect(deltas, arrival)
        self._bytes += size

    def _detect(self, deltas: tuple[float, float], arrival: float) -> None:
        """One closed group: the detector's signal, then the rate."""
        send_delta, arrival_delta = deltas
        trend = self._trend.update((arrival_delta - send_delta) * 1000, arrival)
        received = self._throughput.rate()
        if trend is None or received is None:
            return  # the trendline's window is not full yet, or the received rate not known
        signal = self._detector.update(trend, self._trend.groups, send_delta, arrival)
        if self._aimd.last_update is None:  # not started: from what arrives, once it is steady
            if self._known is None:
                self._known = arrival
            if signal != "overuse" and arrival - self._known < SETTLE:
                return
            self._aimd.rate = received
        self._aimd.update(signal, received, arrival, None, True)
        self._aimd.rate = min(max(self._aimd.rate, MIN_RATE), MAX_RATE)

    def due(self, now: float) -> int | None:
        """The bps of a REMB to send now, if one is due (None until the estimate has started)."""
        if self._aimd.last_update is None:
            return None
        rate = self.estimate
        if now < self._due and (self.sent is None or rate >= DECREASE * self.sent):
            return None
        self._due = now + INTERVAL
        self.sent = rate
        return int(rate)
