"""The relay receives simulcast: Chrome-style offers answered, three layers demultiplexed.

Worker-level, like test_relay_worker.py: an in-process ``Relay`` on loopback, a
:class:`simulcast_publisher.SimulcastPublisher` sending three pre-encoded VP8 layers on one
m-line (no ``a=ssrc`` lines: the relay learns the SSRCs from the mid and rid header
extensions), and aiortc test peers as other participants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import aiortc
import aiortc.rtcrtpreceiver
import aiortc.rtp
import pytest
from relay_peers import ROOM, Hub, TestPeer, run_hub, until
from simulcast_publisher import LAYERS, RID_ID, SimulcastPublisher, chrome_simulcast_offer

from meet.relay import compat, ice
from meet.relay.compat import forwarding, simulcast
from meet.relay.forward import Publication, Source

LOOPBACK = ["127.0.0.1"]


@pytest.fixture(autouse=True)
def _stock_ice() -> Iterator[None]:
    yield
    ice.reset_ice()


run = run_hub


def publication(hub: Hub, peer: str, mid: str) -> Publication:
    """The relay's publication of ``peer``'s m-line ``mid``."""
    participant = hub.relay.rooms[ROOM].participants[peer]
    return next(p for t, p in participant.pubs.items() if t.mid == mid)


def layers_by_rid(pub: Publication) -> dict[str | None, Source]:
    return {layer.rid: layer for layer in pub.layers}


def section(sdp: str, mid: str) -> list[str]:
    """The lines of the m-line ``mid`` of a description."""
    for part in sdp.split("\r\nm=")[1:]:
        lines = part.split("\r\n")
        if f"a=mid:{mid}" in lines:
            return lines
    raise AssertionError(f"no m-line {mid}")


async def packets_later(pub: Publication, count: int, what: str) -> None:
    """Wait until every layer of ``pub`` received ``count`` more packets (progress, not time)."""
    targets = {layer: layer.packets + count for layer in pub.layers}
    await until(lambda: all(layer.packets >= n for layer, n in targets.items()), 15, what)


def reported(publisher: SimulcastPublisher, layer: Source) -> bool:
    """Whether ``layer``'s last sender report is one the publisher sent for that layer."""
    return layer.sr is not None and layer.sr[:2] in publisher.layer(str(layer.rid)).reports


def recovered(layer: Source, seq: int) -> bool:
    """Whether packet ``seq`` is in ``layer``'s history."""
    entry = layer.history[seq % len(layer.history)] if layer.history else None
    return entry is not None and entry[0] == seq


def check_identical(publisher: SimulcastPublisher, pub: Publication) -> int:
    """Every packet in each layer's history is the one the publisher sent on that layer; their count."""
    compared = 0
    for layer in pub.layers:
        sent = publisher.layer(str(layer.rid))
        assert layer.ssrc == sent.ssrc, f"layer {layer.rid} has another layer's SSRC"
        assert layer.history is not None
        for entry in layer.history:
            if entry is None:
                continue
            seq, ts, marker, payload, _level = entry
            assert sent.sent[seq] == (ts, marker, payload), f"layer {layer.rid}: packet {seq} altered"
            compared += 1
    return compared


# --- negotiation and demultiplexing ------------------------------------------------------------


def test_three_layers_answered_received_and_kept_in_later_offers() -> None:
    async def scenario(hub: Hub) -> None:
        alice = SimulcastPublisher(hub, "alice", screen=True)  # two receiving video m-lines: no PT routing
        await alice.join()
        camera = section(alice.answer_sdp, alice.camera_mid)
        assert {"a=rid:q recv", "a=rid:h recv", "a=rid:f recv", "a=simulcast:recv q;h;f"} <= set(camera)
        assert f"a=extmap:10 {simulcast.RID_URI}" in camera
        assert f"a=extmap:11 {simulcast.REPAIRED_RID_URI}" in camera
        pub = publication(hub, "alice", alice.camera_mid)
        assert list(layers_by_rid(pub)) == ["q", "h", "f"]
        await packets_later(pub, 60, "60 packets on each layer")
        assert check_identical(alice, pub) >= 180
        for layer in pub.layers:  # each layer's sender reports reached that layer (lip sync)
            await until(partial(reported, alice, layer), 5, f"a sender report of layer {layer.rid}")

        # Chrome stops sending the mid/rid extensions once the SSRCs are established.
        alice.send_rids = False
        await packets_later(pub, 60, "60 packets on each layer without the rid extension")
        assert check_identical(alice, pub) >= 180

        # Another participant joins: the relay's offer to alice keeps receiving three layers.
        bob = TestPeer(hub, "bob")
        await bob.join()
        await until(lambda: bool(alice.relay_offers), 10, "a relay offer to alice")
        camera = section(alice.relay_offers[-1], alice.camera_mid)
        assert {"a=rid:q recv", "a=rid:h recv", "a=rid:f recv", "a=simulcast:recv q;h;f"} <= set(camera)
        assert f"a=extmap:10 {simulcast.RID_URI}" in camera
        await until(lambda: bool(bob.mids_of("alice")), 10, "alice's camera at bob")
        (mid,) = bob.mids_of("alice")
        await until(lambda: bob.decoded_since(mid, 0) >= 10, 20, "alice's camera decoded at bob")
        await packets_later(pub, 20, "layers still received after the renegotiation")
        stats = await hub.stats()
        assert stats["ok"] and stats["publications"] >= 3
        # Each layer's picture size, read from its keyframes (nothing decoded).
        sizes = {x["rid"]: x["size"] for x in stats["layers"] if x["publisher"] == "alice" and x["rid"]}
        assert sizes == {rid: [width, height] for rid, width, height in LAYERS}, sizes

    run(scenario)


