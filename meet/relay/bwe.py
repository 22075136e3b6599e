"""Send-side bandwidth estimation for one subscriber connection, from transport-wide cc feedback.

Google Congestion Control (draft-ietf-rmcat-gcc-02, as libwebrtc implements it), compact. The
relay numbers every packet it sends a subscriber with a transport-wide sequence number
(:meth:`Link.sent`); the subscriber's browser reports, in TWCC feedback (:mod:`.twcc`), when
each arrived. From those pairs of (send time, arrival time) the link derives:

- **Delay-based estimate.** Packets are grouped in 5 ms bursts (:mod:`.delay`); between two
  groups, *d = Δarrival − Δsend* is how much the path's queue grew. A trendline filter
  (:class:`.delay.Trendline`: the accumulated delay smoothed with 0.9, a linear
  regression over the last 20 groups) gives the queue's growth rate; its slope
  × min(groups, 60) × 4 is compared to an adaptive threshold (starts at
  12.5 ms, follows the signal slowly upwards (k = 0.0087) and faster downwards (k = 0.039),
  within 6–600 ms, so a competing TCP flow does not starve us). Above it for more than 10 ms
  and two groups: *overuse*; below its negative: *underuse*; else *normal*.
- **AIMD rate control** (:class:`Aimd`). Overuse: decrease to :data:`BETA` 0.85 × the
  acknowledged throughput (what the subscriber received over the last 500 ms; under heavy
  loss, over the last 250 ms if lower: a link that just narrowed delivers its new rate at
  once), at most once per 200 ms. Normal: increase, multiplicatively (+8 %/s) while far from
  the last link capacity measured at a decrease, additively (about one packet per response
  time) near it. Underuse: hold (the queue drains). The estimate never grows past 1.5 × the
  acknowledged throughput + 10 kbps: sending less than the estimate cannot prove the link
  carries more.
- **Loss** (:class:`_Loss`), over intervals of at least :data:`LOSS_PACKETS` 20 packets or
  :data:`LOSS_PERIOD` 1 s (fewer would make one lost packet look like 20 %): above 10 % the
  rate is cut at once to rate × (1 − 0.5 × loss), but no lower than :data:`BETA` × the rate
  delivered during the interval (over the last 500 ms when the interval is too short to
  tell and lost more than half) — under heavy loss what arrives is what the path carries (a
  full drop-tail queue, a tbf, shows no delay *trend* to react to), and the burst of loss of
  a link that just shrank must not cut to the floor; between 2 and 10 % it holds;
  below 2 % it may increase. Probe packets are left out (they are meant to fill queues).
  A decrease while the last interval lost more than 10 % also holds probes off for 8 s
  (:meth:`.probe.Prober.hold`): the path is full, and behind a token bucket, whose queue is a
  few packets deep, a probe would cost the media a burst of loss.
- **Probing** (:mod:`.probe`). Since the estimate cannot grow much past what is sent, the
  allocator asks :meth:`Link.probe` whether a higher rate fits; the link sends two clusters
  back to back, each at least 40 ms and 5 packets, at 1.15 × that rate (a measurement comes
  out a little low) but never above 2 × the estimate: media plus the padding
  :meth:`Link.padding` asks for. A cluster measures min(send rate, receive rate); the probe's
  result is the smaller of the two (a token bucket lets the first through on its saved
  tokens) and, above the estimate, is adopted at once, so a recovered link gets its top layer
  back in seconds instead of at +8 %/s. A cluster of which less than 80 % arrived fails the
  probe whatever the survivors' rate (two back to back read as any rate at all; one alone
  as a capacity of 0). A cluster sent as planned but delivered slower is a capacity
  measurement: the rate goes down to it, and for :data:`MEASURED_FOR` 2 s it is the
  floor a decrease starts from (the probe's own queue triggers one, and 0.85 × a sender's
  far lower media rate would be a needless fall). A probe that fails — or that succeeded and
  was followed by a decrease within 2 s — delays the next, 1 s → 2 s → 4 s → 8 s at most, so
  a capped link is probed rarely and a recovered one is found within about 8 s; a probe that
  fell short of its target (the pacer sent less) but found more than the estimate without
  saturating the path is a success.

The estimate is that one rate, clamped to [:data:`MIN_RATE`, :data:`MAX_RATE`], starting at
:data:`INITIAL`. Everything is pure (no I/O, no clock): times come in as ``now`` (seconds,
the caller's clock); arrival times are the receiver's clock, only ever compared with each
other. Feedback that repeats or reorders earlier reports counts once (per-packet state in
the history); malformed feedback is counted (``stats()["malformed"]``) and ignored.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

from meet.relay.delay import Detector, Groups, Trendline
from meet.relay.probe import Cluster, Prober
from meet.relay.twcc import REFERENCE_UNIT, Feedback, build_feedback, parse_feedback, rtcp_packet

log = logging.getLogger("meet.relay.bwe")

__all__ = ["INITIAL", "MAX_RATE", "MIN_RATE", "Aimd", "Link", "Throughput", "build_feedback", "parse_feedback", "rtcp_packet"]

MIN_RATE = 30_000.0  # bps: below this not even audio fits; the estimate never goes lower
MAX_RATE = 20_000_000.0  # bps: more than any room sends one subscriber
INITIAL = 1_000_000.0  # bps before feedback: a middle layer, then probes find the rest

HISTORY = 4096  # packets remembered for feedback (≈ 4 s at 8 Mbps of 1 kB packets)
BETA = 0.85  # decrease to this × acknowledged throughput
DECREASE_INTERVAL = 0.200  # s between two decreases
MEASURED_FOR = 2.0  # s a probe's capacity measurement stays the floor of a decrease
THROUGHPUT_WINDOW = 0.5  # s of arrivals the acknowledged throughput is measured over
RECENT_WINDOW = 0.25  # s of arrivals it is measured over under heavy loss (Link._acknowledged)
LOSS_PACKETS, LOSS_PERIOD = 20, 1.0  # a loss interval: this many packets, or this long
LOSS_HIGH, LOSS_LOW = 0.10, 0.02  # loss fractions: cut above, grow below
BURST_LOSS = 0.5  # above this, a loss interval is a queue overflowing (see Link._on_loss)


class _History:
    """A ring of the last :data:`HISTORY` packets sent, by unwrapped transport sequence number."""

    def __init__(self) -> None:
        self.seq = [-1] * HISTORY
        self.size = [0] * HISTORY
        self.time = [0.0] * HISTORY
        self.cluster: list[Cluster | None] = [None] * HISTORY
        self.state = [0] * HISTORY  # 0 unreported, 1 reported lost, 2 received
        self.last = -1  # the last sequence number handed out, unwrapped

    def add(self, size: int, now: float, cluster: Cluster | None) -> int:
        self.last += 1
        i = self.last % HISTORY
        self.seq[i], self.size[i], self.time[i] = self.last, size, now
        self.cluster[i], self.state[i] = cluster, 0
        return self.last

    def unwrap(self, seq16: int) -> int:
        """The unwrapped number of a 16-bit one at most 2^16 behind the last sent."""
        return self.last - ((self.last - seq16) & 0xFFFF)

    def slot(self, seq: int) -> int | None:
        """Where ``seq`` is kept (None: never sent, or too old)."""
        i = seq % HISTORY
        return i if seq >= 0 and self.seq[i] == seq else None


class Throughput:
    """Bytes the receiver acknowledged per second, over the last :data:`THROUGHPUT_WINDOW`."""

    def __init__(self) -> None:
        self.packets: deque[tuple[float, int]] = deque()
        self.bytes = 0
        self.first = math.inf  # the earliest arrival ever
        self.latest = -math.inf  # the latest arrival

    def add(self, packets: list[tuple[float, float, int]]) -> None:
        """(send, arrival, size) of newly received packets, in order of arrival."""
        horizon = self.latest - THROUGHPUT_WINDOW
        fresh = [(arrival, size) for _send, arrival, size in packets if arrival > horizon]
        if not fresh:
            return  # none, or all reported late and already out of the window
        self.first, self.latest = min(self.first, fresh[0][0]), max(self.latest, fresh[-1][0])
        self.packets.extend(fresh)
        self.bytes += sum(size for _, size in fresh)

    def rate(self) -> float | None:
        """bps, or None until 100 ms of arrivals are known."""
        packets, horizon = self.packets, self.latest - THROUGHPUT_WINDOW
        while packets and packets[0][0] <= horizon:
            self.bytes -= packets.popleft()[1]
        span = min(THROUGHPUT_WINDOW, self.latest - self.first)
        return self.bytes * 8 / span if span >= 0.1 else None

    def recent(self) -> float | None:
        """bps over the last :data:`RECENT_WINDOW` only (None: not that much known yet)."""
        horizon = self.latest - RECENT_WINDOW
        if self.first > horizon:
            return None
        total = 0
        for arrival, size in reversed(self.packets):
            if arrival <= horizon:
                break
            total += size
        return total * 8 / RECENT_WINDOW


class Aimd:
    """The delay-based rate: additive/multiplicative increase, multiplicative decrease."""

    def __init__(self, initial: float) -> None:
        self.rate = initial
        self.state = "hold"
        self.capacity: float | None = None  # kbps: the link capacity seen at decreases (average)
        self.variance = 0.4  # of that average, normalized by it
        self.last_update: float | None = None
        self.last_decrease = -math.inf
        self.measured: tuple[float, float] | None = None  # (bps, when) a probe saturated the path

    def update(
        self, signal: str, acked: float | None, now: float, rtt: float | None, may_increase: bool
    ) -> None:
        """Apply one feedback's detector ``signal`` (acked: the receive rate in bps, if known)."""
        elapsed = 0.0 if self.last_update is None else min(max(now - self.last_update, 0.0), 1.0)
        self.last_update = now
        self.state = _NEXT_STATE.get((self.state, signal), self.state)
        if self.state == "increase" and may_increase:
            self.rate = self._increased(acked, elapsed, rtt)
        elif self.state == "decrease":
            self.rate = self._decreased(acked, now)
            self.state = "hold"  # one decrease per overuse; the detector says when to go on

    def adopt(self, rate: float) -> None:
        """A probe measured ``rate``: start from there, far from any old capacity."""
        self.rate = max(self.rate, rate)
        self.capacity = None

    def cut(self, rate: float, now: float) -> None:
        """Heavy loss: down to ``rate`` at once (counts as a decrease)."""
        self.rate = min(self.rate, rate)
        self.last_decrease = now

    def saturated(self, rate: float, now: float) -> None:
        """A probe found the path delivers no more than ``rate``: a capacity measurement."""
        self.rate = min(self.rate, rate)
        self.measured = (rate, now)

    def _increased(self, acked: float | None, elapsed: float, rtt: float | None) -> float:
        if (
            acked is not None
            and self.capacity is not None
            and acked / 1000 > self.capacity + 3 * self._deviation()
        ):
            self.capacity = None  # the link grew past what it used to carry: explore again
        if self.capacity is None:
            rate = self.rate * math.pow(1.08, elapsed)
        else:
            rate = self.rate + _near_capacity_increase(self.rate, rtt) * elapsed
        if acked is not None:  # sending less than the estimate proves nothing beyond it
            rate = max(self.rate, min(rate, 1.5 * acked + 10_000))
        return rate

    def _decreased(self, acked: float | None, now: float) -> float:
        if acked is None or now - self.last_decrease < DECREASE_INTERVAL:
            return self.rate
        self.last_decrease = now
        if self.measured is not None and now - self.measured[1] < MEASURED_FOR:
            # Most likely the probe's own queue: the measured capacity is a better base than
            # the acknowledged throughput of a sender that sends far less than the estimate.
            acked = max(acked, self.measured[0])
        sample = acked / 1000
        if self.capacity is not None and sample < self.capacity - 3 * self._deviation():
            self.capacity = None  # the link shrank: forget what it used to carry
        if self.capacity is None:
            self.capacity = sample
        else:
            self.capacity = 0.95 * self.capacity + 0.05 * sample
        self.variance = 0.95 * self.variance + 0.05 * (self.capacity - sample) ** 2 / max(self.capacity, 1.0)
        self.variance = min(max(self.variance, 0.4), 2.5)
        return min(self.rate, BETA * acked)

    def _deviation(self) -> float:
        """kbps: one standard deviation of the capacity average."""
        return math.sqrt(self.variance * (self.capacity or 0.0))


