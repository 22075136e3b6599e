"""The relay's bandwidth estimate (meet/relay/bwe.py) against a simulated bottleneck, and TWCC.

The simulation is deterministic, on a fake clock stepped by 1 ms: a sender paces one of three
video layers (chosen from the estimate as the relay's allocator does, probing for the next one
every 250 ms) plus the padding the link asks for; every packet crosses a FIFO bottleneck of
capacity C with a tbf-like queue limit (50 ms of C: arriving packets that would wait longer are
dropped) and 20 ms of propagation each way; the receiver reports arrivals every 50 ms in real
TWCC feedback built by ``build_feedback``, on its own clock (1000 s ahead of the sender's).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from meet.relay import bwe, probe
from meet.relay.allocate import UP_MARGIN
from meet.relay.bandwidth import Bandwidth
from meet.relay.bwe import Link
from meet.relay.forward import Counters, OutStream, Publication
from meet.relay.twcc import build_feedback, parse_feedback, rtcp_packet

LAYERS = (150_000.0, 500_000.0, 1_500_000.0)
PACKET = 1000  # bytes of a media packet
PADDING = 600  # bytes of a padding packet at most
DELAY = 0.020  # s one way
RECEIVER_CLOCK = 1000.0  # the receiver's clock runs this far ahead of the sender's


@dataclass
class Bottleneck:
    """A link of ``capacity`` bps behind a token bucket of ``burst`` bytes (0: a plain FIFO),
    that drops what would wait longer than ``limit`` s, as ``tc qdisc … tbf`` does."""

    capacity: float
    limit: float = 0.050
    burst: float = 0.0
    tokens: float = 0.0
    refilled: float = 0.0  # when the tokens were counted
    free_at: float = 0.0  # when the link finishes what it holds
    sent: int = 0
    dropped: int = 0

    def enter(self, size: int, now: float) -> float | None:
        """When the packet arrives at the receiver (None: dropped)."""
        self.sent += 1
        start = max(now, self.free_at)
        tokens = min(self.burst, self.tokens + (start - self.refilled) * self.capacity / 8)
        wait = max(0.0, (size - tokens) * 8 / self.capacity)
        if start + wait - now > self.limit:
            self.dropped += 1
            return None
        self.tokens, self.refilled = tokens + wait * self.capacity / 8 - size, start + wait
        self.free_at = start + wait
        return self.free_at + DELAY


@dataclass
class Simulation:
    link: Link
    bottleneck: Bottleneck
    probing: bool = True
    frames: bool = False  # send media as 30 frames/s bursts (as forwarded), not paced evenly
    now: float = 0.0
    layer: int = 0
    credit: float = 0.0
    arrivals: dict[int, float] = field(default_factory=dict)  # seq → receiver time
    in_flight: list[tuple[float, int]] = field(default_factory=list)  # (arrival, seq), sorted
    feedback: deque[tuple[float, bytes]] = field(default_factory=deque)  # (delivery, fci)
    next_base: int | None = None
    count: int = 0
    probes: list[tuple[float, float, float]] = field(default_factory=list)  # (time, target, estimate)

    def send(self, size: int) -> None:
        seq = self.link.sent(size, self.now)
        arrival = self.bottleneck.enter(size, self.now)
        if arrival is not None:
            self.in_flight.append((arrival, seq))

    def choose_layer(self) -> None:
        """The allocator's rule: a higher layer needs 1.2 × its rate, keeping one needs its rate."""
        estimate = self.link.estimate
        fits = [i for i, rate in enumerate(LAYERS) if rate * (1.2 if i > self.layer else 1.0) <= estimate]
        self.layer = fits[-1] if fits else 0

    def tick(self) -> None:
        """Every 10 ms: layer choice and probes (every 250 ms), padding."""
        step = round(self.now * 1000)
        if step % 250 == 0:
            self.choose_layer()
            if self.probing and self.layer + 1 < len(LAYERS):
                before = self.link.stats()["probes"]
                self.link.probe(LAYERS[self.layer + 1] * 1.2, self.now)
                if self.link.stats()["probes"] > before:
                    self.probes.append((self.now, self.link.stats()["probe_target"], self.link.estimate))
        wanted = self.link.padding(self.now)
        while wanted > 0:
            size = min(PADDING, max(wanted, 100))
            self.send(size)
            wanted -= size

    def receive(self) -> None:
        """The receiver's side: arrivals so far, and a feedback every 50 ms."""
        self.in_flight.sort()
        while self.in_flight and self.in_flight[0][0] <= self.now:
            arrival, seq = self.in_flight.pop(0)
            self.arrivals[seq] = arrival + RECEIVER_CLOCK
        if round(self.now * 1000) % 50 or not self.arrivals:
            return
        highest = max(self.arrivals, key=lambda s: (s - (self.next_base or 0)) & 0xFFFF)
        base = min(self.arrivals) if self.next_base is None else self.next_base
        span = ((highest - base) & 0xFFFF) + 1
        report = [self.arrivals.pop((base + i) & 0xFFFF, None) for i in range(span)]
        self.feedback.append((self.now + DELAY, build_feedback(base, report, self.count)))
        self.count += 1
        self.next_base = (highest + 1) & 0xFFFF

    def run(self, seconds: float, every: Callable[[Simulation], None] | None = None) -> None:
        """Advance the clock by ``seconds``, 1 ms at a time; ``every`` is called each 100 ms."""
        for _ in range(round(seconds * 1000)):
            self.now = round(self.now + 0.001, 6)
            self.credit += LAYERS[self.layer] / 8 * 0.001
            while self.credit >= PACKET and (not self.frames or round(self.now * 1000) % 33 == 0):
                self.credit -= PACKET
                self.send(PACKET)
            if round(self.now * 1000) % 10 == 0:
                self.tick()
            self.receive()
            while self.feedback and self.feedback[0][0] <= self.now:
                self.link.on_feedback(self.feedback.popleft()[1], self.now)
            if every is not None and round(self.now * 1000) % 100 == 0:
                every(self)


