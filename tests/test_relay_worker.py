"""The relay worker: real aiortc peers publishing VP8/Opus through an in-process ``Relay``.

Plain synchronous tests, each running its own asyncio loop (the project's pytest-trio runs
trio tests; aiortc needs asyncio). Media goes over loopback: the relay is configured with
host address 127.0.0.1 (``meet.relay.ice``), which applies process-wide, to the test peers too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiortc
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci
from aiortc.sdp import SessionDescription
from relay_peers import Hub, TestPeer, picture, run_hub, until

from meet.relay import compat, forward, ice
from meet.relay.channel import Decoder, encode
from meet.relay.forward import Counters, OutStream, Source
from meet.relay.vp8 import keyframe_size

LOOPBACK = ["127.0.0.1"]


@pytest.fixture(autouse=True)
def _stock_ice() -> Iterator[None]:
    """The relay's ICE settings are process-wide: undo them after each test."""
    yield
    ice.reset_ice()


run = run_hub
# One m-line per publication of the others (``[rtc] video_slots = 0``): the tests of that
# negotiation (msid = publisher, slots reused, a join renegotiating everyone, glare) use it.
per_publication = partial(run_hub, slots=(0, 3))


async def frames_later(peer: TestPeer, mid: str, count: int, timeout: float = 15) -> None:
    """Wait until ``peer`` has decoded ``count`` more frames on ``mid``: progress, not a duration."""
    target = len(peer.frames.get(mid, [])) + count
    await until(lambda: len(peer.frames.get(mid, [])) >= target, timeout, f"{count} more frames on mid {mid}")


def msid_streams(peer: TestPeer) -> dict[str, str]:
    """mid -> msid stream id of the relay's m-lines, from the peer's remote description."""
    description = SessionDescription.parse(peer.pc.remoteDescription.sdp)
    return {m.rtp.muxId: m.msid.split()[0] for m in description.media if m.msid}


def matching_pictures(subscriber: TestPeer, mid: str, publisher: TestPeer) -> tuple[int, int]:
    """(equal, different) complete pictures between what ``publisher`` sent and ``mid`` received."""
    equal = different = 0
    for picture_id, packets in subscriber.received[mid].items():
        sent = publisher.sent.get(picture_id)
        if not sent or len(sent) != len(packets):
            continue  # not complete on one side (still arriving, or from before recording)
        if picture(packets) == picture(sent):
            equal += 1
        else:
            different += 1
    return equal, different


def check_sender_reports(peer: TestPeer, mid: str) -> None:
    """The relay's SRs on ``mid`` count what it sent and pair its RTP clock with wallclock."""
    reports = [r for r in peer.reports if r[0] == mid and r[1].packet_count > 0]
    assert reports, f"no sender report with media on mid {mid}"
    _, info, arrived, last_rtp, received = reports[-1]
    assert received * 0.9 <= info.packet_count <= received * 1.1 + 5, (info.packet_count, received)
    assert info.octet_count > info.packet_count * 100
    assert last_rtp is not None
    expected = last_rtp[0] + (arrived - last_rtp[1]) * 90000  # the RTP clock now, from the packets
    drift = ((info.rtp_timestamp - int(expected) + 2**31) % 2**32) - 2**31
    assert abs(drift) < 0.25 * 90000, f"SR RTP timestamp is {drift / 90:.0f} ms off the stream"


# --- media through the relay --------------------------------------------------------------------


