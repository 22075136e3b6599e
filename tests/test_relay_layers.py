"""Simulcast layers on the forwarding path: switching without a gap, pausing, allocation, probing.

These drive ``forward.OutStream`` and ``source.Publication`` directly with synthetic VP8 packets
(the aiortc-level tests of receiving simulcast are in test_relay_simulcast.py): what a
subscriber receives must be one continuous stream whatever layer it comes from.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from relay_peers import ROOM, Hub, TestPeer, until

from meet.relay import forward, ice, vp8
from meet.relay.allocate import UP_MARGIN, allocate
from meet.relay.forward import Counters, OutStream, Publication, Source

EXTENSIONS = {forward.URI_MID: 4, forward.URI_ABS_SEND_TIME: 2, forward.URI_TRANSPORT_CC: 5}


def frame(picture: int, tl0: int, keyframe: bool, start: bool = True) -> bytes:
    """A VP8 payload with a 15-bit picture id and TL0PICIDX (as Chrome's simulcast sends)."""
    first = 0x90 if start else 0x80  # X, S
    descriptor = bytes((first, 0xC0, 0x80 | (picture >> 8), picture & 0xFF, tl0))
    return descriptor + bytes((0x00 if keyframe else 0x01, 0x9D, 0x01, 0x2A)) + bytes(20)


class Layer:
    """A simulcast layer's packets: its own SSRC, sequence numbers, timestamps and picture ids."""

    def __init__(self, source: Source, ssrc: int, seq: int, ts: int, picture: int, tl0: int) -> None:
        self.source, self.ssrc, self.seq, self.ts, self.picture, self.tl0 = (
            source,
            ssrc,
            seq,
            ts,
            picture,
            tl0,
        )

    def send_frame(self, keyframe: bool = False, packets: int = 2) -> None:
        for i in range(packets):
            payload = frame(self.picture, self.tl0, keyframe, start=i == 0)
            self.source.on_rtp(
                self.ssrc, self.seq & 0xFFFF, self.ts & 0xFFFFFFFF, int(i == packets - 1), payload, None
            )
            self.seq += 1
        self.ts += 3000
        self.picture = (self.picture + 1) & 0x7FFF
        self.tl0 = (self.tl0 + 1) & 0xFF


class FakeLink:
    def __init__(self) -> None:
        self.seq = 65530  # wraps during the test
        self.sizes: list[int] = []

    def sent(self, size: int, now: float) -> int:
        self.sizes.append(size)
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq


def parse(data: bytes) -> RtpPacket:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in EXTENSIONS.items()]
        )
    )
    return RtpPacket.parse(data, extensions)


def subscriber(
    counters: Counters, link: FakeLink | None = None, rtx: bool = True
) -> tuple[OutStream, list[RtpPacket]]:
    sent: list[RtpPacket] = []

    def send(data: bytes) -> bool:
        sent.append(parse(data))
        return True

    out = OutStream("video", counters)
    out.configure(
        pt=96,
        rtx_pt=97 if rtx else None,
        ssrc=1111,
        rtx_ssrc=2222,
        clock_rate=90000,
        extensions=EXTENSIONS if link else {forward.URI_MID: 4},
        mid="3",
        send=send,
        ready=lambda: True,
        link=link,
    )
    return out, sent


def run(scenario: Callable[[], Any]) -> None:
    async def main() -> None:
        scenario()

    asyncio.run(main())  # Source asks for the running loop (its PLI timers)


def simulcast(plis: list[int]) -> tuple[Publication, list[Layer]]:
    def send_pli(ssrc: int) -> bool:
        plis.append(ssrc)
        return True

    publication = Publication("alice", "video", send_pli, Counters())
    publication.set_rids(["l", "m", "h"])
    starts = [(101, 5000, 10, 700, 3), (202, 40000, 900, 20000, 90), (303, 65000, 77, 32760, 250)]
    layers = [
        Layer(publication.layer_for_rid(rid), *start)  # type: ignore[arg-type]
        for rid, start in zip(("l", "m", "h"), starts, strict=True)
    ]
    return publication, layers


