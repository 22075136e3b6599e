"""Meetings through the relay (SFU) in headless Chromium: a room that outgrows mesh and switches
to the relay at its fifth page, a relay room of four pages, and screen sharing through the relay.

Every page is a real call page (web/js/call/relay.js) with Chromium's fake camera and microphone;
the relay is the real worker process the server starts, announcing 127.0.0.1 only.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import CHROMIUM_ARGS, poll, run_scenario
from conftest import Outbox, make_config
from test_browser_call import (
    BEEP_ENERGY,
    assert_audio_flowing,
    assert_video_flowing,
    join,
    make_users,
    open_page,
)

from meet.config import Config
from meet.server import RunningServer

pytestmark = pytest.mark.browser

NAMES = ("alice", "bob", "carol", "dave", "erin")
SWITCH = 30  # s: five pages renegotiating at once with the relay on two cores


@pytest.fixture
def config(tmp_path: Any, request: Any) -> Config:
    relay = getattr(request, "param", "always")
    return make_config(
        tmp_path,
        auth={"mail_max_per_window": 50},
        rtc={"relay": relay, "mesh_limit": 4, "host_addresses": ["127.0.0.1"]},
    )


def connections(page: Any) -> list[str]:
    """The peer ids of the page's RTCPeerConnections (["relay"] in relay mode)."""
    return list(page.evaluate("[...window.meetCall.peers().keys()]"))


def tile_width(page: Any, peer: str, screen: bool = False) -> int:
    """The decoded width of a remote tile's video (0 while it shows no picture)."""
    selector = f'.tile{".screen" if screen else ":not(.screen)"}[data-peer-id="{peer}"] video'
    return int(page.evaluate("(s) => { const v = document.querySelector(s); return v ? v.videoWidth : 0; }", selector))


AUDIO_SLOTS = 3  # [rtc] audio_slots, the default: a relay page hears the three loudest at once

# Relay mode: per receiving audio m-line (mid) of the relay connection, its packets and the
# energy of what was decoded — whoever the slot carries (the relay moves voices between slots).
INBOUND_VOICES_JS = """async () => {
  const out = {};
  const pc = window.meetCall.peers().get("relay");
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") out[s.mid] = {packets: s.packetsReceived || 0, energy: s.totalAudioEnergy || 0};
  });
  return out;
}"""


def assert_voices_flowing(page: Any, others: int, timeout: float = 20) -> None:
    """Relay mode: the page hears through its audio slots — at most AUDIO_SLOTS of them, and
    min(AUDIO_SLOTS, others) keep receiving packets — and what it decodes carries sound."""

    def voices() -> dict[str, dict[str, float]]:
        return page.evaluate(INBOUND_VOICES_JS)  # type: ignore[no-any-return]

    first = poll(voices, timeout, "audio slots")
    assert len(first) <= AUDIO_SLOTS, first
    wanted = min(AUDIO_SLOTS, others)

    def grew() -> bool:  # energy is cumulative: it grows only while sound is decoded
        now = voices()
        growing = [mid for mid in now if now[mid]["packets"] >= first.get(mid, {}).get("packets", 0) + 25]
        energy = sum(v["energy"] for v in now.values()) - sum(v["energy"] for v in first.values())
        return len(growing) >= wanted and energy >= BEEP_ENERGY

    poll(grew, timeout, f"{wanted} audio slots with sound")


def assert_everyone_decodes_everyone(pages: dict[str, Any], timeout: float = 20) -> None:
    """Each page keeps decoding the camera of every other page and shows it in its tile, and
    hears every other page's microphone (mesh) or the loudest of them (relay: its audio slots)."""
    for me, page in pages.items():
        others = [peer for peer in pages if peer != me]
        assert_video_flowing(page, others, timeout=timeout)
        if page.evaluate("window.meetCall.mode()") == "relay":
            assert_voices_flowing(page, len(others), timeout=timeout)
        else:
            assert_audio_flowing(page, others, timeout=timeout)
        for other in others:
            poll(lambda page=page, other=other: tile_width(page, other) > 0, timeout, f"{other}'s picture at {me}")


