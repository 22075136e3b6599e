"""The relay's receive statistics and NACK gaps (meet.relay.reception) against aiortc's own.

Differential: the same packets — in order, lost, reordered, repeated, across the 16-bit wrap,
after a jump — go through ``Statistics``/``Gaps`` and through aiortc's ``StreamStatistics``/
``NackGenerator`` (whose clock is the same injected one); every figure a receiver report or
``getStats`` reads, and every NACK decision, must agree after each packet.
"""

from __future__ import annotations

import random

import aiortc.rtcrtpreceiver
import pytest
from aiortc.rtp import RtpPacket

from meet.relay.reception import Gaps, Statistics


def sequence(seed: int, start: int, count: int) -> list[tuple[int, int, float]]:
    """(seq, RTP timestamp, arrival) of a 90 kHz stream with loss, reordering, repeats and a jump."""
    rng = random.Random(seed)
    out: list[tuple[int, int, float]] = []
    seq, now = start, 1000.0
    for i in range(count):
        now += rng.uniform(0.001, 0.04)
        if i == count // 2:
            seq += rng.choice([300, 40000])  # a restart-like jump, far past the NACK history
        seq += 1
        if rng.random() < 0.05:
            continue  # lost
        out.append((seq & 0xFFFF, int(now * 90000) + rng.randrange(-900, 900), now))
        if out and rng.random() < 0.05:
            out.append(rng.choice(out[-5:]))  # a repeat of something recent
    for _ in range(count // 20):  # reorder some neighbours
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


@pytest.mark.parametrize(("seed", "start"), [(1, 0), (2, 65000), (3, 65535), (4, 30000)])
def test_statistics_and_gaps_agree_with_aiortc_packet_by_packet(
    seed: int, start: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]
    monkeypatch.setattr(aiortc.rtcrtpreceiver.time, "time", lambda: clock[0])
    ours, theirs = Statistics(90000), aiortc.rtcrtpreceiver.StreamStatistics(90000)
    gaps, nacks = Gaps(), aiortc.rtcrtpreceiver.NackGenerator()
    nacked = 0
    for n, (seq, timestamp, now) in enumerate(sequence(seed, start, 3000)):
        clock[0] = now
        packet = RtpPacket(sequence_number=seq, timestamp=timestamp)
        ours.add(seq, timestamp, now)
        theirs.add(packet)
        due = gaps.add(seq)
        assert due == nacks.add(packet), (n, seq)
        nacked += due
        assert gaps.missing == nacks.missing, (n, seq)
        fields = ("max_seq", "cycles", "packets_received", "packets_lost", "jitter", "packets_expected")
        assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields], (n, seq)
        if n % 97 == 0:  # a receiver report's interval
            assert ours.fraction_lost == theirs.fraction_lost, (n, seq)
    assert nacked > 50 and ours.packets_lost > 50, "the sequence had gaps to report"


def test_a_fresh_stream_reports_nothing_lost() -> None:
    stats = Statistics(48000)
    assert (stats.packets_expected, stats.packets_lost, stats.fraction_lost, stats.jitter) == (0, 0, 0, 0)
    assert Gaps().add(7) is False
