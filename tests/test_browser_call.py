"""Meetings in headless Chromium with fake camera and microphone: mesh video between real
browsers, chat, mute indicators, screen sharing, leaving, and the call history."""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import pytest
from browser import open_page as browser_page
from browser import poll, run_scenario
from conftest import PASSWORD, Outbox, login, signup_verified
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer

pytestmark = pytest.mark.browser

# Per remote peer: the framesDecoded of each inbound video stream (camera, then screen). In relay
# mode there is one connection, "relay": its m-lines are attributed to their publishers by the
# relay's `tracks` map (m-lines it does not list carry nothing).
INBOUND_VIDEO_JS = """async () => {
  const out = {};
  const link = window.meetCall.relay && window.meetCall.relay.link;
  for (const [peerId, pc] of window.meetCall.peers()) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
      const info = peerId === 'relay' ? link && link.trackMap.get(s.mid) : {publisher: peerId};
      if (info) (out[info.publisher] = out[info.publisher] || []).push(s.framesDecoded || 0);
    });
  }
  return out;
}"""

# Per remote peer: inbound audio, summed over its streams — packets received and the energy of
# what was decoded (Chromium's fake microphone beeps, so a working call has energy > 0; silence
# or undecodable audio has none).
# A muted microphone still sends packets, with energy growing by ~1e-9; one beep adds ~0.1.
BEEP_ENERGY = 0.01
INBOUND_AUDIO_JS = """async () => {
  const out = {};
  const link = window.meetCall.relay && window.meetCall.relay.link;
  for (const [peerId, pc] of window.meetCall.peers()) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio') return;
      const info = peerId === 'relay' ? link && link.trackMap.get(s.mid) : {publisher: peerId};
      if (!info) return;
      const sum = (out[info.publisher] = out[info.publisher] || {packets: 0, energy: 0});
      sum.packets += s.packetsReceived || 0;
      sum.energy += s.totalAudioEnergy || 0;
    });
  }
  return out;
}"""


@pytest.fixture
def config(tmp_path: Any) -> Config:
    from conftest import make_config

    return make_config(tmp_path, auth={"mail_max_per_window": 50})