def test_three_publishers_receive_each_other_untranscoded() -> None:
    async def scenario(hub: Hub) -> None:
        peers = [  # bob and carol number payload types and extensions like Chrome: rewritten per subscriber
            TestPeer(hub, "alice", shade=0),
            TestPeer(hub, "bob", shade=60, chrome=True),
            TestPeer(hub, "carol", shade=120, screen=True, chrome=True),
        ]
        for peer in peers:
            await peer.join()
        expected = {
            "alice": {
                ("bob", "audio"),
                ("bob", "camera"),
                ("carol", "audio"),
                ("carol", "camera"),
                ("carol", "screen"),
            },
            "bob": {
                ("alice", "audio"),
                ("alice", "camera"),
                ("carol", "audio"),
                ("carol", "camera"),
                ("carol", "screen"),
            },
            "carol": {("alice", "audio"), ("alice", "camera"), ("bob", "audio"), ("bob", "camera")},
        }
        for peer in peers:
            await until(
                lambda p=peer: {(t["publisher"], t["source"]) for t in p.tracks.values()} == expected[p.peer],
                5,
                f"{peer.peer}'s tracks",
            )
        start = time.time()
        by_name = {p.peer: p for p in peers}
        cameras = [
            (peer, other, peer.mids_of(other.peer, "camera")[0])
            for peer in peers
            for other in peers
            if other is not peer
        ]
        (screen_mid,) = by_name["alice"].mids_of("carol", "screen")

        def enough() -> bool:  # counted, not timed: a loaded machine only takes longer
            return by_name["alice"].decoded_since(screen_mid, start) >= 5 and all(
                peer.decoded_since(mid, start) >= 25 and matching_pictures(peer, mid, other)[0] >= 25
                for peer, other, mid in cameras
            )

        await until(enough, 40, "25 frames of every camera decoded and compared everywhere", interval=0.2)
        for peer in peers:
            streams = msid_streams(peer)
            for mid, track in peer.tracks.items():
                assert streams[mid] == track["publisher"], "msid stream id is the publisher's peer id"
        for peer, other, mid in cameras:
            different = matching_pictures(peer, mid, other)[1]
            assert different == 0, f"{peer.peer} got altered VP8 payloads from {other.peer}"
        check_sender_reports(by_name["alice"], by_name["alice"].mids_of("bob")[0])
        stats = await hub.stats()
        assert stats["participants"] == 3 and stats["publications"] == 7 and stats["subscriptions"] == 14
        assert stats["packets_forwarded"] > stats["packets_received"]
        subscriptions = [sub for link in stats["subscribers"] for sub in link["subscriptions"]]
        assert len(subscriptions) == 14 and {link["peer"] for link in stats["subscribers"]} == set(by_name)
        assert {(sub["layer"], sub["paused"]) for sub in subscriptions} == {("single", False)}
        assert all(sub["packets"] > 0 for sub in subscriptions)

    per_publication(scenario)


def remb_recorder(stock: Callable[[Any], Any], rembs: list[tuple[int, list[int]]]) -> Callable[[Any], Any]:
    """A sender's RTCP handler that also keeps each REMB it gets: (bitrate, SSRCs)."""

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            rembs.append(unpack_remb_fci(packet.fci))
        await stock(packet)

    return handle


async def round_trip_time(sender: aiortc.RTCRtpSender) -> float | None:
    """The round-trip time a sender measured from the receiver reports it got, if any yet."""
    stats = (await sender.getStats()).values()
    return next((s.roundTripTime for s in stats if s.type == "remote-inbound-rtp" and s.roundTripTime), None)