def estimates(sim: Simulation, seconds: float) -> list[tuple[float, float]]:
    """(time, estimate) every 100 ms while running ``seconds``."""
    seen: list[tuple[float, float]] = []
    sim.run(seconds, lambda s: seen.append((s.now, s.link.estimate)))
    return seen


def warmed_up(probing: bool = True) -> Simulation:
    sim = Simulation(Link(), Bottleneck(5_000_000.0), probing=probing)
    sim.run(10.0)
    return sim


# --- the estimate against a bottleneck -----------------------------------------------------------


def test_probes_reach_the_top_layer_on_a_fast_link() -> None:
    sim = warmed_up()
    assert sim.link.estimate >= 1.6e6, sim.link.stats()
    assert sim.layer == 2
    assert sim.bottleneck.dropped == 0


def test_a_link_that_narrowed_under_heavy_loss_falls_under_its_new_rate_at_once() -> None:
    """1.5 Mbit/s into a 400 kbit/s bottleneck: the first overuse amid heavy loss decreases from
    what arrived in the last 250 ms, not the 500 ms that still hold the old rate (0.85 × that
    left the middle layer chosen for another second: a needless switch on the way down)."""
    sim = warmed_up()
    sim.bottleneck.capacity = 400_000.0
    drop = estimates(sim, 1.0)
    below = [t for t, estimate in drop if estimate <= 1.05 * bwe.BETA * 400_000.0]
    assert below and below[0] - 10.0 <= 0.6, drop  # 0.85 × what the link now delivers
    assert min(estimate for _, estimate in drop) >= 0.6 * 400_000.0, drop


def test_capacity_drop_then_steady_under_the_cap_then_recovery() -> None:
    sim = warmed_up()
    capacity = 400_000.0
    sim.bottleneck.capacity = capacity
    drop = estimates(sim, 3.0)
    below = [t for t, estimate in drop if estimate < capacity]
    assert below and below[0] - 10.0 <= 2.5, drop

    capped = estimates(sim, 17.0)
    low, high = min(e for _, e in capped), max(e for _, e in capped)
    assert 0.6 * capacity <= low and high <= 1.1 * capacity, (low, high, sim.link.stats())
    assert sim.layer == 0  # 500 kbps does not fit 400 kbps

    sim.bottleneck.capacity = 5_000_000.0
    lifted = estimates(sim, 10.0)
    reached = [t for t, estimate in lifted if estimate >= 1.6e6]
    assert reached, (lifted[-1], sim.link.stats())
    assert reached[0] - 30.0 <= 10.0


