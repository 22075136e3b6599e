"""Receive slots seen from a real call page: a relay room where one Chromium page decodes
exactly the tiles its layout shows, whatever the layout.

One call page (alice) and aiortc publishers through the real server (tests/relay_client.py:
each really encodes a 160×120 VP8 camera of its own colour and an Opus tone; they send an
empty `view`, so they receive no video). Five people first, alice's page pinning one of them in
a short window: two tiles of other people shown. Then eight: the speaker view, the grid, a
change of loudest voices, and the grid paged on a phone. At each step the page's getStats
decodes frames on exactly the video slots (mapped through `tracks`) of the publishers its
`view` lists, each tile shows its own publisher's picture and never another's (the colour of
every frame it presents), and a voice moving between audio slots does not reload any picture.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy
import pytest
import relay_client
import trio
from av import VideoFrame
from browser import open_page as browser_page
from browser import poll, run_scenario
from conftest import PASSWORD, Outbox, login, make_config
from relay_client import AsyncioThread, RelayClient
from relay_peers import SyntheticVideo
from test_browser_call import make_users

from meet.config import Config
from meet.relay import ice
from meet.server import RunningServer

pytestmark = pytest.mark.browser

LOOPBACK = ["127.0.0.1"]
FIRST = ("bea", "cyd", "dov", "eli")  # with alice: five people
LATER = ("fay", "gus", "hal")  # eight
HUES = {name: round(360 * i / 7) for i, name in enumerate(FIRST + LATER)}  # each camera's colour (degrees)
CHROMA = 60  # how far each camera's (U, V) is from grey, towards its hue
SHORT = {"width": 1400, "height": 416}  # the pinned tile and a strip of two whole tiles (mine first)
LAPTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 780}  # four tiles a page, my camera floating


@pytest.fixture
def config(tmp_path: Any) -> Config:
    return make_config(
        tmp_path, auth={"mail_max_per_window": 50}, rtc={"relay": "always", "host_addresses": LOOPBACK}
    )


class ColourVideo(SyntheticVideo):
    """A camera of one colour (its hue: ``shade`` degrees) whose brightness pattern moves: the
    page can tell whose picture a tile presents from the colour of each frame."""

    async def recv(self) -> VideoFrame:
        frame = await super().recv()  # the pacing, the moving pattern (luma)
        height, width = self.height, self.width
        luma = frame.to_ndarray()[:height]
        luma = 96 + (luma.astype(numpy.uint16) % 64)  # mid-grey: the colour is not clipped
        angle = math.radians(self.shade)
        u, v = 128 + CHROMA * math.cos(angle), 128 + CHROMA * math.sin(angle)
        chroma = numpy.empty((height // 2, width), numpy.uint8)
        chroma[: height // 4], chroma[height // 4 :] = round(u), round(v)
        out = VideoFrame.from_ndarray(numpy.vstack([luma.astype(numpy.uint8), chroma]), format="yuv420p")
        out.pts, out.time_base = frame.pts, frame.time_base
        return out


@pytest.fixture
def aio(monkeypatch: pytest.MonkeyPatch) -> Iterator[AsyncioThread]:
    """The asyncio loop of the aiortc publishers (cameras of one colour each), their ICE on
    loopback only."""
    monkeypatch.setattr(relay_client, "SyntheticVideo", ColourVideo)
    ice.configure_ice(LOOPBACK, None)
    thread = AsyncioThread()
    try:
        yield thread
    finally:
        thread.close()
        ice.reset_ice()


@asynccontextmanager
async def publishers(server: RunningServer, aio: AsyncioThread, code: str) -> AsyncIterator[Any]:
    """``join(name, token, loud)`` → a RelayClient in room ``code``, publishing until the block ends."""
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def hold(name: str, token: str, loud: bool, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            async with relay_client.relay_client(server.url, code, token, aio, name=name, shade=HUES[name], loud=loud) as c:
                task_status.started(c)
                await done.wait()

        async def join(name: str, token: str, loud: bool) -> RelayClient:
            client: RelayClient = await nursery.start(hold, name, token, loud)
            await client.send({"type": "view", "tiles": []})  # no video for them: CPU for the page
            return client

        try:
            yield join
        finally:
            done.set()


# In the page: each remote tile's presented frames are counted, and the colour of every frame
# shown (not hidden as "no-picture") is checked against the tile's publisher; `emptied` on a
# video element (its MediaStream replaced or removed) is counted per peer.
WATCH_JS = """(shades) => {
  if (window.slotWatch) {  // already watching: newcomers' colours, and their tiles
    Object.assign(window.slotWatch.shades, shades);
    window.slotWatch.scan();
    return;
  }
  const w = (window.slotWatch = {wrong: [], frames: {}, emptied: {}, shades: {...shades}});
  const canvas = document.createElement("canvas");
  canvas.width = 32;
  canvas.height = 24;
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  const hue = (video) => {  // the angle of the picture's mean (U, V), in degrees
    ctx.drawImage(video, 0, 0, 32, 24);
    const d = ctx.getImageData(0, 0, 32, 24).data;
    let u = 0, v = 0;
    for (let i = 0; i < d.length; i += 4) {
      u += -0.169 * d[i] - 0.331 * d[i + 1] + 0.5 * d[i + 2];
      v += 0.5 * d[i] - 0.419 * d[i + 1] - 0.081 * d[i + 2];
    }
    return u || v ? (Math.atan2(v, u) * 180) / Math.PI : null;
  };
  const apart = (a, b) => Math.abs((((a - b) % 360) + 540) % 360 - 180);
  const watch = (tile) => {
    const video = tile.querySelector("video");
    const peer = tile.dataset.peerId;
    if (!video || !peer || video.dataset.watched) return;
    video.dataset.watched = "1";
    video.addEventListener("emptied", () => { w.emptied[peer] = (w.emptied[peer] || 0) + 1; });
    const frame = () => {
      if (!tile.isConnected) return;
      video.requestVideoFrameCallback(frame);
      if (tile.classList.contains("no-picture") || tile.hidden) return;
      w.frames[peer] = (w.frames[peer] || 0) + 1;
      const got = hue(video);
      if (got !== null && apart(got, w.shades[peer]) > 20) w.wrong.push({peer, got: Math.round(got), want: w.shades[peer]});
    };
    video.requestVideoFrameCallback(frame);
  };
  w.scan = () => document.querySelectorAll("#stage .tile[data-peer-id]:not(.screen)").forEach(watch);
  new MutationObserver(w.scan).observe(document.querySelector("#stage"), {childList: true, subtree: true});
  w.scan();
}"""

# Over one second: the video m-lines whose framesDecoded grew, as "publisher:source" from the
# latest `tracks` (an m-line decoding that `tracks` does not map: "?mid").
DECODING_JS = """async () => {
  const link = window.meetCall.relay.link;
  const decoded = async () => {
    const out = {};
    (await link.pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") out[s.mid] = s.framesDecoded || 0;
    });
    return out;
  };
  const before = await decoded();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const after = await decoded();
  const growing = [];
  for (const [mid, frames] of Object.entries(after)) {
    if (frames < (before[mid] || 0) + 3) continue;
    const info = link.trackMap.get(mid);
    growing.push(info ? `${info.publisher}:${info.source}` : `?${mid}`);
  }
  const receiving = ["recvonly", "sendrecv"];  // not my own camera (sendonly)
  const videos = link.pc.getTransceivers().filter((t) => t.receiver.track.kind === "video" && receiving.includes(t.currentDirection));
  return {growing: growing.sort(), videoLines: videos.length};
}"""


def voices(page: Any) -> list[str]:
    """The publishers of the page's audio slots now (from `tracks`)."""
    script = """[...window.meetCall.relay.link.trackMap.values()]
      .filter((i) => i.source === "audio").map((i) => i.publisher).sort()"""
    return list(page.evaluate(script))