def test_the_relay_reports_from_its_pacer_not_from_a_timer_per_sender_and_receiver() -> None:
    """Each publisher hears the relay's receiver reports (its round-trip time comes of them) and
    REMBs, each subscriber its sender reports, though no sender or receiver of the relay runs
    aiortc's RTCP timer task: a dozen per connection, most for idle slots, each waking the worker."""

    async def scenario(hub: Hub) -> None:
        alice, bob = TestPeer(hub, "alice"), TestPeer(hub, "bob", video=False)
        for peer in (alice, bob):
            await peer.join()
        await until(lambda: bool(bob.mids_of("alice", "camera")), 10, "alice's camera in bob's tracks")
        (mid,) = bob.mids_of("alice", "camera")
        await until(lambda: bob.decoded_since(mid, 0) >= 10, 20, "alice's camera at bob")
        (camera,) = [s for s in alice.pc.getSenders() if s.track is not None and s.track.kind == "video"]
        rembs: list[tuple[int, list[int]]] = []
        camera._handle_rtcp_packet = remb_recorder(camera._handle_rtcp_packet, rembs)  # type: ignore[method-assign]
        deadline = time.monotonic() + 10
        while not (rtt := await round_trip_time(camera)):  # a report answering one of her SRs
            assert time.monotonic() < deadline, "no receiver report from the relay about alice's camera"
            await asyncio.sleep(0.05)
        assert 0 <= rtt < 1, rtt
        await until(lambda: any(r[0] == mid and r[1].packet_count > 0 for r in bob.reports), 10, "an SR at bob")
        check_sender_reports(bob, mid)
        # alice numbers no packets for transport-cc: she hears her uplink's estimate as REMB
        await until(lambda: bool(rembs), 10, "a REMB at alice")
        bitrate, ssrcs = rembs[-1]
        assert camera._ssrc in ssrcs and 30_000 <= bitrate <= 20_000_000, rembs
        assert hub.relay.counters.remb_sent >= len(rembs)

        endpoints = [
            endpoint
            for room in hub.relay.rooms.values()
            for participant in room.participants.values()
            for transceiver in participant.pc.getTransceivers()
            for endpoint in (transceiver.sender, transceiver.receiver)
        ]
        tasks = [getattr(e, f"_{type(e).__name__}__rtcp_task") for e in endpoints]
        running = [t.get_coro().__qualname__ for t in tasks if t is not None and not t.done()]
        assert len(running) >= 8, running  # alice's microphone and camera, bob's microphone, slots
        assert not [name for name in running if name.endswith("._run_rtcp")], running

    run_hub(scenario)


def test_late_joiner_gets_keyframe_then_leaver_is_removed_and_slot_reused() -> None:
    async def scenario(hub: Hub) -> None:
        alice, bob = TestPeer(hub, "alice"), TestPeer(hub, "bob", shade=60)
        await alice.join()
        await bob.join()
        await until(lambda: bob.mids_of("alice") and alice.mids_of("bob"), 5, "first tracks")
        await frames_later(bob, bob.mids_of("alice")[0], 20)  # the publishers' only keyframes are long gone

        # A late joiner offering recvonly m-lines is served on them in the answer already.
        plis_before = (await hub.stats())["plis_sent"]
        dave = TestPeer(hub, "dave", shade=120, recvonly=(2, 2))
        await dave.join()
        own_recvonly = {t.mid for t in dave.pc.getTransceivers() if t.direction == "recvonly"}
        assert set(dave.tracks) == own_recvonly, "the answer filled the client's recvonly m-lines"
        # aiortc's encoder makes a keyframe only when asked: dave decodes only because the relay
        # asked each publisher for one (the bound is generous; without the PLI it never comes).
        for publisher in ("alice", "bob"):
            (mid,) = dave.mids_of(publisher)
            await until(lambda m=mid: dave.decoded_since(m, 0) > 0, 15, f"{publisher} decoded at dave")
        assert (await hub.stats())["plis_sent"] >= plis_before + 2

        # bob leaves (once alice has dave: else one renegotiation may do both, reusing bob's
        # m-lines for dave): his m-lines stop, by renegotiation, for everyone.
        await until(lambda: alice.mids_of("dave") and alice.mids_of("dave", "audio"), 10, "dave at alice")
        bob_mids = {
            peer.peer: set(peer.mids_of("bob")) | set(peer.mids_of("bob", "audio")) for peer in (alice, dave)
        }
        applied = {peer.peer: peer.offers_applied for peer in (alice, dave)}
        await bob.leave()
        for peer in (alice, dave):
            await until(lambda p=peer: p.offers_applied > applied[p.peer], 10, f"{peer.peer} renegotiated")
            assert not (set(peer.tracks) & bob_mids[peer.peer])
            for mid in bob_mids[peer.peer]:
                assert peer.transceiver(mid).currentDirection == "inactive"
        (stopped,) = [m for m in bob_mids["alice"] if alice.transceiver(m).kind == "video"]
        (from_dave,) = alice.mids_of("dave")
        await frames_later(alice, from_dave, 3)  # anything still in flight for bob's m-line is in
        packets = alice.rtp_count[stopped]
        await frames_later(alice, from_dave, 10)
        assert alice.rtp_count[stopped] == packets, "bob's m-line carried media after he left"

        # erin joins: alice's idle m-lines carry her, continuing the same RTP streams.
        erin = TestPeer(hub, "erin", shade=180)
        await erin.join()
        await until(lambda: alice.mids_of("erin") and alice.mids_of("erin", "audio"), 10, "erin at alice")
        assert set(alice.mids_of("erin")) | set(alice.mids_of("erin", "audio")) == bob_mids["alice"]
        assert msid_streams(alice)[stopped] == "erin"
        reused = time.time()
        await until(lambda: alice.decoded_since(stopped, reused) >= 5, 15, "erin decoded at alice")

    per_publication(scenario)