def assert_continuous(packets: list[RtpPacket]) -> None:
    """One stream: one SSRC, consecutive sequence numbers, timestamps and numbering that never go back."""
    assert {p.ssrc for p in packets} == {1111}
    for before, after in itertools.pairwise(packets):
        assert (after.sequence_number - before.sequence_number) & 0xFFFF == 1
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF < 0x80000000
        if vp8.keyframe_start(after.payload) or after.payload[0] & 0x10:  # a frame's first packet
            picture, tl0, _ = vp8.numbering(after.payload)
            last_picture, last_tl0, _ = vp8.numbering(before.payload)
            assert (
                picture is not None and last_picture is not None and tl0 is not None and last_tl0 is not None
            )
            assert (picture - last_picture) & 0x7FFF in (0, 1)
            assert (tl0 - last_tl0) & 0xFF in (0, 1)


def test_a_switch_keeps_the_current_layer_until_the_target_keyframe() -> None:
    def scenario() -> None:
        plis: list[int] = []
        publication, (low, _mid, high) = simulcast(plis)
        out, sent = subscriber(publication.counters)
        out.subscribe(publication, high.source)
        high.send_frame(keyframe=True)
        for _ in range(3):
            high.send_frame()
            low.send_frame()
        assert len(sent) == 8 and out.source is high.source

        out.switch(low.source)  # down: ask the low layer for a keyframe, keep the high one meanwhile
        assert plis[-1] == 101 and out.target is low.source
        for _ in range(2):
            low.send_frame()  # not a keyframe: nothing from the low layer yet
            high.send_frame()
        assert len(sent) == 12 and all(len(p.payload) == len(sent[0].payload) for p in sent)
        low.send_frame(keyframe=True)
        high.send_frame()  # the high layer no longer reaches this subscriber
        low.send_frame()
        assert len(sent) == 16 and out.source is low.source and out.target is None
        assert out.switches == 1
        assert vp8.keyframe_start(sent[12].payload)
        assert_continuous(sent)

    run(scenario)


def test_pausing_sends_nothing_and_resuming_continues_the_stream() -> None:
    def scenario() -> None:
        plis: list[int] = []
        publication, (low, mid, _high) = simulcast(plis)
        out, sent = subscriber(publication.counters)
        out.subscribe(publication, mid.source)
        mid.send_frame(keyframe=True)
        mid.send_frame()
        out.switch(None)  # the link cannot carry even the lowest layer
        for _ in range(3):
            low.send_frame(keyframe=True)
            mid.send_frame(keyframe=True)
        assert len(sent) == 4 and out.paused
        out.switch(low.source)
        low.send_frame()
        low.send_frame(keyframe=True)
        assert len(sent) == 6 and not out.paused
        assert_continuous(sent)

    run(scenario)


def test_a_switch_to_a_layer_that_goes_away_is_cancelled() -> None:
    def scenario() -> None:
        plis: list[int] = []
        publication, (low, _mid, high) = simulcast(plis)
        out, sent = subscriber(publication.counters)
        out.subscribe(publication, low.source)
        low.send_frame(keyframe=True)
        out.switch(high.source)
        publication.set_rids(["l", "m"])  # the publisher renegotiated without its top layer
        assert out.target is None and out.source is low.source and high.source.targets == []
        low.send_frame()
        assert len(sent) == 4

    run(scenario)


def test_transport_wide_sequence_numbers_on_every_packet_sent() -> None:
    def scenario() -> None:
        plis: list[int] = []
        publication, (low, _mid, _high) = simulcast(plis)
        link = FakeLink()
        out, sent = subscriber(publication.counters, link)
        out.subscribe(publication, low.source)
        low.send_frame(keyframe=True)
        low.send_frame()
        out.on_nack([sent[1].sequence_number])  # a retransmission is numbered too
        padded = out.pad(300, 12345.0)  # probing: RTX copies of the newest packet
        assert padded >= 300 and out.padding >= 2
        numbers = [p.extensions.transport_sequence_number for p in sent]
        assert numbers == [(65531 + i) & 0xFFFF for i in range(len(sent))]
        assert link.sizes[:4] == [len(bytes(serialized)) for serialized in map(_serialize, sent[:4])]
        assert sent[4].ssrc == 2222 and sent[4].extensions.abs_send_time is not None
        assert [p.extensions.mid for p in sent] == ["3"] * len(sent)

    run(scenario)


def _serialize(packet: RtpPacket) -> bytes:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in EXTENSIONS.items()]
        )
    )
    return packet.serialize(extensions)