def test_nack_names_the_layer_and_its_rtx_is_routed_by_repaired_rid() -> None:
    async def scenario(hub: Hub) -> None:
        alice = SimulcastPublisher(hub, "alice", screen=True)
        await alice.join()
        pub = publication(hub, "alice", alice.camera_mid)
        await packets_later(pub, 20, "the layers' SSRCs learned")
        h = alice.layer("h")
        h.drop_next = True
        await until(lambda: bool(h.dropped), 5, "a packet of layer h lost")
        (lost,) = h.dropped
        await until(lambda: lost in h.retransmitted, 10, "a NACK of the lost packet, answered")
        assert all(ssrc == h.ssrc for ssrc, _lost in alice.nacks), "NACKs name the layer that lost"
        assert any(lost in seqs for _ssrc, seqs in alice.nacks)
        layer = layers_by_rid(pub)["h"]
        await until(partial(recovered, layer, lost), 10, "the retransmission in layer h's history")
        check_identical(alice, pub)

        # Without the mid/rid extensions (established SSRCs): the RTX SSRC is known by now.
        alice.send_rids = False
        h.drop_next = True
        await until(lambda: len(h.dropped) == 2, 5, "another packet of layer h lost")
        await until(partial(recovered, layer, h.dropped[1]), 10, "its retransmission, without a rid")
        assert all(ssrc == h.ssrc for ssrc, _lost in alice.nacks)
        check_identical(alice, pub)

    run(scenario)


def test_keyframe_request_of_one_layer_names_its_ssrc() -> None:
    async def scenario(hub: Hub) -> None:
        alice = SimulcastPublisher(hub, "alice", screen=True)
        await alice.join()
        pub = publication(hub, "alice", alice.camera_mid)
        await packets_later(pub, 20, "the layers' SSRCs learned")
        for rid in ("f", "q"):
            layers_by_rid(pub)[rid].request_keyframe()
            ssrc = alice.layer(rid).ssrc
            await until(lambda s=ssrc: s in alice.plis, 5, f"a PLI for layer {rid}")  # type: ignore[misc]
        assert alice.layer("h").ssrc not in alice.plis

    run(scenario)


# --- bad simulcast -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rids, line, expected",
    [
        (["q", "h", "f", "z"], "a=simulcast:send q;h;f;z", ["q", "h", "f"]),  # too many: the first three
        (["q", "h"], "a=simulcast:send q;x;h;q", ["q", "h"]),  # undeclared x, duplicate q
        (["q", "h"], "a=simulcast:send ~q;h,x", ["q", "h"]),  # paused, alternatives
        (["q", "h"], "a=simulcast:send q;h recv", ["q", "h"]),  # a direction without its list
        (["q", "h"], "a=simulcast:garbage", []),  # no send list: a single encoding
    ],
    ids=["too-many", "unknown-and-duplicate", "paused-and-alternatives", "dangling", "unparsable"],
)
def test_malformed_simulcast_is_answered_with_what_is_usable(
    rids: list[str], line: str, expected: list[str]
) -> None:
    async def scenario(hub: Hub) -> None:
        alice = SimulcastPublisher(hub, "alice", screen=True)
        alice.layers = [layer for layer in alice.layers if layer.rid in expected]  # sends only these
        await alice.join(simulcast_line=line, rids=rids)
        camera = section(alice.answer_sdp, alice.camera_mid)
        answered = [x for x in camera if x.startswith(("a=rid:", "a=simulcast:"))]
        if expected:
            assert answered == [f"a=rid:{rid} recv" for rid in expected] + [
                "a=simulcast:recv " + ";".join(expected)
            ]
        else:
            assert answered == []
        pub = publication(hub, "alice", alice.camera_mid)
        assert [layer.rid for layer in pub.layers] == ([*expected] if expected else [None])
        if len(expected) > 1:
            await packets_later(pub, 20, "packets on every accepted layer")
            check_identical(alice, pub)

    run(scenario)