def test_nack_recovers_two_percent_loss_downstream_and_upstream() -> None:
    async def scenario(hub: Hub) -> None:
        alice = TestPeer(hub, "alice")
        bob = TestPeer(hub, "bob", video=False)
        await alice.join()
        await bob.join()
        await until(
            lambda: bob.mids_of("alice") and bob.frames.get(bob.mids_of("alice")[0]), 5, "alice at bob"
        )
        (mid,) = bob.mids_of("alice")

        async def lossy(frames: int) -> tuple[dict[str, Any], dict[str, Any]]:
            """Run while ``frames`` frames are decoded; every picture sent meanwhile must arrive whole."""
            before = await hub.stats()
            earlier = set(alice.sent)
            await frames_later(bob, mid, frames, timeout=40)
            # An unrecovered loss leaves a picture incomplete for good, and stalls aiortc's jitter
            # buffer for many seconds (until 512 packets overflow it): every picture alice sent in
            # the window, but the last few (their retransmissions may still be on the way), arrived
            # complete and unaltered at bob. Counted, not timed: load only makes it slower.
            window = [p for p in alice.sent if p not in earlier][:-5]  # in sending order
            assert len(window) >= frames // 2, len(window)
            sent = {p: alice.sent[p] for p in window}
            await until(
                lambda: all(len(bob.received[mid].get(p, ())) == len(sent[p]) for p in window),
                10,
                "every picture of the window complete at bob",
            )
            assert all(picture(bob.received[mid][p]) == picture(sent[p]) for p in window)
            return before, await hub.stats()

        # The relay -> subscriber path loses 2 % (of every stream, retransmissions included).
        bob.loss_every = 50
        before, after = await lossy(60)
        bob.loss_every = 0
        assert bob.dropped >= 3
        assert after["nacks_received"] > before["nacks_received"]
        assert after["retransmitted"] > before["retransmitted"], "NACKs answered by retransmission"

        # The publisher -> relay path loses 5 % of alice's camera (~20 packets/s here): the
        # relay NACKs upstream, alice resends as RTX, the relay unwraps and forwards it.
        alice.send_loss_every = 20
        before, after = await lossy(60)
        assert alice.sent_dropped >= 2, (alice.sent_dropped, alice.sent_count)
        assert after["upstream_nacks"] > before["upstream_nacks"]

        equal, different = matching_pictures(bob, mid, alice)  # RTX unwrapped both ways: exact
        assert different == 0 and equal >= 90

    per_publication(scenario)