def join_all(browser: Any, base: str, code: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Signed-in pages joined one after the other: peer id → page."""
    pages: dict[str, Any] = {}
    for name in names:
        page = open_page(browser, base, name)
        pages[join(page, base, code)] = page
    return pages


def mesh_connections(page: Any) -> int:
    """How many mesh RTCPeerConnections the page still has (whatever the room's mode)."""
    return int(page.evaluate("window.meetCall.mesh.peers().size"))


def errors_of(pages: dict[str, Any]) -> list[str]:
    return [error for page in pages.values() for error in page.errors]


def tone_file(folder: Path) -> Path:
    """A 2-s 440 Hz tone (48 kHz mono, about -12 dBov) for Chromium's fake microphone, which
    loops it: everyone talks all the time (the default fake microphone only beeps briefly)."""
    path = folder / "tone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * i / 48000)) for i in range(96000))
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return path


AUDIO_SENT_RATE_JS = """async () => {
  const pc = window.meetCall.peers().get("relay");
  const sent = async () => {
    let packets = 0;
    (await pc.getStats()).forEach((r) => { if (r.type === "outbound-rtp" && r.kind === "audio") packets += r.packetsSent; });
    return packets;
  };
  const before = await sent();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return (await sent()) - before;
}"""


def audio_sent_per_second(page: Any) -> int:
    """Audio packets the page sent the relay over one second (measured in the page)."""
    return int(page.evaluate(AUDIO_SENT_RATE_JS))


def main_tiles(page: Any) -> list[str]:
    """The peer ids of the tiles in the stage's main area (spotlight and speaker view)."""
    return list(page.evaluate("[...document.querySelectorAll('#screens .tile')].map((t) => t.dataset.peerId)"))


def dominant_tiles(page: Any) -> list[str]:
    """The peer ids whose camera tile the page frames as the room's dominant speaker."""
    script = "[...document.querySelectorAll('.tile.dominant:not(.screen)')].map((t) => t.dataset.peerId)"
    return list(page.evaluate(script))


@pytest.mark.parametrize("config", ["auto"], indirect=True)
async def test_the_fifth_page_switches_the_room_to_the_relay_and_everyone_keeps_decoding(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, *NAMES)
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        pages = join_all(browser, base, code, NAMES[:4])
        for me, page in pages.items():
            assert page.evaluate("window.meetCall.mode()") == "mesh"
            assert sorted(connections(page)) == sorted(p for p in pages if p != me)
        assert_everyone_decodes_everyone(pages)

        fifth = open_page(browser, base, NAMES[4])
        pages[join(fifth, base, code)] = fifth
        for me, page in pages.items():
            poll(lambda page=page: page.evaluate("window.meetCall.mode()") == "relay", SWITCH, f"relay mode at {me}")
            poll(lambda page=page: connections(page) == ["relay"], SWITCH, f"the relay connection at {me}")
            assert mesh_connections(page) == 0, f"mesh connections left open at {me}"
        assert_everyone_decodes_everyone(pages, timeout=SWITCH)
        return {"errors": errors_of(pages)}

    result = await run_scenario(scenario)
    assert result["errors"] == []


async def test_four_pages_in_a_relay_room_share_a_screen_and_leave(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, tmp_path: Path
) -> None:
    code = await make_users(client, outbox, *NAMES[:4])
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        pages = join_all(browser, base, code, NAMES[:4])
        for page in pages.values():
            assert page.evaluate("window.meetCall.mode()") == "relay"
            assert connections(page) in ([], ["relay"])  # [] until the relay connection exists
        assert_everyone_decodes_everyone(pages, timeout=SWITCH)

        # Everyone's microphone plays the tone: the relay names one dominant speaker, and every
        # other page frames that person's tile, and only it (a glitch in someone's audio on a
        # busy machine may move the speaker once: what counts is that the pages agree).
        def agreed() -> str | None:
            marked = {me: dominant_tiles(page) for me, page in pages.items()}
            named = {peer for tiles in marked.values() for peer in tiles}
            if len(named) != 1:
                return None
            (speaker,) = named
            expected = {me: [] if me == speaker else [speaker] for me in pages}
            return speaker if marked == expected else None

        speaker = poll(agreed, SWITCH, "every page framing the same dominant speaker")

        # Speaker view, on a listener's page: the speaker's camera large, everyone else in the strip.
        listener_id = next(peer for peer in pages if peer != speaker)
        listener = pages[listener_id]
        listener.click("#toggle-speaker-view")
        poll(lambda: main_tiles(listener) == dominant_tiles(listener) != [], 10, "the speaker large")
        assert listener.get_attribute("#toggle-speaker-view", "aria-pressed") == "true"
        strip = listener.evaluate("[...document.querySelectorAll('#tiles .tile')].map((t) => t.dataset.peerId || 'me')")
        (large,) = main_tiles(listener)
        assert sorted(strip) == sorted(["me", *(p for p in pages if p not in (listener_id, large))]), strip
        listener.click("#toggle-speaker-view")
        poll(lambda: main_tiles(listener) == [], 10, "the grid again")

        # The relay asks for Opus DTX: a muted microphone (track.enabled = false: silence) sends
        # a packet every 400 ms or so instead of fifty a second, and fifty again once unmuted.
        quiet = pages[list(pages)[2]]
        poll(lambda: audio_sent_per_second(quiet) >= 30, 15, "fifty audio packets a second")
        quiet.click("#toggle-mic")
        poll(lambda: audio_sent_per_second(quiet) <= 10, 15, "a muted microphone's packets thinning out")
        quiet.click("#toggle-mic")
        poll(lambda: audio_sent_per_second(quiet) >= 30, 15, "the packets back after unmuting")

        ids = list(pages)
        sharer = ids[1]
        viewers = {peer: page for peer, page in pages.items() if peer != sharer}
        pages[sharer].click("#toggle-screen")
        for me, viewer in viewers.items():
            viewer.wait_for_selector(f'.tile.screen[data-peer-id="{sharer}"] video')
            assert_video_flowing(viewer, [sharer], streams=2)  # camera and screen
            poll(lambda viewer=viewer: tile_width(viewer, sharer, screen=True) > 0, what=f"the screen at {me}")
        pages[sharer].click("#toggle-screen")
        for me, viewer in viewers.items():
            poll(
                lambda viewer=viewer: viewer.query_selector(f'.tile.screen[data-peer-id="{sharer}"]') is None,
                what=f"the screen tile gone at {me}",
            )

        leaver = ids[3]
        pages[leaver].click("#leave")
        pages[leaver].wait_for_url("**/dashboard")
        staying = {peer: page for peer, page in pages.items() if peer != leaver}
        for me, page in staying.items():
            poll(lambda page=page: page.query_selector(f'.tile[data-peer-id="{leaver}"]') is None, what=f"tile gone at {me}")
            streams = page.evaluate("window.meetCall.relay.streams().map((s) => s.peerId)")
            assert leaver not in streams, streams
        assert_everyone_decodes_everyone(staying, timeout=SWITCH)
        return {"errors": errors_of(pages)}

    tone = f"--use-file-for-fake-audio-capture={tone_file(tmp_path)}"
    result = await run_scenario(scenario, [*CHROMIUM_ARGS, tone])
    assert result["errors"] == []
