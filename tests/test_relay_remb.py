"""The REMB estimate for publishers without transport-wide cc (meet.relay.remb): pure, clocks given."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from meet.relay.remb import INTERVAL, SETTLE, UNIT, Remb

PACKET = 1000  # bytes
FPS = 30


def packets(rate: float, seconds: float, start: float = 0.0) -> Iterator[tuple[float, int]]:
    """(send time, size) of a video stream at ``rate`` bps: a burst of packets per frame."""
    per_frame = max(1, round(rate / 8 / FPS / PACKET))
    for frame in range(int(seconds * FPS)):
        at = start + frame / FPS
        for i in range(per_frame):
            yield at + i * 0.0002, PACKET


def through(capacity: float | None, stream: Iterator[tuple[float, int]]) -> Iterator[tuple[float, float, int]]:
    """(send, arrival, size) after a link of ``capacity`` bps (None: no limit) with a queue."""
    free = 0.0  # when the link is done with what it holds
    for send, size in stream:
        if capacity is None:
            yield send, send + 0.010, size
            continue
        free = max(free, send) + size * 8 / capacity
        yield send, free + 0.010, size


def feed(remb: Remb, path: Iterator[tuple[float, float, int]], offset: float = 0.0) -> list[tuple[float, int]]:
    """Add every packet, asking for a REMB after each like the pacer would: (when, bps) sent."""
    sent = []
    for send, arrival, size in path:
        remb.add(int((send + offset) / UNIT) & 0xFFFFFF, arrival, size)
        rate = remb.due(arrival)
        if rate is not None:
            sent.append((arrival, rate))
    return sent


def test_nothing_is_due_before_the_estimate_has_started() -> None:
    remb = Remb()
    assert remb.due(0.0) is None
    assert not feed(remb, through(None, packets(1_500_000, SETTLE))), "the received rate is not settled yet"


def test_an_unconstrained_publisher_hears_its_rate_or_more_every_second() -> None:
    remb = Remb()
    sent = feed(remb, through(None, packets(1_500_000, 10)))
    assert sent, "no REMB"
    first_at, first = sent[0]
    assert first_at < SETTLE + 1.0
    assert 1_300_000 <= first <= 1_800_000, "the first REMB starts from what arrives"
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(sent)]
    assert all(gap >= INTERVAL - 0.05 for gap in gaps), gaps
    assert sent[-1][1] >= first, "a link that carries everything is never reported smaller"
    assert sent[-1][1] <= 1.5 * 1_500_000 + 20_000, "nor far above what the publisher proves it can send"


def test_a_narrow_uplink_is_reported_within_a_second_of_the_queue_growing() -> None:
    remb = Remb()
    feed(remb, through(None, packets(1_500_000, 5)))
    before = remb.estimate
    sent = feed(remb, through(500_000, packets(1_500_000, 3, start=5.0)))
    assert before > 1_300_000
    drops = [(at, rate) for at, rate in sent if rate < 0.97 * before]
    assert drops, sent
    assert drops[0][0] < 6.0, "the decrease goes out at once, not at the next periodic REMB"
    assert sent[-1][1] <= 650_000, f"reported {sent[-1][1]} bps for a 500 kbps uplink"
    assert sent[-1][1] >= 200_000, "no collapse below what the link carries"


@pytest.mark.parametrize("offset", [64.0 - 2.5, 64.0 - 0.001])
def test_the_24_bit_send_time_wraps_without_a_jump(offset: float) -> None:
    """abs-send-time wraps every 64 s: a publisher crossing it keeps a steady estimate."""
    remb = Remb()
    sent = feed(remb, through(None, packets(1_500_000, 6)), offset=offset)
    after = [rate for at, rate in sent if at > 64.0 - offset + 1.0]  # a second past the wrap
    assert len(after) >= 2 and min(rate for _, rate in sent) >= 1_300_000, sent
    assert after[-1] > after[0], "the estimate still moves after the wrap"