def test_offered_rids_parsing() -> None:
    def offer(*lines: str, kind: str = "video", direction: str = "sendonly") -> str:
        body = "\r\n".join(("a=mid:1", f"a={direction}", *lines))
        return f"v=0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm={kind} 9 UDP/TLS/RTP/SAVPF 96\r\n{body}\r\n"

    declared = ("a=rid:q send", "a=rid:h send pt=96;max-width=640", "a=rid:f send", "a=rid:r recv")
    assert simulcast.offered_rids(offer(*declared, "a=simulcast:send q;h;f")) == {"1": ("q", "h", "f")}
    assert simulcast.offered_rids(offer(*declared, "a=simulcast:recv r send f;q")) == {"1": ("f", "q")}
    assert simulcast.offered_rids(offer(*declared, "a=simulcast:send r;q")) == {"1": ("q",)}  # r: recv
    assert simulcast.offered_rids(offer("a=rid:a*b send", "a=simulcast:send a*b")) == {}  # not a RID
    assert simulcast.offered_rids(offer(*declared)) == {}  # rids without simulcast
    assert simulcast.offered_rids(offer(*declared, "a=simulcast:")) == {}
    assert simulcast.offered_rids(offer(*declared, "a=simulcast:send ;;,~")) == {}
    assert simulcast.offered_rids(offer(*declared, "a=simulcast:send q;h", kind="audio")) == {}
    assert simulcast.offered_rids(offer(*declared, "a=simulcast:send q;h", direction="recvonly")) == {}
    munged = simulcast.with_simulcast(offer("a=rid:x send", "a=simulcast:send x"), {"1": ("q", "h")})
    assert munged.endswith(
        "a=mid:1\r\na=sendonly\r\na=rid:q recv\r\na=rid:h recv\r\na=simulcast:recv q;h\r\n"
    )
    assert simulcast.with_simulcast(offer(), {}) == offer()


# --- the internals guard -----------------------------------------------------------------------


def _stream_ids_unparsed(mp: pytest.MonkeyPatch) -> None:
    stock = aiortc.rtp.HeaderExtensionsMap.get

    def get(self: Any, profile: int, value: bytes) -> Any:
        found = stock(self, profile, value)
        found.rtp_stream_id = None
        return found

    mp.setattr(aiortc.rtp.HeaderExtensionsMap, "get", get)


@pytest.mark.parametrize(
    "remove, named",
    [
        (
            lambda mp: mp.delattr(aiortc.rtcdtlstransport.RtpRouter, "route_rtp"),
            "aiortc.rtcdtlstransport.RtpRouter.route_rtp",
        ),
        (_stream_ids_unparsed, "no longer parses mid/rtp-stream-id"),
        (
            lambda mp: mp.setattr(aiortc.rtcdtlstransport.RtpRouter, "__init__", lambda self: None),
            "RtpRouter instances lack mid_table",
        ),
    ],
    ids=["router-route", "stream-id-extension", "router-tables"],
)
def test_simulcast_internals_are_guarded(
    monkeypatch: pytest.MonkeyPatch, remove: Callable[[pytest.MonkeyPatch], None], named: str
) -> None:
    compat.check()
    remove(monkeypatch)
    with pytest.raises(compat.CompatibilityError, match=named.replace(".", r"\.")):
        compat.check()


def test_the_transport_parses_the_layer_ids_as_soon_as_an_offer_is_applied() -> None:
    """The simulcast ids reach the transport's header extension map with the negotiation itself.

    aiortc fills that map when a receiver starts, from its parameters then; a receiver that
    started inside ``setRemoteDescription`` (DTLS completing during a renegotiation) saw them
    before ``accept_extensions`` added them, and that publication's layers were unroutable for
    good (bench/room.py: one camera in five never forwarded).
    """

    async def scenario() -> None:
        client = aiortc.RTCPeerConnection()
        relay = aiortc.RTCPeerConnection()
        try:
            camera = client.addTransceiver("video", direction="sendonly")
            await client.setLocalDescription(await client.createOffer())
            sdp = chrome_simulcast_offer(client.localDescription.sdp, str(camera.mid), ["q", "h", "f"])
            await relay.setRemoteDescription(aiortc.RTCSessionDescription(sdp=sdp, type="offer"))
            forwarding.accept_extensions(relay, sdp)
            (transceiver,) = relay.getTransceivers()
            extension_map = transceiver.receiver.transport._rtp_header_extensions_map
            sent_map = aiortc.rtp.HeaderExtensionsMap()
            sent_map.configure(
                aiortc.RTCRtpParameters(
                    headerExtensions=[aiortc.RTCRtpHeaderExtensionParameters(id=RID_ID, uri=simulcast.RID_URI)]
                )
            )
            packet = aiortc.rtp.RtpPacket(payload_type=96, sequence_number=1, timestamp=1, ssrc=5)
            packet.extensions.rtp_stream_id = "h"
            parsed = aiortc.rtp.RtpPacket.parse(packet.serialize(sent_map), extension_map)
            assert parsed.extensions.rtp_stream_id == "h"
        finally:
            await client.close()
            await relay.close()

    asyncio.run(scenario())