def test_a_token_bucket_and_bursty_frames_keep_loss_low_and_the_low_layer() -> None:
    """Closer to the browser test: tbf's 2000-byte burst (it fooled single clusters), bursty frames."""
    sim = Simulation(Link(), Bottleneck(5_000_000.0, burst=2000.0), frames=True)
    sim.run(10.0)
    capacity = 400_000.0
    sim.bottleneck.capacity = capacity
    sim.run(3.0)
    assert sim.layer == 0
    sent, dropped = sim.bottleneck.sent, sim.bottleneck.dropped
    seen: list[tuple[float, int, float]] = []

    def record(s: Simulation) -> None:
        seen.append((s.now, s.layer, s.link.estimate))

    probes = len(sim.probes)
    sim.run(30.0, record)
    assert (sim.bottleneck.dropped - dropped) / (sim.bottleneck.sent - sent) < 0.02
    assert all(layer == 0 for _, layer, _ in seen), seen
    # The loss that cut the estimate holds probes off (bwe.Prober.hold): until the first probe
    # measures the path again, the estimate may stay where the cut left it, above the capacity
    # but short of what the next layer needs; from that probe on, it is the capacity.
    assert all(0.6 * capacity <= estimate < UP_MARGIN * LAYERS[1] for _, _, estimate in seen), seen
    measured = sim.probes[probes][0] + 0.5
    assert measured < 13.0 + probe.MAX_BACKOFF, sim.probes
    assert all(0.6 * capacity <= estimate <= 1.1 * capacity for t, _, estimate in seen if t >= measured), seen
    sim.bottleneck.capacity = 5_000_000.0
    lifted = estimates(sim, 10.0)
    assert any(estimate >= 1.6e6 for _, estimate in lifted), sim.link.stats()


def test_without_probes_the_estimate_stays_near_what_is_sent() -> None:
    """The control for the recovery above: the estimate cannot climb past 1.5 × the media."""
    sim = warmed_up(probing=False)
    assert sim.link.estimate < 1.6e6
    assert sim.layer < 2


def test_failed_probes_back_off_and_stay_within_twice_the_estimate() -> None:
    sim = warmed_up()
    sim.bottleneck.capacity = 400_000.0
    start = len(sim.probes)
    sim.run(30.0)
    capped = [t for t, _target, _estimate in sim.probes[start:] if t > 13.0]
    gaps = [b - a for a, b in itertools.pairwise(capped)]
    assert len(capped) >= 3, sim.probes
    assert all(later >= earlier - 0.3 for earlier, later in itertools.pairwise(gaps)), gaps
    assert gaps[-1] >= probe.MAX_BACKOFF - 0.3, gaps
    assert gaps[-1] <= probe.MAX_BACKOFF + 1.0, gaps
    for _t, target, estimate in sim.probes:
        assert target <= probe.MAX_FACTOR * estimate + 1


def test_delay_detects_a_deep_queue_before_any_loss() -> None:
    """A bufferbloated link (5 s of queue, no drops): only the delay trend can tell."""
    sim = warmed_up()
    sim.bottleneck.limit = 5.0
    sim.bottleneck.capacity = 1_000_000.0
    drop = estimates(sim, 3.0)
    below = [t for t, estimate in drop if estimate < 1_000_000.0]
    assert below and below[0] - 10.0 <= 1.5, drop
    assert sim.bottleneck.dropped == 0
    sim.run(5.0)
    assert sim.bottleneck.free_at - sim.now < 0.2  # the queue drained: we send less than C