def test_glare_relay_ignores_client_offer_and_client_answers() -> None:
    async def scenario(hub: Hub) -> None:
        alice, bob = TestPeer(hub, "alice"), TestPeer(hub, "bob", shade=60)
        await alice.join()
        await bob.join()
        await until(lambda: alice.mids_of("bob"), 5, "bob at alice")
        alice.auto_answer = False
        carol = TestPeer(hub, "carol", shade=120)
        await carol.join()
        await until(lambda: alice.held_offers, 3, "the relay's offer to alice")
        assert await alice.offer_without_applying() == {"id": 3, "ok": True, "ignored": True}
        await alice.answer(alice.held_offers.pop())
        await until(lambda: alice.mids_of("carol"), 3, "carol at alice")

        # A client re-offer while stable is answered, and every stream keeps flowing.
        alice.auto_answer = True
        await alice.pc.setLocalDescription(await alice.pc.createOffer())
        reply = await hub.request("offer", peer="alice", sdp=alice.pc.localDescription.sdp)
        await alice.pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        for publisher in ("bob", "carol"):
            (mid,) = alice.mids_of(publisher)
            assert alice.transceiver(mid).currentDirection == "recvonly"
            await frames_later(alice, mid, 8)

        # Trickled candidates: end-of-candidates is fine, junk is reported but not an error.
        assert (await hub.request("candidate", peer="alice", candidate=None))["applied"]
        junk = await hub.request(
            "candidate", peer="alice", candidate={"candidate": "candidate:x", "sdpMid": "0"}
        )
        assert junk["applied"] is False

    per_publication(scenario)


def test_unknown_peer_and_op_are_refused() -> None:
    async def scenario(hub: Hub) -> None:
        reply = await hub.relay.handle({"id": 9, "op": "offer", "room": "nowhere", "peer": "x", "sdp": "v=0"})
        assert reply["id"] == 9 and reply["ok"] is False and "not open" in reply["error"]
        reply = await hub.relay.handle({"id": 10, "op": "teleport"})
        assert reply == {"id": 10, "ok": False, "error": "unknown op 'teleport'"}

    run(scenario)


# --- the per-packet path alone ------------------------------------------------------------------


def vp8(picture_id: int, keyframe: bool, start: bool = True, body: bytes = b"\x00" * 20) -> bytes:
    """A VP8 payload: descriptor with a 15-bit picture id, then a frame header (P bit)."""
    descriptor = bytes((0x90 if start else 0x80, 0x80, 0x80 | (picture_id >> 8), picture_id & 0xFF))
    return descriptor + bytes((0x00 if keyframe else 0x01,)) + body


def parse(data: bytes) -> dict[str, Any]:
    ext_words = int.from_bytes(data[14:16], "big") if data[0] & 0x10 else -1
    offset = 12 + 4 + 4 * ext_words if ext_words >= 0 else 12
    return {
        "pt": data[1] & 0x7F,
        "marker": data[1] >> 7,
        "seq": int.from_bytes(data[2:4], "big"),
        "ts": int.from_bytes(data[4:8], "big"),
        "ssrc": int.from_bytes(data[8:12], "big"),
        "payload": data[offset:],
    }