def test_padding_needs_rtx_and_is_padding_only_without_a_stream_in_progress() -> None:
    def scenario() -> None:
        plis: list[int] = []
        publication, (low, _mid, _high) = simulcast(plis)
        out, sent = subscriber(publication.counters, FakeLink(), rtx=False)
        out.subscribe(publication, low.source)
        low.send_frame(keyframe=True)
        assert out.pad(1000, 1.0) == 0 and len(sent) == 2  # no RTX negotiated: nothing to pad with

        link = FakeLink()
        out, sent = subscriber(publication.counters, link)
        out.subscribe(publication, None)  # paused: no stream to resend from
        padded = out.pad(600, 1.0)
        assert padded >= 600 and len(sent) == 3
        for packet in sent:
            assert packet.ssrc == 2222 and packet.payload == b"" and packet.padding_size == 255
        assert [p.extensions.transport_sequence_number for p in sent] == [65531, 65532, 65533]
        assert [p.sequence_number for p in sent] == [(sent[0].sequence_number + i) & 0xFFFF for i in range(3)]
        assert out.padding == 3

    run(scenario)


def test_publication_ranks_layers_by_measured_rate_and_knows_paused_ones() -> None:
    def scenario() -> None:
        plis: list[int] = []
        publication, (low, mid, high) = simulcast(plis)
        publication.set_rids(["h", "m", "l"])  # same layers listed the other way: kept, reordered
        assert [layer.rid for layer in publication.layers] == ["h", "m", "l"]
        assert publication.layer_for_rid("m") is mid.source and publication.layer_for_rid("x") is None
        publication.measure(0.0)
        for _ in range(10):
            low.send_frame(packets=1)
            mid.send_frame(packets=2)
            high.send_frame(packets=4)
        publication.measure(1.0)
        assert [layer.rid for layer in publication.layers] == ["l", "m", "h"]
        assert 0 < low.source.rate < mid.source.rate < high.source.rate
        for _ in range(10):
            low.send_frame(packets=1)
            mid.send_frame(packets=2)
        publication.measure(2.0)  # the top layer stopped (a weak uplink)
        assert publication.active(mid.source) and not publication.active(high.source)
        assert [layer.rid for layer in publication.layers] == ["l", "m", "h"]

    run(scenario)


RATES = (150_000.0, 500_000.0, 1_500_000.0)


@pytest.mark.parametrize(
    ("budget", "current", "expected"),
    [
        (10_000_000, (None, None), (2, 2)),  # plenty: everyone at the top
        (2_400_000, (None, None), (2, 1)),  # round robin: the first moves up first
        (1_300_000, (None, None), (1, 1)),
        (400_000, (None, None), (0, 0)),
        (200_000, (None, None), (0, None)),  # a video is paused before anything else suffers
        (100_000, (None, None), (None, None)),
        (1_600_000, (2,), (2,)),  # staying needs only the rate...
        (1_600_000, (1,), (1,)),  # ...going up needs the margin
        (1_600_000, (None,), (1,)),
    ],
)
def test_allocation(budget: float, current: tuple[int | None, ...], expected: tuple[int | None, ...]) -> None:
    allocation = allocate(budget, [RATES] * len(current), current)
    assert allocation.layers == expected
    assert allocation.used <= budget


def test_after_a_drop_the_video_goes_straight_to_the_layer_that_fits_with_headroom() -> None:
    rates = (137_000.0, 288_000.0, 552_000.0)  # measured in Chromium
    # The estimate fell under the middle layer's rate plus headroom: not one step, all the way.
    assert allocate(300_000, [rates], (2,)).layers == (0,)
    assert allocate(300_000, [rates], (1,)).layers == (1,)  # held: its bare rate suffices


def test_allocation_names_the_rate_worth_probing_for() -> None:
    allocation = allocate(400_000, [RATES, RATES], (0, 0))
    assert allocation.layers == (0, 0)
    assert allocation.probe == pytest.approx(2 * RATES[2] * UP_MARGIN)  # everyone at the top
    assert allocate(10_000_000, [RATES], (2,)).probe is None  # at the top: nothing to gain
    assert allocate(100_000, [RATES], (None,)).probe == pytest.approx(RATES[2] * UP_MARGIN)