def test_a_probe_aims_at_most_twice_the_estimate() -> None:
    link = Link(initial=300_000.0)
    link.probe(5_000_000.0, 0.0)
    assert link.stats()["probe_target"] == 600_000
    assert link.padding(0.0) == 600_000 // 8 // 100  # 10 ms of it at once
    link.probe(100_000.0, 5.0)  # already allowed: nothing to learn, and one probe at a time
    assert link.stats()["probes"] == 1
    fresh = Link()
    fresh.probe(math.nan, 0.0)  # whatever an allocator computes, no probe comes of nonsense
    assert fresh.stats()["probes"] == 0 and fresh.padding(0.0) == 0


def test_loss_cuts_the_estimate_when_delay_says_nothing() -> None:
    """Random loss of 30 % with no queue at all: the loss-based cap takes the estimate down."""
    link = Link(initial=2_000_000.0)
    rng = random.Random(7)
    now, seq0 = 0.0, None
    for _ in range(40):  # 2 s of 100 ms feedback intervals, 40 packets each
        arrivals: list[float | None] = []
        for i in range(40):
            seq = link.sent(1000, now + i * 0.0025)
            seq0 = seq if seq0 is None else seq0
            arrivals.append(None if rng.random() < 0.3 else RECEIVER_CLOCK + now + i * 0.0025 + DELAY)
        now += 0.1
        link.on_feedback(build_feedback((seq - 39) & 0xFFFF, arrivals, 0), now)
    assert link.estimate < 1_000_000.0, link.stats()
    assert link.stats()["loss"] > 0.2


def test_a_loss_burst_too_short_to_measure_cuts_no_lower_than_what_arrived_lately() -> None:
    """Behind a token bucket, 19 of 20 packets lost arrive within a few ms: the interval measures
    no delivered rate, and rate × (1 − 0.5 × loss) alone halved the estimate (the low layer
    paused for 8 s). The receive rate of the last 500 ms bounds the cut instead."""
    link = Link(initial=300_000.0)
    now = 0.0
    for tick in range(10):  # 1 s of 300 kbit/s, all received, a feedback every 100 ms
        sent = [(link.sent(1000, now + i * 0.025), now + i * 0.025) for i in range(4)]
        now += 0.1
        report(link, sent, [RECEIVER_CLOCK + t + DELAY for _, t in sent], now + DELAY)
        assert tick < 5 or link.stats()["acknowledged"] == pytest.approx(320_000, rel=0.1)
    before = link.estimate
    sent = [(link.sent(1000, now + i * 0.0025), now + i * 0.0025) for i in range(20)]
    report(link, sent, [RECEIVER_CLOCK + sent[0][1] + DELAY] + [None] * 19, now + 0.1)
    assert link.stats()["loss"] == 0.95
    assert bwe.BETA * 300_000 <= link.estimate < before, link.stats()


def probe_once(link: Link, start: float, most: int = 1 << 20) -> list[tuple[int, float]]:
    """Carry out the probe ``link`` started at ``start``: every 10 ms, the padding it asks for
    (at ``most`` bytes), in 150-byte packets, for 200 ms. (seq, send time) of each packet sent."""
    sent: list[tuple[int, float]] = []
    for tick in range(20):
        now = start + tick * 0.010
        wanted = min(link.padding(now), most)
        while wanted > 0:
            sent.append((link.sent(150, now), now))
            wanted -= 150
    return sent


def report(link: Link, sent: list[tuple[int, float]], arrivals: list[float | None], now: float) -> None:
    """One feedback about ``sent`` (their arrivals on the receiver's clock, None: lost)."""
    link.on_feedback(build_feedback(sent[0][0], arrivals, 0), now)


def test_a_probe_the_path_mostly_dropped_fails_and_measures_nothing() -> None:
    """Behind a token bucket, a probe cluster can lose nearly all its packets. One that arrived
    alone measured a receive rate of 0 (a capacity of 0: the estimate fell to the floor and
    every video paused); two that arrived back to back measured a huge one (a success)."""
    for survivors in (1, 2):
        link = Link(initial=264_000.0)
        link.probe(2_000_000.0, 0.0)
        sent = probe_once(link, 0.0)
        assert len(sent) >= 2 * probe.PROBE_PACKETS
        arrivals: list[float | None] = [None] * len(sent)
        for i in range(survivors):  # the first ones, back to back (on saved tokens)
            arrivals[i] = RECEIVER_CLOCK + DELAY + i * 0.0001
        report(link, sent, arrivals, 0.3)
        assert link.estimate == 264_000.0, (survivors, link.stats())
        assert link.stats()["probes_failed"] == 1 and not link.probing


