"""The feedback the relay sends each publisher (meet.relay.uplink): every packet reported once."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from relay_peers import Hub, until
from simulcast_publisher import TRANSPORT_CC_ID, TRANSPORT_CC_URI, SimulcastPublisher

from meet.relay import ice, twcc, uplink
from meet.relay.uplink import Uplink


def reports(fcis: list[bytes]) -> dict[int, float | None]:
    """Sequence number → reported arrival (None: reported lost), from FCIs, via the parser."""
    found: dict[int, float | None] = {}
    for fci in fcis:
        feedback = twcc.parse_feedback(fci)
        for i, arrival in enumerate(feedback.arrivals):
            seq = (feedback.base_seq + i) & 0xFFFF
            assert seq not in found, "a packet reported twice"
            found[seq] = arrival
    return found


def test_every_packet_is_reported_once_with_its_arrival_time_and_losses_as_lost() -> None:
    link = Uplink()
    now = 100.0
    for seq in (65530, 65531, 65533, 65535, 0, 1):  # wraps; 65532 and 65534 are lost
        now += 0.004
        link.arrived(seq, now)
    first = link.feedback(now)
    found = reports(first)
    assert sorted(found) == [0, 1, 65530, 65531, 65532, 65533, 65534, 65535]
    assert found[65532] is None and found[65534] is None
    assert found[1] is not None and found[65530] is not None
    assert found[1] - found[65530] == pytest.approx(0.020, abs=0.0003)  # 250 µs ticks
    assert link.feedback(now + 1) == [], "nothing new: nothing to say"
    link.arrived(2, now + 1)
    assert sorted(reports(link.feedback(now + 1))) == [2]
    link.arrived(3, now + 1.005)
    assert link.feedback(now + 1.01) == [], "not before the interval has passed"
    later = link.feedback(now + 1 + uplink.INTERVAL)
    assert sorted(reports(later)) == [3]
    assert twcc.parse_feedback(later[0]).count == 2, "feedback packet count goes up"


def test_late_and_duplicate_packets_are_not_reported_again() -> None:
    link = Uplink()
    link.arrived(10, 1.0)
    link.arrived(12, 1.001)
    assert sorted(reports(link.feedback(1.01))) == [10, 11, 12]
    link.arrived(11, 1.02)  # reordered past its report: too late
    link.arrived(12, 1.02)  # a duplicate
    assert link.feedback(2.0) == []
    link.arrived(13, 2.0)
    assert sorted(reports(link.feedback(2.1))) == [13]


def test_long_stretches_are_split_and_jumps_restart_the_reporting() -> None:
    link = Uplink()
    for seq in range(2500):
        link.arrived(seq, 1.0 + seq * 0.00001)
    fcis = link.feedback(2.0)
    assert len(fcis) == 3 and len(reports(fcis)) == 2500
    link.arrived(30000, 3.0)  # far ahead: not 27500 losses
    assert sorted(reports(link.feedback(3.1))) == [30000]


def test_a_publisher_gets_transport_feedback_for_every_packet_and_no_remb() -> None:
    """Through a real aiortc publisher (three simulcast layers) and the in-process relay."""

    async def scenario() -> None:
        hub = Hub()
        await hub.configure(["127.0.0.1"])
        publisher = SimulcastPublisher(hub, "alice", transport_cc=True)
        publisher.lose_every = 10
        try:
            await publisher.join()
            assert f"a=extmap:{TRANSPORT_CC_ID} {TRANSPORT_CC_URI}" in publisher.answer_sdp
            await until(lambda: len(publisher.numbered) >= 150, 20, "150 numbered packets sent")
            await publisher.stop()
            last = publisher.numbered[-1]
            found: dict[int, float | None] = {}

            def reported() -> bool:
                found.clear()
                found.update(reports(publisher.feedback))  # also checks: none reported twice
                return last in found

            await until(reported, 10, "the relay's feedback reaches the last packet sent")
            lost = {seq for i, seq in enumerate(publisher.numbered, 1) if i % 10 == 0}
            first = min(found, key=lambda seq: (seq - publisher.numbered[0]) & 0xFFFF)
            sent = set(publisher.numbered[publisher.numbered.index(first) :])
            assert set(found) == sent, "every packet from the first reported on, once"
            assert {seq for seq in sent if found[seq] is None} == lost & sent
            times = [found[seq] for seq in publisher.numbered if seq in sent and found[seq] is not None]
            assert all(b - a > -0.002 for a, b in itertools.pairwise(times))  # arrival order
            assert publisher.rembs == 0, "no REMB for a publisher that estimates its own uplink"
            assert hub.relay.counters.remb_sent == 0
        finally:
            await publisher.stop()
            await hub.close()
            ice.reset_ice()

    asyncio.run(asyncio.wait_for(scenario(), 60))