# (state, detector signal) → next state; overuse always decreases, underuse holds (queues drain)
_NEXT_STATE = {
    **{(state, "overuse"): "decrease" for state in ("hold", "increase", "decrease")},
    **{(state, "underuse"): "hold" for state in ("hold", "increase", "decrease")},
    ("hold", "normal"): "increase",
    ("decrease", "normal"): "hold",
}


def _near_capacity_increase(rate: float, rtt: float | None) -> float:
    """bps per second near the link capacity: about one packet per response time."""
    bits_per_frame = rate / 30
    packets_per_frame = max(1, math.ceil(bits_per_frame / (1200 * 8)))
    response = (rtt if rtt is not None else 0.1) + 0.1
    return max(4000.0, bits_per_frame / packets_per_frame / response)


class _Loss:
    """Loss and delivery over intervals of :data:`LOSS_PACKETS` packets or :data:`LOSS_PERIOD`."""

    def __init__(self) -> None:
        self.lost = self.total = self.bytes = 0
        self.started: float | None = None  # the current interval's start
        self.first, self.last = math.inf, -math.inf  # arrivals in the interval
        self.loss = 0.0  # the last interval's loss fraction

    def count(self, lost: int, total: int, now: float) -> None:
        if self.started is None:
            self.started = now
        self.lost += lost
        self.total += total

    def delivered(self, packets: list[tuple[float, float, int]]) -> None:
        """(send, arrival, size) of newly received packets, in order of arrival."""
        if packets:
            self.bytes += sum(size for _send, _arrival, size in packets)
            self.first, self.last = min(self.first, packets[0][1]), max(self.last, packets[-1][1])

    def interval(self, now: float) -> tuple[float, float | None] | None:
        """(loss fraction, bps delivered meanwhile) when the interval closes now, else None."""
        if self.started is None or (self.total < LOSS_PACKETS and now - self.started < LOSS_PERIOD):
            return None
        self.loss = self.lost / self.total if self.total else 0.0
        span = self.last - self.first
        if self.lost:
            log.debug(
                "loss interval %.3f-%.3f: lost %d of %d, %d bytes arrived over %.3f s",
                *(self.started, now, self.lost, self.total, self.bytes, span),
            )
        rate = self.bytes * 8 / span if span >= 0.1 else None
        self.lost = self.total = self.bytes = 0
        self.started, self.first, self.last = None, math.inf, -math.inf
        return self.loss, rate