def test_no_probe_for_a_while_after_heavy_loss_cut_the_estimate() -> None:
    """A link that just lost half of what it carried is full: a probe soon after would only
    add to the loss (a token bucket's queue is 50 ms), so the prober waits its longest backoff."""
    link = Link(initial=1_000_000.0)
    sent = [(link.sent(1000, i * 0.0025), i * 0.0025) for i in range(40)]
    arrivals = [None if i % 2 else RECEIVER_CLOCK + t + DELAY for i, (_, t) in enumerate(sent)]
    report(link, sent, arrivals, 0.15)
    assert link.estimate < 1_000_000.0 and link.stats()["loss"] == 0.5
    link.probe(5_000_000.0, 0.2)
    link.probe(5_000_000.0, 0.15 + probe.MAX_BACKOFF - 0.1)
    assert link.stats()["probes"] == 0
    link.probe(5_000_000.0, 0.15 + probe.MAX_BACKOFF + 0.01)
    assert link.stats()["probes"] == 1


def test_a_probe_short_of_its_target_that_found_more_does_not_back_off() -> None:
    """The pacer may send less than a probe planned (a busy event loop): when all of it arrived
    at the rate sent, above the estimate, the path carries that much and the next probe may
    go on from there at once, instead of waiting as after a failure."""
    link = Link(initial=300_000.0)
    link.probe(5_000_000.0, 0.0)
    sent = probe_once(link, 0.0, most=450)  # 360 of the 600 kbit/s planned
    report(link, sent, [RECEIVER_CLOCK + t + DELAY for _, t in sent], 0.3)
    stats = link.stats()
    assert 1.05 * 300_000 < link.estimate < 0.9 * 600_000, stats
    assert stats["probes_failed"] == 0, stats
    link.probe(5_000_000.0, 0.31)
    assert link.stats()["probes"] == 2


def test_audio_takes_nothing_from_the_estimate_the_videos_share() -> None:
    """Only video m-lines carry transport-cc: what the subscriber acknowledges and probes measure
    is the room left for video beside the audio. Taking the audio off again counted it twice (a
    low layer that fitted was paused, as behind the browser test's 400 kbit/s token bucket)."""

    async def main() -> None:
        publication = Publication("alice", "video", lambda ssrc: True, Counters())
        publication.set_rids(["l", "m", "h"])  # not measured yet: 150 k, 500 k, 1.5 M
        out = OutStream("video", Counters())
        bandwidth = Bandwidth("bob")
        bandwidth.link = Link(initial=200_000.0)  # the lowest layer and its headroom: 180 k
        bandwidth.rebalance([(publication, out)], 0.0)
        assert not out.paused
        assert (out.target or out.source) is publication.layer_for_rid("l")

    asyncio.run(main())  # a layer asked for a keyframe arms its timer on the running loop


# --- feedback bookkeeping ------------------------------------------------------------------------


def fed_link(packets: int, spacing: float = 0.002) -> tuple[Link, list[tuple[int, float]]]:
    """A link that sent ``packets`` packets; (seq, arrival) for each."""
    link = Link()
    sent = [(link.sent(1000, i * spacing), RECEIVER_CLOCK + i * spacing + DELAY) for i in range(packets)]
    return link, sent


def test_duplicated_and_reordered_feedback_count_once() -> None:
    link, sent = fed_link(200)
    first = build_feedback(sent[0][0], [a for _, a in sent[:100]], 0)
    second = build_feedback(sent[100][0], [a for _, a in sent[100:]], 1)
    link.on_feedback(second, 0.45)  # the later one first
    link.on_feedback(first, 0.46)
    once = link.stats()["acknowledged"]
    link.on_feedback(first, 0.47)
    link.on_feedback(second, 0.48)
    assert link.stats()["acknowledged"] == once == pytest.approx(4_000_000, rel=0.05)
    assert link.feedbacks == 4 and link.malformed == 0