def test_when_not_every_video_fits_the_ones_flowing_keep_their_place() -> None:
    budget = RATES[0] * UP_MARGIN + 10_000  # one lowest layer, with room to spare
    assert allocate(budget, [RATES, RATES], (None, 0)).layers == (None, 0)
    assert allocate(budget, [RATES, RATES], (0, None)).layers == (0, None)
    assert allocate(budget, [RATES, RATES], (None, None)).layers == (0, None)
    assert allocate(budget, [RATES, RATES], (None, 0), sizes=(500.0, 500.0)).layers == (None, 0)


def test_a_large_tile_paused_in_a_drop_takes_the_place_of_a_thumbnail_still_flowing() -> None:
    """Seen in Chromium behind a 400 kbit/s token bucket: the pinned speaker's video paused in
    the drop while a strip thumbnail kept flowing, and stayed paused while the thumbnail held."""
    budget = RATES[0] * UP_MARGIN + 10_000  # one lowest layer
    large, thumbnail = 960.0 * 540, 160.0 * 90
    assert allocate(budget, [RATES, RATES], (None, 0), sizes=(large, thumbnail)).layers == (0, None)
    assert allocate(budget, [RATES, RATES], (0, None), sizes=(large, thumbnail)).layers == (0, None)


async def received(peer: TestPeer, mid: str) -> int:
    """RTP packets ``peer`` received on ``mid`` so far (its inbound-rtp statistics)."""
    report = await peer.transceiver(mid).receiver.getStats()
    return sum(s.packetsReceived for s in report.values() if s.type == "inbound-rtp")


class FakeControl:
    """A subscriber's estimate the test sets (the real one is meet.relay.bwe.Link)."""

    def __init__(self, estimate: float) -> None:
        self.estimate = estimate
        self.probes: list[float] = []
        self.seq = 0

    def sent(self, size: int, now: float) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def probe(self, target_bps: float, now: float) -> None:
        self.probes.append(target_bps)

    probing = False

    def padding(self, now: float) -> int:
        return 0

    def stats(self) -> dict[str, Any]:
        return {"estimate": self.estimate}

    def on_feedback(self, fci: bytes, now: float) -> bool:
        return True


def test_the_relay_pauses_a_video_the_link_cannot_carry_and_resumes_it() -> None:
    """Through real aiortc peers: audio keeps flowing while the video is paused; tracks say so."""

    async def scenario() -> None:
        hub = Hub()
        await hub.configure(["127.0.0.1"])
        try:
            alice, bob = TestPeer(hub, "alice"), TestPeer(hub, "bob")
            await alice.join()
            await bob.join()
            await until(lambda: len(bob.mids_of("alice")) == 1, 20, "bob receives alice's camera")
            video = bob.mids_of("alice")[0]
            audio = bob.mids_of("alice", "audio")[0]
            await until(lambda: len(bob.frames[video]) >= 5, 20, "bob decodes alice's camera")
            control = FakeControl(20_000.0)  # not even the one layer fits, audio aside
            hub.relay.rooms[ROOM].participants["bob"].bandwidth.link = control
            await until(
                lambda: any(t["paused"] for t in bob.tracks_events[-1] if t["mid"] == video),
                10,
                "tracks says the camera is paused",
            )
            assert not any(t["paused"] for t in bob.tracks_events[-1] if t["mid"] == audio)
            frames, audio_packets = len(bob.frames[video]), await received(bob, audio)
            deadline = asyncio.get_running_loop().time() + 10
            while await received(bob, audio) < audio_packets + 25:  # ~0.5 s of Opus
                assert asyncio.get_running_loop().time() < deadline, "audio stopped with the video"
                await asyncio.sleep(0.05)
            assert len(bob.frames[video]) <= frames + 1  # a frame in flight at most
            assert control.probes, "the allocator asks for a probe towards the paused video"
            stats = await hub.stats()
            (bob_stats,) = [link for link in stats["subscribers"] if link["peer"] == "bob"]
            (camera,) = [sub for sub in bob_stats["subscriptions"] if sub["mid"] == video]
            assert camera["paused"] and camera["layer"] is None and bob_stats["estimate"] == 20_000

            control.estimate = 5_000_000.0
            await until(
                lambda: not any(t["paused"] for t in bob.tracks_events[-1]), 10, "tracks says it resumed"
            )
            await until(lambda: len(bob.frames[video]) >= frames + 5, 20, "the camera decodes again")
        finally:
            await hub.close()
            ice.reset_ice()

    asyncio.run(asyncio.wait_for(scenario(), 90))