def test_outstream_rewrites_continues_across_sources_and_answers_nacks() -> None:
    async def scenario() -> None:
        counters, sent = Counters(), []
        out = OutStream("video", counters)
        out.configure(
            pt=96,
            rtx_pt=97,
            ssrc=1111,
            rtx_ssrc=2222,
            clock_rate=90000,
            extensions={forward.URI_MID: 4, forward.URI_ABS_SEND_TIME: 2},
            mid="7",
            send=lambda data: sent.append(data) or True,
            ready=lambda: True,
        )
        plis: list[int] = []
        first = Source("alice", "video", lambda ssrc: plis.append(ssrc) or True, counters)
        second = Source("bob", "video", lambda ssrc: plis.append(ssrc) or True, counters)
        out.attach(first)
        first.on_rtp(5, 100, 9000, 0, vp8(300, keyframe=False), None)  # not a keyframe: held back
        assert sent == [] and plis == [5]  # ...and a keyframe asked for at once
        for i in range(4):
            first.on_rtp(
                5,
                101 + i,
                9000 + 3000 * (i // 2),
                i % 2,
                vp8(301 + i // 2, keyframe=i == 0, start=i % 2 == 0),
                None,
            )
        packets = [parse(d) for d in sent]
        assert [p["ssrc"] for p in packets] == [1111] * 4 and {p["pt"] for p in packets} == {96}
        assert [(p["seq"] - packets[0]["seq"]) & 0xFFFF for p in packets] == [0, 1, 2, 3]
        assert [(p["ts"] - packets[0]["ts"]) & 0xFFFFFFFF for p in packets] == [0, 0, 3000, 3000]
        assert packets[2]["payload"] == vp8(302, keyframe=False)  # payload untouched
        assert sent[0][12:16] == b"\xbe\xde\x00\x02" and sent[0][16:18] == b"\x40\x37"  # mid "7" (id 4)

        out.on_nack([packets[1]["seq"], (packets[0]["seq"] - 1) & 0xFFFF])  # 2nd: before the start
        rtx = parse(sent[-1])
        assert (
            (rtx["pt"], rtx["ssrc"]) == (97, 2222)
            and counters.retransmitted == 1
            and counters.nack_misses == 1
        )
        assert rtx["payload"] == packets[1]["seq"].to_bytes(2, "big") + packets[1]["payload"]

        out.attach(second)  # a new source: wait for its keyframe, then continue the numbering
        second.on_rtp(9, 40000, 123, 0, vp8(7000, keyframe=False), None)
        second.on_rtp(9, 40001, 3123, 1, vp8(7001, keyframe=True), None)
        switched = parse(sent[-1])
        assert switched["seq"] == (packets[-1]["seq"] + 1) & 0xFFFF
        assert 0 < (switched["ts"] - packets[-1]["ts"]) & 0xFFFFFFFF < 90000
        assert forward.vp8_picture_id(switched["payload"])[2] == 303  # picture ids continue too
        assert out.sender_info()[2:] == (
            5,
            sum(len(p["payload"]) for p in packets) + len(switched["payload"]),
        )

    asyncio.run(scenario())


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], Any]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """A clock and timers that move only when the test says (a ``forward.Scheduler``)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], Any]) -> FakeTimer:
        self.timers.append(FakeTimer(when, callback))
        return self.timers[-1]

    def advance_to(self, when: float) -> None:
        self.now = when
        due = sorted((t for t in self.timers if t.when <= when), key=lambda t: t.when)
        self.timers = [t for t in self.timers if t.when > when]
        for timer in due:
            if not timer.cancelled:
                timer.callback()


def test_pli_is_coalesced_to_one_per_interval_and_deferred_not_dropped() -> None:
    clock = FakeScheduler()
    sent: list[float] = []
    source = Source(
        "alice", "video", lambda ssrc: sent.append(clock.now) or True, Counters(), scheduler=clock
    )
    source.on_rtp(42, 1, 0, 0, vp8(1, keyframe=True), None)  # the SSRC is known from packets
    start = clock.now
    for _ in range(5):
        source.request_keyframe()
    assert sent == [start], "the first at once, the others ride on it"
    clock.advance_to(start + 0.2)
    for _ in range(3):
        source.request_keyframe()
    clock.advance_to(start + forward.PLI_INTERVAL - 0.001)
    assert sent == [start], "deferred within the interval"
    clock.advance_to(start + forward.PLI_INTERVAL)
    assert sent == [start, start + forward.PLI_INTERVAL], "one deferred to the end of the interval"
    clock.advance_to(start + 2 * forward.PLI_INTERVAL + 0.1)
    assert len(sent) == 2, "nothing more was asked"
    source.request_keyframe()
    assert sent[2:] == [clock.now], "the interval has passed: sent at once"
    assert source.counters.plis_deferred == 1 and source.counters.plis_sent == 3


def test_vp8_keyframe_detection() -> None:
    assert forward.vp8_keyframe_start(vp8(5, keyframe=True))
    assert not forward.vp8_keyframe_start(vp8(5, keyframe=False))
    assert not forward.vp8_keyframe_start(vp8(5, keyframe=True, start=False))
    assert forward.vp8_keyframe_start(b"\x10\x00\x9d\x01\x2a")  # no extension bits at all
    assert not forward.vp8_keyframe_start(b"\x90\x80")  # truncated


def test_vp8_keyframe_size_is_read_from_the_frame_header() -> None:
    header = b"\x00\x00\x00\x9d\x01\x2a" + (960 | 0x4000).to_bytes(2, "little") + (540).to_bytes(2, "little")
    assert keyframe_size(b"\x90\x80\x05" + header) == (960, 540)  # with a picture id; scale bits dropped
    assert keyframe_size(b"\x10" + header) == (960, 540)
    assert keyframe_size(b"\x10" + header[:8]) is None  # truncated
    assert keyframe_size(b"\x10" + b"\x01" + header[1:]) is None  # an interframe
    assert keyframe_size(b"\x10" + header[:3] + b"\x00\x00\x00" + header[6:]) is None  # no start code


# --- the aiortc internals guard -----------------------------------------------------------------


def test_internals_guard_passes_on_the_pinned_aiortc() -> None:
    assert aiortc.__version__ == compat.PINNED["aiortc"]
    compat.check()


def test_the_one_pin_matches_pyproject() -> None:
    """pyproject.toml installs exactly the versions the compatibility module was written for."""
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    dependencies = tomllib.loads(text)["project"]["dependencies"]
    assert {f"{name}=={version}" for name, version in compat.PINNED.items()} <= set(dependencies)
    assert f"pylibsrtp=={compat.srtp.PINNED}" in dependencies


def _opus_parameters(sdp: str) -> list[dict[str, Any]]:
    """The Opus codec parameters of every audio m-line of ``sdp``."""
    description = SessionDescription.parse(sdp)
    return [
        dict(codec.parameters)
        for media in description.media
        if media.kind == "audio"
        for codec in media.rtp.codecs
        if codec.mimeType.lower() == "audio/opus"
    ]


def test_the_relay_asks_for_opus_dtx_in_its_answers_and_offers() -> None:
    """usedtx=1 on every Opus m-line the relay describes: silent microphones send almost nothing."""

    async def scenario(hub: Hub) -> None:
        alice = TestPeer(hub, "alice", video=False, chrome=True)
        await alice.join()
        (answer,) = [e["sdp"] for e in hub.events if e["event"] == "answer" and e["peer"] == "alice"]
        assert _opus_parameters(answer) and all(str(p.get("usedtx")) == "1" for p in _opus_parameters(answer))

        # Then the relay offers alice its receive slots: three audio m-lines besides her microphone.
        await until(lambda: alice.offers_applied >= 1, 10, "the relay's offer to alice")
        offered = _opus_parameters(alice.pc.remoteDescription.sdp)
        assert len(offered) == 4 and all(str(p.get("usedtx")) == "1" for p in offered), offered

    run_hub(scenario)


@pytest.mark.parametrize(
    "remove, named",
    [
        (lambda mp: mp.delattr(RTCRtpReceiver, "_handle_rtp_packet"), "RTCRtpReceiver._handle_rtp_packet"),
        (lambda mp: mp.delattr(aiortc.RTCRtpSender, "_send_rtcp"), "RTCRtpSender._send_rtcp"),
        (lambda mp: mp.setattr(aiortc, "__version__", "9.0.0"), "aiortc 9.0.0 is installed"),
        (lambda mp: mp.delattr(aiortc.rtp, "RtcpRrPacket"), "aiortc.rtp.RtcpRrPacket"),
        (lambda mp: mp.setattr(RTCRtpReceiver, "receive", _receive_without_rtcp), "RTCRtpReceiver.receive"),
        (lambda mp: mp.delattr(aiortc.rtp, "unwrap_rtx"), "aiortc.rtp.unwrap_rtx"),
        (
            lambda mp: mp.setattr(RTCRtpReceiver, "__init__", _receiver_without_nacks(mp)),
            "_RTCRtpReceiver__nack_generator",
        ),
    ],
    ids=["receiver-hook", "sender-sr-hook", "version", "rr-packet", "rr-task", "rtx-unwrap", "private-field"],
)
def test_internals_guard_fails_loudly_when_an_internal_moves(
    monkeypatch: pytest.MonkeyPatch, remove: Callable[[pytest.MonkeyPatch], None], named: str
) -> None:
    remove(monkeypatch)
    with pytest.raises(compat.CompatibilityError, match=named.replace(".", r"\.")):
        compat.check()

    async def configure() -> dict[str, Any]:  # the worker refuses to start on such an aiortc
        return await Hub().relay.handle({"id": 1, "op": "configure", "ice_servers": []})

    reply = asyncio.run(configure())
    assert reply["ok"] is False and "internals" in reply["error"]


async def _receive_without_rtcp(self: RTCRtpReceiver, parameters: Any) -> None:
    """An aiortc whose receivers no longer start the RTCP task the relay replaces."""


def _receiver_without_nacks(mp: pytest.MonkeyPatch) -> Callable[..., None]:
    stock = RTCRtpReceiver.__init__

    def init(self: RTCRtpReceiver, *args: Any, **kwargs: Any) -> None:
        stock(self, *args, **kwargs)
        del self._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]

    return init


# --- the worker process -------------------------------------------------------------------------


async def _client_offer() -> str:
    # The client gathers like a browser would here (loopback): an offer whose end-of-candidates
    # came with no candidate at all makes aioice prune every component, and the relay's answer
    # would then carry no candidates either.
    if ice is not None:
        ice.configure_ice(LOOPBACK, None)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


class Channel:
    """The server's end of a worker's socket pair, blocking, with a timeout."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.decoder, self.inbox, self.ids = sock, Decoder(), [], 0
        sock.settimeout(10)

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self.ids += 1
        self.sock.sendall(encode({"id": self.ids, "op": op, **fields}))
        while True:
            for message in self.inbox:
                if message.get("id") == self.ids:
                    self.inbox.remove(message)
                    return message
            data = self.sock.recv(65536)
            assert data, "the worker closed the channel"
            self.inbox += self.decoder.feed(data)