def test_transport_sequence_numbers_wrap() -> None:
    link = Link()
    seqs = [link.sent(100, i * 0.0001) for i in range(70_000)]
    assert seqs[65_535] == 0xFFFF and seqs[65_536] == 0 and seqs[-1] == 70_000 - 65_536 - 1
    base = 65_530
    arrivals = [RECEIVER_CLOCK + (65_536 + i) * 0.0001 for i in range(-6, 4464)]
    assert link.on_feedback(build_feedback(base, arrivals, 0), 7.1)
    assert link.stats()["acknowledged"] == pytest.approx(8_000_000, rel=0.05)


def test_the_estimate_stays_within_its_bounds() -> None:
    """A clean 8 Mbps flow against a 2 Mbps maximum: the rate underneath stops there too."""
    link = Link(maximum=2_000_000.0)
    for k in range(0, 20_000, 100):
        first = link.sent(1000, k * 0.001)
        for j in range(1, 100):
            link.sent(1000, (k + j) * 0.001)
        arrivals = [RECEIVER_CLOCK + (k + j) * 0.001 + DELAY for j in range(100)]
        link.on_feedback(build_feedback(first, arrivals, k // 100), (k + 100) * 0.001 + 2 * DELAY)
    assert link.estimate == 2_000_000.0
    assert link.stats()["delay_based"] == 2_000_000  # so a fall starts from the bound at once


def test_malformed_feedback_is_counted_and_ignored() -> None:
    link = Link()
    link.sent(1000, 0.0)
    assert not link.on_feedback(b"\x00\x01", 0.1)
    assert link.malformed == 1 and link.feedbacks == 0
    rng = random.Random(5)
    for _ in range(500):  # garbage, and well-formed feedback about packets never sent
        link.on_feedback(bytes(rng.randrange(256) for _ in range(rng.randrange(4, 40))), 0.2)
    link.on_feedback(build_feedback(30_000, [RECEIVER_CLOCK] * 50, 1), 0.3)
    assert link.malformed > 400
    assert link.estimate == bwe.INITIAL and link.stats()["acknowledged"] is None


# --- the TWCC format -----------------------------------------------------------------------------


def chunk_kinds(fci: bytes) -> set[str]:
    """The chunk kinds of an FCI (read independently of the parser)."""
    count = struct.unpack_from("!H", fci, 2)[0]
    kinds, offset, covered = set(), 8, 0
    while covered < count:
        (chunk,) = struct.unpack_from("!H", fci, offset)
        offset += 2
        if not chunk & 0x8000:
            kinds.add("run")
            covered += chunk & 0x1FFF
        elif not chunk & 0x4000:
            kinds.add("1-bit")
            covered += 14
        else:
            kinds.add("2-bit")
            covered += 7
    return kinds


def quantized(arrivals: list[float | None]) -> list[float | None]:
    return [None if a is None else round(a / 0.00025) * 0.00025 for a in arrivals]


@pytest.mark.parametrize(
    ("name", "arrivals", "kinds"),
    [
        ("run of receptions", [10.0 + i * 0.001 for i in range(40)], {"run"}),
        (
            "losses among them",
            [None if i % 3 == 0 else 10.0 + i * 0.001 for i in range(30)],
            {"1-bit", "run"},
        ),
        ("large and negative deltas", [10.0, 10.2, 10.1, None, 10.15, 18.0, 10.3], {"2-bit"}),
        ("a long run of losses", [10.0] + [None] * 9000 + [10.5], {"run"}),
    ],
)
def test_build_then_parse_round_trips(name: str, arrivals: list[float | None], kinds: set[str]) -> None:
    fci = build_feedback(65_530, arrivals, 300)
    assert len(fci) % 4 == 0
    assert kinds <= chunk_kinds(fci), name
    parsed = parse_feedback(fci)
    assert parsed.base_seq == 65_530 and parsed.count == 300 % 256
    assert len(parsed.arrivals) == len(arrivals)
    for got, want in zip(parsed.arrivals, quantized(arrivals), strict=True):
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got == pytest.approx(want, abs=1e-9)


def test_parse_a_hand_made_feedback() -> None:
    """Bytes written out by hand from the draft's layout, independent of the builder."""
    fci = bytes.fromhex(
        "fffe 0004"  # base 65534, 4 packets
        "000010 07"  # reference 16 × 64 ms, feedback count 7
        "d240"  # 2-bit vector: received small, not received, received large, received small
        "04"  # small delta: 4 × 250 µs
        "fff8"  # large delta: −8 × 250 µs
        "08"  # small delta: 8 × 250 µs
        "0000".replace(" ", "")
    )
    parsed = parse_feedback(fci)
    assert (parsed.base_seq, parsed.reference, parsed.count) == (65534, 16, 7)
    base = 16 * 0.064
    assert parsed.arrivals == pytest.approx([base + 0.001, None, base - 0.001, base + 0.001])


@pytest.mark.parametrize(
    ("name", "fci"),
    [
        ("short header", b"\x00\x01\x00\x01"),
        ("no packets", bytes.fromhex("0001 0000 00000001 2001 0000".replace(" ", ""))),
        ("no chunks", bytes.fromhex("0001 0001 00000001".replace(" ", ""))),
        ("missing delta", bytes.fromhex("0001 0002 00000001 2002".replace(" ", ""))),
        ("half a large delta", bytes.fromhex("0001 0001 00000001 4001 00".replace(" ", ""))),
        ("reserved run status", bytes.fromhex("0001 0001 00000001 6001 0000".replace(" ", ""))),
        ("reserved vector status", bytes.fromhex("0001 0001 00000001 f000 0000".replace(" ", ""))),
        ("trailing bytes", bytes.fromhex("0001 0001 00000001 2001 01 00000000 00".replace(" ", ""))),
    ],
)
def test_malformed_feedback_raises_value_error(name: str, fci: bytes) -> None:
    with pytest.raises(ValueError):
        parse_feedback(fci)


def test_random_bytes_never_crash_nor_take_long() -> None:
    rng = random.Random(11)
    started = time.perf_counter()
    for _ in range(3000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        try:
            parse_feedback(data)
        except ValueError:
            pass
    worst = bytes.fromhex("0000 ffff 00000000".replace(" ", "")) + b"\x9f\xff" * 8000
    with pytest.raises(ValueError):
        parse_feedback(worst)  # 65535 packets claimed: the deltas are missing
    assert time.perf_counter() - started < 5.0


def test_rtcp_packet_header() -> None:
    fci = build_feedback(1, [1.0, None, 1.01], 0)
    packet = rtcp_packet(fci, 0x11223344, 0x55667788)
    assert packet[0] == 0x80 | 15 and packet[1] == 205
    assert (struct.unpack_from("!H", packet, 2)[0] + 1) * 4 == len(packet)
    assert packet[12:] == fci


def test_no_probe_while_a_video_waits_for_a_keyframe() -> None:
    """A probe overfills a narrow link on purpose: while a picture waits for the keyframe of its
    new layer, the probe would lose that very keyframe (behind the browser test's 400 kbit/s
    bucket the picture stayed frozen 17-18 s). Once the layer flows, probing resumes."""

    async def main() -> None:
        publication = Publication("alice", "video", lambda ssrc: True, Counters())
        publication.set_rids(["l", "m", "h"])  # not measured yet: 150 k, 500 k, 1.5 M
        out = OutStream("video", Counters())
        bandwidth = Bandwidth("bob")
        bandwidth.link = Link(initial=300_000.0)  # the low layer fits, the middle one would not
        bandwidth.rebalance([(publication, out)], 0.0)
        assert out.source is publication.layer_for_rid("l") and out.waiting
        assert bandwidth.link.stats()["probes"] == 0  # frozen until the keyframe: no probe
        out.waiting = False  # the low layer's keyframe came: the picture flows
        bandwidth.rebalance([(publication, out)], 0.1)
        assert bandwidth.link.stats()["probes"] == 1  # now it may look for room for the next layer

    asyncio.run(main())  # a layer asked for a keyframe arms its timer on the running loop