def view_of(page: Any) -> list[str]:
    """The other people's tiles the page shows (its `view`), as "publisher:source"."""
    script = """[...document.querySelectorAll('#stage .tile[data-peer-id]:not([hidden])')].filter((t) => {
      const strip = document.querySelector('#tiles');
      if (!strip.contains(t) || document.querySelector('#stage').dataset.layout !== 'spotlight') return true;
      const box = strip.getBoundingClientRect(), r = t.getBoundingClientRect();
      return r.bottom > box.top + 1 && r.top < box.bottom - 1 && r.right > box.left + 1 && r.left < box.right - 1;
    }).map((t) => `${t.dataset.peerId}:${t.classList.contains('screen') ? 'screen' : 'camera'}`).sort()"""
    return list(page.evaluate(script))


def decodes_what_it_shows(page: Any, views: list[list[dict[str, Any]]], count: int, what: str) -> list[str]:
    """The page shows ``count`` other people's tiles, the server got that `view`, and the page
    decodes those videos and no other; returns them."""

    def counted() -> list[str] | None:
        tiles = view_of(page)
        return tiles if len(tiles) == count else None

    shown = poll(counted, 10, f"{count} tiles shown ({what})")

    def sent() -> bool:
        return bool(views) and sorted(f"{t['peer_id']}:{t['source']}" for t in views[-1]) == shown

    poll(sent, 10, f"the view of {shown} sent ({what})")
    last: dict[str, Any] = {}

    def decoding() -> bool:
        last.update(page.evaluate(DECODING_JS))
        return bool(last["growing"] == shown)

    try:
        poll(decoding, 20, f"decoding exactly {shown} ({what})")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: the page decoded {last}") from None
    assert last["videoLines"] <= 9, last  # the video slots: no m-line per person
    pictures = page.evaluate(
        "[...document.querySelectorAll('#stage .tile[data-peer-id]:not(.screen):not(.no-picture)')]"
        ".map((t) => t.dataset.peerId + ':camera').sort()"
    )
    assert shown is not None and set(pictures) <= set(shown), (pictures, shown)  # the others: their avatar
    return shown