async def make_users(client: httpx.AsyncClient, outbox: Outbox, *names: str) -> str:
    """Verified accounts; returns a room code hosted by the first."""
    for name in names:
        await signup_verified(client, outbox, name, f"{name}@example.org")
    token = await login(client, names[0])
    r = await client.post("/api/rooms", json={"title": "Weekly sync"}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201
    return str(r.json()["room"]["code"])


def open_page(browser: Any, base: str, name: str) -> Any:
    """A signed-in page in its own browser context (own cookies)."""
    return browser_page(browser, base, name, PASSWORD)


def prejoin_checks(page: Any) -> dict[str, Any]:
    """What the pre-join screen shows: camera preview, a moving microphone level, devices."""
    poll(lambda: page.evaluate("document.querySelector('#prejoin-video').videoWidth > 0"), what="a camera preview")
    levels = set()

    def level_moves() -> bool:
        levels.add(page.get_attribute("#mic-level", "data-level"))
        return len(levels) >= 3

    poll(level_moves, what="the microphone level meter moving")
    # The markup's placeholder option ("Default camera", later "No camera found") has no value:
    # count only options that name a real device.
    devices = "(s) => [...document.querySelectorAll(s + ' option')].filter((o) => o.value).length"
    return {
        "cameras": poll(lambda: page.evaluate(devices, "#camera-select:enabled"), what="cameras listed"),
        "mics": poll(lambda: page.evaluate(devices, "#mic-select:enabled"), what="microphones listed"),
    }


JOIN_READY_MS = 30_000
PAGE_STATE_JS = """() => ({
  url: location.href,
  ready: document.readyState,
  text: document.body ? document.body.innerText.slice(0, 400) : null,
  unanswered: performance.getEntriesByType("resource").filter((r) => !r.responseEnd).map((r) => r.name),
  resources: performance.getEntriesByType("resource").map((r) => r.name.split("/").slice(3).join("/")).slice(-12),
})"""


def join(page: Any, base: str, code: str, checks: dict[str, Any] | None = None) -> str:
    """Pre-join, then join; returns my peer id."""
    page.goto(f"{base}/r/{code}")
    try:
        page.wait_for_selector("#join-button:enabled", timeout=JOIN_READY_MS)
    except PlaywrightTimeout:
        # A second Chromium inside a shaped network namespace, in CI with the whole suite, now
        # and then stays on "Opening the meeting…" with a request of the page never answered
        # (cause not found; never seen alone or with loopback pages). Loading the page again
        # gets it going; a page that does not get there twice fails, saying where it stood.
        first = page.evaluate(PAGE_STATE_JS)
        warnings.warn(f"the pre-join screen did not come; loading the page again: {first}", stacklevel=2)
        page.reload()
        try:
            page.wait_for_selector("#join-button:enabled", timeout=JOIN_READY_MS)
        except PlaywrightTimeout as exc:
            state = page.evaluate(PAGE_STATE_JS)
            raise AssertionError(f"the pre-join screen never offered to join: {first}, then {state}") from exc
    if checks is not None:
        checks.update(prejoin_checks(page))
    page.click("#join-button")
    page.wait_for_selector("#call:not([hidden])")
    return str(poll(lambda: page.evaluate("window.meetCall.peerId()"), what="a peer id"))


def video_frames(page: Any) -> dict[str, list[int]]:
    return page.evaluate(INBOUND_VIDEO_JS)  # type: ignore[no-any-return]


def assert_video_flowing(page: Any, peers: list[str], streams: int = 1, timeout: float = 20) -> None:
    """Every listed peer sends ``streams`` videos that this page keeps decoding."""

    def started() -> dict[str, list[int]] | None:
        frames = video_frames(page)
        ok = all(len([f for f in frames.get(p, []) if f > 0]) >= streams for p in peers)
        return frames if ok else None

    first = poll(started, timeout=timeout, what=f"video from {peers}")

    def grew() -> bool:
        now = video_frames(page)
        return all(
            sum(1 for a, b in zip(first[p], now.get(p, [])) if b >= a + 5) >= streams for p in peers
        )

    poll(grew, timeout=timeout, what=f"frames decoded growing for {peers}")


def assert_audio_flowing(page: Any, peers: list[str], timeout: float = 20) -> None:
    """Every listed peer's microphone reaches this page: packets keep arriving and what is
    decoded carries sound (``totalAudioEnergy`` grows past 0: the fake microphone beeps)."""

    def audio() -> dict[str, dict[str, float]]:
        return page.evaluate(INBOUND_AUDIO_JS)  # type: ignore[no-any-return]

    def arriving() -> dict[str, dict[str, float]]:
        now = audio()
        return now if all(now.get(p, {}).get("packets", 0) > 0 for p in peers) else {}

    first = poll(arriving, timeout=timeout, what=f"audio packets from {peers}")

    def grew() -> bool:  # energy is cumulative: it grows only while sound is decoded
        now = audio()
        return all(
            now[p]["packets"] >= first[p]["packets"] + 25 and now[p]["energy"] >= first[p]["energy"] + BEEP_ENERGY
            for p in peers
        )

    poll(grew, timeout=timeout, what=f"audio with sound from {peers}")


def tile_has_class(page: Any, peer: str, cls: str) -> bool:
    return bool(
        page.evaluate(
            "([p, c]) => { const t = document.querySelector(`.tile:not(.screen)[data-peer-id=\"${p}\"]`);"
            " return !!t && t.classList.contains(c); }",
            [peer, cls],
        )
    )


def chat_texts(page: Any) -> list[str]:
    return page.evaluate(  # type: ignore[no-any-return]
        "[...document.querySelectorAll('.chat-message .chat-text')].map((e) => e.textContent)"
    )


async def test_two_people_see_hear_chat_mute_leave_and_find_it_in_history(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice, bob = open_page(browser, base, "alice"), open_page(browser, base, "bob")
        prejoin: dict[str, Any] = {}
        a, b = join(alice, base, code, prejoin), join(bob, base, code)
        assert_video_flowing(alice, [b])
        assert_video_flowing(bob, [a])
        assert_audio_flowing(alice, [b])
        assert_audio_flowing(bob, [a])

        # The signaling socket drops: the page reconnects by itself and media comes back.
        bob.evaluate("window.meetCall.client.ws.close(4000, 'network blip')")
        b = str(poll(lambda: (pid := bob.evaluate("window.meetCall.peerId()")) != b and pid, what="a new peer id"))
        assert_video_flowing(alice, [b])
        assert_video_flowing(bob, [a])
        assert_audio_flowing(alice, [b])

        alice.click("#toggle-chat")
        alice.fill("#chat-input", "hello from alice")
        alice.press("#chat-input", "Enter")
        for page in (alice, bob):
            poll(lambda page=page: "hello from alice" in chat_texts(page), what="the chat message")

        bob.click("#toggle-mic")
        poll(lambda: tile_has_class(alice, b, "muted"), what="bob's muted tile")
        bob.click("#toggle-mic")
        poll(lambda: not tile_has_class(alice, b, "muted"), what="bob unmuted")
        assert_audio_flowing(alice, [b])  # sound again after unmuting

        clock.advance(42)  # the server's wall clock: bob stays 42 s
        bob.click("#leave")
        bob.wait_for_url("**/dashboard")
        poll(lambda: alice.query_selector(f'.tile[data-peer-id="{b}"]') is None, what="bob's tile removed")
        bob.wait_for_selector(".call-item .call-duration")
        history = bob.context.request.get(f"{base}/api/calls").json()
        shown = bob.inner_text(".call-item .call-duration")
        return {"history": history, "shown": shown, "prejoin": prejoin, "errors": alice.errors + bob.errors}

    result = await run_scenario(scenario)
    [call] = result["history"]["calls"]
    assert call["room"]["code"] == code and call["duration_s"] == 42
    assert "0:00:42" in result["shown"]
    assert result["prejoin"]["cameras"] >= 1 and result["prejoin"]["mics"] >= 1
    assert result["errors"] == []


async def test_three_people_mesh_and_screen_share(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob", "carol")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        pages = [open_page(browser, base, name) for name in ("alice", "bob", "carol")]
        ids = [join(page, base, code) for page in pages]
        for page, me in zip(pages, ids):
            assert_video_flowing(page, [p for p in ids if p != me])

        alice, bob, carol = pages
        b = ids[1]
        bob.click("#toggle-screen")
        for viewer in (alice, carol):
            viewer.wait_for_selector(f'.tile.screen[data-peer-id="{b}"] video')
            assert_video_flowing(viewer, [b], streams=2)
            poll(
                lambda viewer=viewer: viewer.evaluate(
                    f"document.querySelector('.tile.screen[data-peer-id=\"{b}\"] video').videoWidth"
                ),
                what="a decoded screen picture",
            )
        bob.click("#toggle-screen")
        for viewer in (alice, carol):
            poll(
                lambda viewer=viewer: viewer.query_selector(f'.tile.screen[data-peer-id="{b}"]') is None,
                what="the screen tile gone",
            )
        return {"errors": [e for page in pages for e in page.errors]}

    result = await run_scenario(scenario)
    assert result["errors"] == []