def worker_process(**env: str) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """``python -m meet.relay.worker`` on a socket pair (with ``env`` added): the server's end, the process."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    process = subprocess.Popen(
        [sys.executable, "-m", "meet.relay.worker", "--fd", str(child.fileno())],
        pass_fds=(child.fileno(),),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    child.close()
    return parent, process


@pytest.mark.parametrize("how", ["socket-closed", "sigterm"])
def test_worker_process_speaks_the_channel_and_exits(how: str) -> None:
    parent, process = worker_process()
    try:
        channel = Channel(parent)
        assert channel.request("configure", ice_servers=[], host_addresses=LOOPBACK, udp_ports=None)["ok"]
        assert channel.request("open", room="r", peer="p")["ok"]
        reply = channel.request("offer", room="r", peer="p", sdp=asyncio.run(_client_offer()))
        assert reply["ok"] and reply["sdp"].startswith("v=0") and "a=candidate:" in reply["sdp"]
        assert "a=rtpmap:97 VP8/90000" in reply["sdp"] and "H264" not in reply["sdp"]
        if LOOPBACK:
            assert " 127.0.0.1 " in reply["sdp"]
        stats = channel.request("stats")
        assert stats["ok"] and stats["participants"] == 1
        assert channel.request("close", room="r", peer="p")["ok"]
        if how == "sigterm":
            process.send_signal(signal.SIGTERM)
        else:
            parent.close()
        assert process.wait(timeout=10) == 0
    finally:
        parent.close()
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_worker_logs_json_lines_when_the_server_does() -> None:
    """``[log] format = "json"`` reaches the workers (``meet serve`` passes it on): every line
    they write is one JSON object naming the worker."""
    parent, process = worker_process(MEET_RELAY_LOG="INFO", MEET_RELAY_LOG_FORMAT="json")
    try:
        channel = Channel(parent)
        assert not channel.request("no-such-op")["ok"]  # logged at INFO: "request ... refused"
        parent.close()
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        lines = process.stderr.read().decode().splitlines()
    finally:
        parent.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    records = [json.loads(line) for line in lines]
    refused = [r for r in records if "refused" in r["message"]]
    assert refused and refused[0]["level"] == "INFO" and refused[0]["logger"] == "meet.relay.worker"
    assert all(r["relay"] == process.pid and r["time"].endswith("Z") for r in records)