class Link:
    """One subscriber connection's send-side congestion control (transport-wide cc).

    The caller numbers each packet it sends with :meth:`sent`, hands each feedback's FCI to
    :meth:`on_feedback`, reads :attr:`estimate`, and carries out probes: :meth:`probe` when a
    higher rate would be worth having, :meth:`padding` every ~10 ms (send that many bytes of
    padding now, each packet through :meth:`sent` like any other).
    """

    def __init__(
        self,
        initial: float = INITIAL,
        minimum: float = MIN_RATE,
        maximum: float = MAX_RATE,
        name: str = "",
    ) -> None:
        self.minimum, self.maximum, self.name = minimum, maximum, name
        self._history = _History()
        self._throughput = Throughput()
        self._groups = Groups()
        self._trend = Trendline()
        self._detector = Detector()
        self._aimd = Aimd(min(max(initial, minimum), maximum))
        self._loss = _Loss()
        self._prober = Prober()
        self._reference: tuple[int, int] | None = None  # last reference time: as sent, unwrapped
        self._reported = -1  # the highest sequence number feedback reported
        self.rtt: float | None = None  # s: feedback delay of the newest packet (an RTT bound)
        self.feedbacks = self.malformed = 0

    @property
    def estimate(self) -> float:
        """bps the subscriber can receive now (:data:`INITIAL` until feedback says otherwise)."""
        return min(max(self._aimd.rate, self.minimum), self.maximum)

    @property
    def probing(self) -> bool:
        """Whether a probe is in progress (its padding is due every few milliseconds)."""
        return self._prober.target is not None

    def sent(self, size: int, now: float) -> int:
        """Record one packet of ``size`` bytes sent now; its 16-bit transport sequence number."""
        cluster = self._prober.on_sent(size, now)
        seq = self._history.add(size, now, cluster)
        if cluster is not None:
            cluster.last_seq = seq
        return seq & 0xFFFF

    def on_feedback(self, fci: bytes, now: float) -> bool:
        """Apply one TWCC feedback (its FCI); False, and counted, when it is malformed."""
        try:
            feedback = parse_feedback(fci)
        except ValueError:
            self.malformed += 1
            return False
        self.feedbacks += 1
        before = self.estimate
        received = self._account(feedback, now)
        signal = self._detect(received)
        if received:
            sample = now - max(send for send, _arrival, _size in received)
            self.rtt = sample if self.rtt is None else 0.8 * self.rtt + 0.2 * sample
        self._settle(now)  # first: a capacity a probe measured is the floor of a decrease below
        rate = self._aimd.rate
        self._on_loss(now)
        self._aimd.update(signal, self._acknowledged(), now, self.rtt, self._loss.loss < LOSS_LOW)
        self._aimd.rate = min(max(self._aimd.rate, self.minimum), self.maximum)  # room to move at once
        if self._aimd.rate < rate:
            self._prober.on_decrease(now)
            if self._loss.loss > LOSS_HIGH:
                self._prober.hold(now)
        self._trace(before, now)
        return True

    def _trace(self, before: float, now: float) -> None:
        """Log (debug) a decrease, or a change of more than 10 %: what the estimate went by."""
        after = self.estimate
        if (after < before or abs(after - before) > 0.1 * before) and log.isEnabledFor(logging.DEBUG):
            acked = self._throughput.rate()
            log.debug(
                "%s %.3f: estimate %.0f -> %.0f kbit/s (acked %s, loss %.3f, signal %s, rtt %s ms)",
                self.name,
                now,
                before / 1000,
                after / 1000,
                None if acked is None else round(acked / 1000),
                self._loss.loss,
                self._detector.signal,
                None if self.rtt is None else round(self.rtt * 1000),
            )

    def _acknowledged(self) -> float | None:
        """The receive rate a decrease starts from: over 500 ms, or the last 250 ms if lower
        while most of what is sent is lost. A link that just narrowed (a token bucket) delivers
        its new rate at once; the 500 ms still count what came before, and 0.85 × that was
        the middle layer, one needless switch (and a keyframe's wait) on the way down."""
        acked = self._throughput.rate()
        if acked is None or self._loss.loss <= BURST_LOSS:
            return acked
        recent = self._throughput.recent()
        return acked if recent is None else min(acked, recent)

    def _on_loss(self, now: float) -> None:
        """Heavy loss over an interval: cut at once, below what the path delivered meanwhile."""
        interval = self._loss.interval(now)
        if interval is None or interval[0] <= LOSS_HIGH:
            return
        if now - self._aimd.last_decrease < 0.3 + (self.rtt or 0.0):
            return  # the last decrease has not had time to show yet
        loss, delivered = interval
        # A drop-tail queue that overflows shows no delay trend: what arrived is what it carries,
        # so the cut goes no lower than that (a burst of loss while a link shrinks, 85 % at
        # the first feedback behind a token bucket, would otherwise cut to the floor and pause
        # every video for seconds). An interval of 20 packets that lost 19 spans too little
        # time to measure a rate: when most of a burst was lost (a full queue, not random loss,
        # which cuts as rate × (1 − 0.5 × loss) alone), the last 500 ms stand in for it.
        if delivered is None and loss > BURST_LOSS:
            delivered = self._throughput.rate()
        log.debug("%s %.3f: loss %.3f, delivered %s", self.name, now, loss, delivered)
        cut = self.estimate * (1 - 0.5 * loss)
        self._aimd.cut(max(cut, BETA * delivered) if delivered else cut, now)

    def probe(self, target_bps: float, now: float) -> None:
        """Find out whether ``target_bps`` fits (ignored while a probe runs or backs off)."""
        if self._prober.probe(target_bps, self.estimate, self.maximum, now):
            log.debug("%s %.3f: probe for %s", self.name, now, self._prober.target)

    def padding(self, now: float) -> int:
        """Bytes of padding to send now for the probe in progress (0: none)."""
        self._settle(now)
        return self._prober.padding(now)

    def stats(self) -> dict[str, Any]:
        """The estimate and what it is made of (plain JSON values; rates in bps)."""
        acked = self._throughput.rate()
        return {
            "estimate": round(self.estimate),
            "delay_based": round(self._aimd.rate),
            "acknowledged": None if acked is None else round(acked),
            "loss": round(self._loss.loss, 4),
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 1),
            "signal": self._detector.signal,
            "threshold": round(self._detector.threshold, 2),
            "feedbacks": self.feedbacks,
            "malformed": self.malformed,
            **self._prober.stats(),
        }

    def _account(self, feedback: Feedback, now: float) -> list[tuple[float, float, int]]:
        """Mark the reported packets; (send, arrival, size) of those newly received, by arrival."""
        history, base = self._history, self._history.unwrap(feedback.base_seq)
        offset = self._arrival_offset(feedback.reference)
        state, clusters, slot = history.state, history.cluster, history.slot
        received: list[tuple[float, float, int]] = []
        lost = total = 0
        reported = self._reported
        for seq, arrival in enumerate(feedback.arrivals, base):
            i = slot(seq)
            if i is None or state[i] == 2:
                continue  # too old, never sent, or a duplicate report
            cluster, was = clusters[i], state[i]
            reported = seq  # the sequence numbers of one feedback only grow
            if arrival is None:
                state[i] = 1
                if cluster is None and was == 0:
                    lost, total = lost + 1, total + 1
                continue
            state[i] = 2
            if cluster is None:  # probe packets are left out of the loss
                lost, total = (lost - 1, total) if was == 1 else (lost, total + 1)
            else:
                cluster.on_arrival(arrival + offset, history.size[i])
            received.append((history.time[i], arrival + offset, history.size[i]))
        self._reported = max(self._reported, reported)
        self._loss.count(lost, total, now)
        received.sort(key=lambda packet: packet[1])
        self._throughput.add(received)
        self._loss.delivered(received)
        return received

    def _arrival_offset(self, reference: int) -> float:
        """Seconds to add to this feedback's arrival times: its 24-bit reference time unwrapped."""
        if self._reference is None:
            self._reference = (reference, reference)
        else:
            raw, unwrapped = self._reference
            delta = ((reference - raw + 0x800000) & 0xFFFFFF) - 0x800000
            self._reference = (reference, unwrapped + delta)
        return (self._reference[1] - reference) * REFERENCE_UNIT

    def _detect(self, received: list[tuple[float, float, int]]) -> str:
        """The detector's signal after these packets (overuse if any group signalled it)."""
        overuse = False
        for send, arrival, _size in received:
            deltas = self._groups.add(send, arrival)
            if deltas is None or deltas[1] - deltas[0] > 3.0:
                continue  # no group closed, or a gap that says nothing about queues
            trend = self._trend.update((deltas[1] - deltas[0]) * 1000, arrival)
            if trend is not None:
                signal = self._detector.update(trend, self._trend.groups, deltas[0], arrival)
                overuse = overuse or signal == "overuse"
        return "overuse" if overuse else self._detector.signal

    def _settle(self, now: float) -> None:
        """Apply the outcome of a probe that feedback now covers (or that timed out)."""
        capacities, outcome = self._prober.settle(self._reported, now)
        for measured in capacities:  # a decrease the probe's own queue triggers starts from here
            self._aimd.measured = (measured, now)
        if outcome is None:
            return
        result, capacity = outcome
        log.debug("%s %.3f: probe result %.0f, capacity %s", self.name, now, result, capacity)
        if result > self.estimate:
            self._aimd.adopt(min(result, self.maximum))
        elif capacity is not None:
            self._aimd.saturated(capacity, now)  # sent as planned, the path delivered less
