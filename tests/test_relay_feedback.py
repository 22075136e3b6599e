"""Transport-wide cc with subscribers (meet/relay/compat/feedback.py), through real aiortc peers.

A "relay" ``RTCPeerConnection`` uses the module as the relay's peer code does; the client is a
second aiortc peer whose descriptions are edited to carry transport-cc as Chrome's do (aiortc
itself does not negotiate it). Media goes over loopback (``meet.relay.ice``, process-wide).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpHeaderExtensionParameters, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack
from aiortc.rtcrtpparameters import RTCRtcpFeedback
from aiortc.rtp import RtcpRrPacket, RtcpRtpfbPacket
from aiortc.sdp import SessionDescription

from meet.relay import compat, ice
from meet.relay.compat import feedback, forwarding
from meet.relay.compat.feedback import URI
from meet.relay.twcc import build_feedback, rtcp_packet

CLIENT_ID = 3  # Chrome's id for the extension


@pytest.fixture(autouse=True)
def _loopback_ice() -> Iterator[None]:
    ice.configure_ice(["127.0.0.1"], None)
    yield
    ice.reset_ice()


def with_transport_cc(sdp: str, ext_id: int = CLIENT_ID) -> str:
    """A client description edited as Chrome writes it: the extmap and rtcp-fb on video m-lines."""
    description = SessionDescription.parse(sdp)
    for media in description.media:
        if media.kind != "video":
            continue
        media.rtp.headerExtensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=URI))
        for codec in media.rtp.codecs:
            if codec.mimeType.lower() != "video/rtx":
                codec.rtcpFeedback = [*codec.rtcpFeedback, RTCRtcpFeedback(type="transport-cc")]
    return str(description)


def sections(sdp: str) -> list[str]:
    """The text of each m-line section."""
    return ["m=" + part for part in sdp.split("\r\nm=")[1:]]


def vp8_type(section: str) -> int:
    line = next(line for line in section.splitlines() if "VP8/90000" in line)
    return int(line.split(":")[1].split()[0])


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def connected(*pcs: RTCPeerConnection) -> None:
    async def both() -> None:
        while any(pc.connectionState != "connected" for pc in pcs):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(both(), 20)


def test_answer_keeps_transport_cc_on_every_video_m_line_and_feedback_reaches_the_callback() -> None:
    async def scenario() -> None:
        relay, client = new_pc(), new_pc()
        try:
            client.addTransceiver("video", direction="recvonly")  # a subscription
            client.addTransceiver("video", direction="sendonly")  # a publication
            await client.setLocalDescription(await client.createOffer())
            offer = with_transport_cc(client.localDescription.sdp)
            await relay.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            feedback.accept_transport_cc(relay, offer)
            relay.getTransceivers()[0].direction = "sendonly"  # as the relay plans a subscription
            relay.getTransceivers()[0].sender.replaceTrack(VideoStreamTrack())  # so it is started
            await relay.setLocalDescription(await relay.createAnswer())
            answer = relay.localDescription.sdp

            subscription, publication = sections(answer)
            assert f"a=extmap:{CLIENT_ID} {URI}" in subscription
            assert f"a=rtcp-fb:{vp8_type(subscription)} transport-cc" in subscription
            # A publication too: the browser then estimates its uplink from the relay's feedback.
            assert f"a=extmap:{CLIENT_ID} {URI}" in publication
            assert f"a=rtcp-fb:{vp8_type(publication)} transport-cc" in publication
            sending = relay.getTransceivers()[0]
            assert forwarding.negotiated_extensions(sending)[URI] == CLIENT_ID

            await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await connected(relay, client)
            await deliver_feedback(relay, client)
        finally:
            await client.close()
            await relay.close()

    asyncio.run(scenario())


async def deliver_feedback(relay: RTCPeerConnection, client: RTCPeerConnection) -> None:
    """A compound RTCP packet from the client: RR, TWCC, NACK; then TWCC with padding, a short one."""
    sender = relay.getTransceivers()[0].sender
    received: list[tuple[bytes, float]] = []
    stock: list[Any] = []
    arrived = asyncio.Event()
    recorded = sender._handle_rtcp_packet

    async def record(packet: Any) -> None:
        stock.append(packet)
        await recorded(packet)

    sender._handle_rtcp_packet = record  # type: ignore[method-assign]

    def on_feedback(fci: bytes, arrival: float) -> None:
        received.append((fci, arrival))
        arrived.set()

    feedback.on_transport_feedback(sender.transport, on_feedback)
    feedback.on_transport_feedback(sender.transport, on_feedback)  # idempotent: one delivery each

    fci = build_feedback(65_530, [100.0, None, 100.01, 100.5, None, None, 101.0, 100.2], 9)
    ssrc = 0x01020304  # the client's RTCP ssrc: any
    compound = (
        bytes(RtcpRrPacket(ssrc=ssrc, reports=[]))
        + rtcp_packet(fci, ssrc, sender._ssrc)
        + bytes(RtcpRtpfbPacket(fmt=1, ssrc=ssrc, media_ssrc=sender._ssrc, lost=[42]))
    )
    dtls = client.getTransceivers()[0].receiver.transport
    await dtls._send_rtp(compound)
    await asyncio.wait_for(arrived.wait(), 10)
    assert [f for f, _ in received] == [fci]
    assert time.time() - 10 < received[0][1] <= time.time()  # the arrival, in seconds
    for _ in range(100):  # the stock handler runs right after ours, in the same task
        if stock:
            break
        await asyncio.sleep(0.01)
    assert [type(p).__name__ for p in stock] == ["RtcpRtpfbPacket"]
    assert stock[0].fmt == 1 and stock[0].lost == [42]  # the NACK, and no FMT 15 misread as one

    arrived.clear()
    padded = bytearray(rtcp_packet(fci, ssrc, sender._ssrc) + b"\x00\x00\x00\x04")
    padded[0] |= 0x20
    padded[2:4] = (len(padded) // 4 - 1).to_bytes(2, "big")
    short = bytes([0x80 | 15, 205, 0, 1]) + b"\x00" * 4  # no room for SSRCs and FCI
    await dtls._send_rtp(short + bytes(padded))
    await asyncio.wait_for(arrived.wait(), 10)
    assert [f for f, _ in received] == [fci, fci]


def test_offer_and_answer_carry_transport_cc_on_video() -> None:
    async def scenario() -> None:
        relay, client = new_pc(), new_pc()
        try:
            relay.addTransceiver("audio", direction="sendonly")
            relay.addTransceiver("video", direction="sendonly")  # a subscriber slot
            relay.addTransceiver("video", direction="recvonly")  # a publication of the client's
            await relay.setLocalDescription(await relay.createOffer())
            ids = {"urn:ietf:params:rtp-hdrext:sdes:mid": 1}
            offer = feedback.offer_transport_cc(relay.localDescription.sdp, feedback.transport_cc_id(ids))
            audio, slot, receiving = sections(offer)
            assert f"a=extmap:{feedback.DEFAULT_ID} {URI}" in slot
            assert f"a=rtcp-fb:{vp8_type(slot)} transport-cc" in slot
            assert URI not in audio and f"a=rtcp-fb:{vp8_type(receiving)} transport-cc" in receiving

            await client.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await client.setLocalDescription(await client.createAnswer())
            answer = with_transport_cc(client.localDescription.sdp, feedback.DEFAULT_ID)
            await relay.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            feedback.accept_transport_cc(relay, answer)
            slot_transceiver = relay.getTransceivers()[1]
            assert forwarding.negotiated_extensions(slot_transceiver)[URI] == feedback.DEFAULT_ID
            vp8 = next(c for c in slot_transceiver._codecs if c.mimeType.lower() == "video/vp8")
            assert RTCRtcpFeedback(type="transport-cc") in vp8.rtcpFeedback
            assert forwarding.negotiated_extensions(relay.getTransceivers()[2])[URI] == feedback.DEFAULT_ID
        finally:
            await client.close()
            await relay.close()

    asyncio.run(scenario())


def test_the_id_is_the_clients_or_a_free_one() -> None:
    assert feedback.transport_cc_id({URI: 3}) == 3
    ids = {"a": 1, "b": 5}
    assert feedback.transport_cc_id(ids) == 2 and ids[URI] == 2
    with pytest.raises(ValueError, match="no one-byte header extension id"):
        feedback.transport_cc_id({str(i): i for i in range(1, 15)})


def test_the_guard_names_the_sdp_support(monkeypatch: pytest.MonkeyPatch) -> None:
    compat.check()
    monkeypatch.setattr(SessionDescription, "parse", _without_rtcp_feedback(SessionDescription.parse))
    with pytest.raises(compat.CompatibilityError, match="transport-cc"):
        compat.check()


def _without_rtcp_feedback(parse: Any) -> Any:
    def parse_dropping(sdp: str) -> Any:
        description = parse(sdp)
        for media in description.media:
            for codec in media.rtp.codecs:
                codec.rtcpFeedback = []
        return description

    return parse_dropping