def names(page: Any) -> dict[str, str]:
    """peer id → username of the people the page knows."""
    script = "Object.fromEntries([...document.querySelectorAll('.tile[data-peer-id]:not(.screen)')]"
    script += ".map((t) => [t.dataset.peerId, t.querySelector('.tile-name').textContent]))"
    return dict(page.evaluate(script))


def watch_report(page: Any) -> dict[str, Any]:
    script = "({wrong: slotWatch.wrong, frames: slotWatch.frames, emptied: slotWatch.emptied})"
    return page.evaluate(script)  # type: ignore[no-any-return]


async def test_a_relay_page_decodes_exactly_the_tiles_it_shows_pinned_speaker_grid_and_pages(
    server: RunningServer,
    client: httpx.AsyncClient,
    outbox: Outbox,
    aio: AsyncioThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = await make_users(client, outbox, "alice", *FIRST, *LATER)
    base = server.url
    media = server.services.rooms.media
    views: list[list[dict[str, Any]]] = []  # the tiles of each `view` the server got from the page
    stock_view = media.view
    page_peer: list[str] = []

    async def recording(live: Any, peer: Any, message: Any) -> None:
        if page_peer and getattr(peer, "peer_id", None) == page_peer[0]:
            views.append(message.tiles)
        await stock_view(live, peer, message)

    monkeypatch.setattr(media, "view", recording)
    tokens = {name: await login(client, name) for name in FIRST + LATER}
    async with publishers(server, aio, code) as join:
        clients = {name: await join(name, tokens[name], name == "bea") for name in FIRST}
        to_page, from_trio = trio.open_memory_channel[str](1)
        to_trio, from_page = trio.open_memory_channel[str](1)
        token = trio.lowlevel.current_trio_token()

        def ask(what: str) -> None:  # from the page's thread: have the trio side do `what`
            trio.from_thread.run(to_trio.send, what, trio_token=token)
            trio.from_thread.run(from_trio.receive, trio_token=token)

        def scenario(browser: Any) -> dict[str, Any]:
            page = browser_page(browser, base, "alice", PASSWORD, viewport=SHORT)
            page.goto(f"{base}/r/{code}")
            page.click("#join-button")
            page.wait_for_selector("#call:not([hidden])")
            page_peer.append(str(poll(lambda: page.evaluate("window.meetCall.peerId()"), what="a peer id")))
            poll(lambda: len(names(page)) == 4, 20, "four other people")
            ids = {name: peer for peer, name in names(page).items()}
            page.evaluate(WATCH_JS, {ids[n]: HUES[n] for n in HUES if n in ids})

            # Five people; a short window, bea pinned: bea large, a strip of my camera and one more.
            page.click(f'.tile[data-peer-id="{ids["bea"]}"] .tile-pin')
            decodes_what_it_shows(page, views, 2, "bea pinned in a short window")

            ask("three more")
            poll(lambda: len(names(page)) == 7, 20, "seven other people")
            ids.update({name: peer for peer, name in names(page).items()})
            page.evaluate(WATCH_JS, {ids[n]: HUES[n] for n in HUES})  # the newcomers' tiles too
            page.click(f'.tile[data-peer-id="{ids["bea"]}"] .tile-pin')  # unpin
            page.set_viewport_size(LAPTOP)
            page.click("#toggle-speaker-view")
            poll(lambda: page.evaluate("document.querySelector('#screens .tile')?.dataset.peerId") == ids["bea"],
                 20, "bea, the one speaking, large")
            shown = decodes_what_it_shows(page, views, len(view_of(page)), "speaker view")
            assert 1 < len(shown) <= 7, shown

            # The grid: all seven (nine a page). The loudest voices change: the audio slots move,
            # and no picture reloads or blinks.
            page.click("#toggle-speaker-view")
            decodes_what_it_shows(page, views, 7, "the grid of eight")
            poll(lambda: voices(page) == sorted(ids[n] for n in ("bea", "cyd", "dov")), 10, "the first voices")
            before = watch_report(page)
            ask("new voices")
            poll(lambda: voices(page) == sorted(ids[n] for n in ("fay", "gus", "hal")), 15, "the new voices")

            def playing() -> dict[str, Any] | None:
                now = watch_report(page)
                grown = all(now["frames"].get(p, 0) >= before["frames"].get(p, 0) + 10 for p in ids.values())
                return now if grown else None

            after = poll(playing, 10, "every picture still playing")
            assert after is not None
            assert after["emptied"] == before["emptied"], (before["emptied"], after["emptied"])
            decodes_what_it_shows(page, views, 7, "the grid after the voices moved")

            # A phone: four tiles a page, "1 / 2"; the next page decodes its three, not the first four.
            page.set_viewport_size(PHONE)
            poll(lambda: page.inner_text("#page-label") == "1 / 2", 10, "two pages")
            first = decodes_what_it_shows(page, views, 4, "the first phone page")
            page.click("#page-next")
            second = decodes_what_it_shows(page, views, 3, "the second phone page")
            assert not set(first) & set(second)
            page.click("#page-prev")
            decodes_what_it_shows(page, views, 4, "the first phone page again")
            return {"errors": page.errors, "wrong": watch_report(page)["wrong"]}

        async def serve_page() -> None:
            while True:
                what = await from_page.receive()
                if what == "three more":
                    for name in LATER:
                        clients[name] = await join(name, tokens[name], False)
                elif what == "new voices":
                    for name, c in clients.items():
                        c.media.voice.loud = name in ("fay", "gus", "hal")
                await to_page.send("done")

        # bea must be the dominant speaker before the other voices start: three equal voices
        # starting together leave it to chance which one is judged first (and then kept).
        live = server.services.rooms.live[code]
        await clients["cyd"].wait_for(lambda: live.speaker == clients["bea"].peer_id, 30, "bea as the speaker")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_page)
            for name in ("cyd", "dov"):  # three voices at first: bea, cyd, dov
                clients[name].media.voice.loud = True
            try:
                result = await run_scenario(scenario)
            except AssertionError as exc:
                result = {"failure": exc}
            nursery.cancel_scope.cancel()
    if "failure" in result:
        raise result["failure"]
    assert result["errors"] == []
    assert result["wrong"] == [], result["wrong"]  # a tile showed someone else's picture
