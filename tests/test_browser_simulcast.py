"""Simulcast from the call page in headless Chromium (web/js/call/encodings.js, relay.js), and
a subscriber browser on a network path of its own, shaped with `tc` (tests/netshape.py).

- In a relay room the camera goes out as three spatial layers (RIDs l, m, h: ¼, ½ and full
  size), measured from the sender's outbound-rtp statistics; camera off/on and a reconnect
  keep them; a screen goes out as one full-size layer (L1T3 when Chromium takes it). A 640×360
  camera (Chromium encodes two layers from it) still sends its full size, and the subscriber
  gets it. In a mesh room the camera stays one layer.
- The shaped path: a subscriber in its own network namespace (its page, socket and media
  through the veth pair) receives more than 1.5 times an 80 kbit/s cap before (the relay sends
  one camera at least its low layer and the microphone, ≈ 190 kbit/s), under the cap while a
  token bucket of that rate shapes its downlink (media and a download alike), and downloads at
  full speed again once the shaping is removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import CHROMIUM_ARGS, TIMEOUT_MS, poll, run_scenario
from browser import open_page as browser_page
from conftest import PASSWORD, Outbox, make_config
from netshape import ShapedPath, shaped_path
from test_browser_call import assert_video_flowing, join, make_users, open_page

from meet.config import Config
from meet.server import RunningServer

pytestmark = pytest.mark.browser

FRAMES = 10  # a layer "goes out" once it has encoded this many frames

# My camera's encodings and what each sends now: the camera sender of every connection (the
# relay's or each mesh peer's) → [{rid, width, frames, bytes, scalability}], plus its parameters.
CAMERA_OUT_JS = """async () => {
  const out = [];
  const cam = window.meetCall.media.video;
  for (const [peer, pc] of window.meetCall.peers()) {
    for (const sender of pc.getSenders()) {
      if (!sender.track || sender.track !== cam) continue;
      const layers = [];
      (await sender.getStats()).forEach((r) => {
        if (r.type === 'outbound-rtp') layers.push({rid: r.rid ?? null, width: r.frameWidth ?? 0,
          frames: r.framesEncoded ?? 0, bytes: r.bytesSent ?? 0, limit: r.qualityLimitationReason ?? null,
          available: r.targetBitrate ?? null});
      });
      const encodings = sender.getParameters().encodings.map((e) =>
        ({rid: e.rid ?? null, scale: e.scaleResolutionDownBy ?? 1, maxBitrate: e.maxBitrate ?? null}));
      out.push({peer, encodings, layers});
    }
  }
  return out;
}"""

# My screen's sender on the relay connection: its encodings and outbound-rtp.
SCREEN_OUT_JS = """async () => {
  const link = window.meetCall.relay.link;
  const tx = link && link.screenTx;
  if (!tx || !tx.sender.track) return null;
  const layers = [];
  (await tx.sender.getStats()).forEach((r) => {
    if (r.type === 'outbound-rtp') layers.push({rid: r.rid ?? null, width: r.frameWidth ?? 0,
      frames: r.framesEncoded ?? 0, scalability: r.scalabilityMode ?? null});
  });
  const encodings = tx.sender.getParameters().encodings.map((e) =>
    ({rid: e.rid ?? null, scale: e.scaleResolutionDownBy ?? 1, scalability: e.scalabilityMode ?? null}));
  return {encodings, layers, width: tx.sender.track.getSettings().width};
}"""

# What this page receives of `peer`'s camera on the relay connection, and the whole connection.
RECEIVED_JS = """async (peer) => {
  const link = window.meetCall.relay.link;
  const entry = window.meetCall.relay.streams().find((s) => s.peerId === peer && s.kind === 'camera');
  if (!link || !entry) return null;
  const out = {t: performance.now(), video: null, audio: null, transport: 0};
  const stats = await link.pc.getStats();
  const video = entry.stream.getVideoTracks()[0], audio = entry.stream.getAudioTracks()[0];
  stats.forEach((r) => {
    if (r.type === 'transport') out.transport += r.bytesReceived ?? 0;
    if (r.type !== 'inbound-rtp') return;
    if (video && r.trackIdentifier === video.id) out.video = {width: r.frameWidth ?? 0,
      frames: r.framesDecoded ?? 0, bytes: r.bytesReceived ?? 0, packets: r.packetsReceived ?? 0,
      lost: r.packetsLost ?? 0, freezes: r.freezeCount ?? 0, frozen: r.totalFreezesDuration ?? 0};
    if (audio && r.trackIdentifier === audio.id) out.audio = {packets: r.packetsReceived ?? 0,
      samples: r.totalSamplesReceived ?? 0, concealed: r.concealedSamples ?? 0};
  });
  return out;
}"""


@pytest.fixture
def config(tmp_path: Path, request: Any) -> Config:
    relay = getattr(request, "param", "always")
    return make_config(
        tmp_path,
        auth={"mail_max_per_window": 50},
        rtc={"relay": relay, "host_addresses": ["127.0.0.1"]},
    )


def camera_out(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(CAMERA_OUT_JS)  # type: ignore[no-any-return]


def relay_camera_layers(page: Any) -> dict[str | None, dict[str, Any]]:
    """The relay connection's camera sender now: rid → {width, frames, bytes}."""
    (sender,) = [s for s in camera_out(page) if s["peer"] == "relay"]
    return {layer["rid"]: layer for layer in sender["layers"]}


def three_layers(
    page: Any, since: dict[str | None, dict[str, Any]] | None = None, timeout: float = 60
) -> dict[str | None, int]:
    """Wait until l, m and h have each encoded FRAMES more frames than in ``since`` at ¼, ½
    and full width; returns rid → width. (The top layer goes out only while the relay's
    estimate of the publisher's uplink allows about 1 Mbit/s, which may come and go on a
    loaded machine: count frames over the whole wait rather than in one window.)"""
    before = since or {}

    def check() -> dict[str | None, int]:
        layers = relay_camera_layers(page)
        grown = all(
            rid in layers and layers[rid]["frames"] - before.get(rid, {}).get("frames", 0) >= FRAMES
            for rid in ("l", "m", "h")
        )
        widths = {rid: int(layer["width"]) for rid, layer in layers.items()}
        ok = grown and widths["h"] > 0 and widths["m"] * 2 == widths["h"] and widths["l"] * 4 == widths["h"]
        return widths if ok else {}

    return poll(check, timeout, "three camera layers going out")


async def test_relay_room_camera_goes_out_as_three_layers_and_keeps_them(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice, bob = open_page(browser, base, "alice"), open_page(browser, base, "bob")
        a = join(alice, base, code)
        join(bob, base, code)
        poll(lambda: alice.evaluate("window.meetCall.mode()") == "relay", what="relay mode")
        assert_video_flowing(bob, [a], timeout=25)
        first = three_layers(alice)
        capture = alice.evaluate("window.meetCall.media.video.getSettings().width")
        alice.click("#toggle-camera")  # off: the track is released …
        poll(lambda: alice.evaluate("window.meetCall.media.video") is None, what="the camera off")
        alice.click("#toggle-camera")  # … and on: a new track through replaceTrack
        poll(lambda: alice.evaluate("Boolean(window.meetCall.media.video)"), what="the camera on")
        again = three_layers(alice, since=relay_camera_layers(alice))
        encodings = camera_out(alice)[0]["encodings"]
        alice.evaluate("window.meetCall.relay.reconnect('a test reconnects')")  # a fresh peer and Link
        poll(lambda: alice.evaluate("window.meetCall.peerId()") not in (None, a), what="a new peer id")
        reconnected = three_layers(alice)
        alice.click("#toggle-screen")
        screen = poll(
            lambda: (s := alice.evaluate(SCREEN_OUT_JS)) and s["layers"] and s["layers"][0]["frames"] and s,
            what="the screen going out",
        )
        return {
            "first": first,
            "again": again,
            "reconnected": reconnected,
            "capture": capture,
            "encodings": encodings,
            "screen": screen,
            "errors": alice.errors + bob.errors,
        }

    r = await run_scenario(scenario)
    print(
        f"camera layers {r['first']} (capture width {r['capture']}), after camera off/on {r['again']},"
        f" after a reconnect {r['reconnected']}"
    )
    assert r["first"]["h"] == r["capture"]
    assert r["again"] == r["first"] and r["reconnected"] == r["first"]
    assert r["encodings"] == [
        {"rid": "l", "scale": 4, "maxBitrate": 150_000},
        {"rid": "m", "scale": 2, "maxBitrate": 500_000},
        {"rid": "h", "scale": 1, "maxBitrate": 1_500_000},
    ]
    screen = r["screen"]
    assert len(screen["encodings"]) == 1 and screen["encodings"][0]["scale"] == 1, screen
    assert screen["encodings"][0]["scalability"] == "L1T3", screen
    assert [layer["width"] for layer in screen["layers"]] == [screen["width"]], screen
    assert r["errors"] == []


# A smaller camera: every getUserMedia video request asks for exactly 640×360 (the fake device
# scales to any size).
SMALL_CAMERA_JS = """(() => {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => original(c && c.video
    ? {...c, video: {...(typeof c.video === 'object' ? c.video : {}), width: {exact: 640}, height: {exact: 360}}}
    : c);
})();"""


async def test_a_640_wide_camera_still_sends_its_full_size(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice, bob = open_page(browser, base, "alice"), open_page(browser, base, "bob")
        alice.context.add_init_script(SMALL_CAMERA_JS)
        a = join(alice, base, code)
        join(bob, base, code)
        capture = alice.evaluate("window.meetCall.media.video.getSettings().width")

        def two_layers() -> dict[str | None, dict[str, Any]]:
            layers = relay_camera_layers(alice)
            going = {rid: layer for rid, layer in layers.items() if layer["frames"] >= FRAMES}
            return layers if set(going) == {"l", "m"} else {}

        layers = poll(two_layers, 60, "two camera layers going out")

        def full_size() -> int:
            r = bob.evaluate(RECEIVED_JS, a)
            return int(r["video"]["width"]) if r and r["video"] and r["video"]["width"] == capture else 0

        received = poll(full_size, 60, "bob decoding the full size")
        return {
            "capture": capture,
            "layers": layers,
            "received": received,
            "encodings": camera_out(alice)[0]["encodings"],
            "errors": alice.errors + bob.errors,
        }

    r = await run_scenario(scenario)
    print(f"a {r['capture']}-wide camera: layers {r['layers']}, bob decodes {r['received']} wide")
    assert r["capture"] == 640
    assert {rid: layer["width"] for rid, layer in r["layers"].items() if layer["frames"]} == {
        "l": 320,
        "m": 640,
    }
    assert r["layers"].get("h", {"frames": 0})["frames"] == 0  # the third encoding inactive
    assert [e["scale"] for e in r["encodings"][:2]] == [2, 1]
    assert r["received"] == 640
    assert r["errors"] == []


# The `layers` messages this page received (their rids, oldest first), from the RoomClient.
RECORD_LAYERS_JS = """(() => {
  window.layersSeen = [];
  window.meetCall.client.addEventListener('layers', (e) => window.layersSeen.push(e.detail.rids));
})()"""

# The relay connection's camera sender: which rids are active now.
ACTIVE_RIDS_JS = """() => {
  const link = window.meetCall.relay.link;
  if (!link || !link.camTx) return null;
  return link.camTx.sender.getParameters().encodings.filter((e) => e.active).map((e) => e.rid);
}"""


def followed_layers(page: Any) -> list[str]:
    """The latest `layers` rids once they leave out a layer and the camera sender has exactly
    them active (else an empty list)."""
    seen = page.evaluate("window.layersSeen")
    rids = seen[-1] if seen else None
    if not rids or set(rids) >= {"l", "m", "h"}:
        return []
    active = page.evaluate(ACTIVE_RIDS_JS)
    return list(rids) if active == rids else []


async def test_a_publisher_pauses_the_layers_nobody_uses(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    """Dynacast end to end: bob's page is small, so his tile of alice's camera needs less than
    her top layer; the relay says so (`layers`), and alice's page turns the unused encodings off
    (setParameters), keeps them off across a camera off/on, and bob still sees her."""
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice = open_page(browser, base, "alice")
        bob = browser_page(browser, base, "bob", PASSWORD, viewport={"width": 360, "height": 640})
        a = join(alice, base, code)
        alice.evaluate(RECORD_LAYERS_JS)
        join(bob, base, code)
        assert_video_flowing(bob, [a], timeout=25)
        rids = poll(lambda: followed_layers(alice), 40, "alice sending only the layers the relay asked for")
        paused = sorted({"l", "m", "h"} - set(rids))
        alice.wait_for_timeout(500)  # frames already in the encoder when it was paused
        before = relay_camera_layers(alice)
        alice.wait_for_timeout(1500)  # a window to see what grows
        after = relay_camera_layers(alice)
        alice.click("#toggle-camera")
        poll(lambda: alice.evaluate("window.meetCall.media.video") is None, what="the camera off")
        alice.click("#toggle-camera")  # a new track through replaceTrack: the pause holds
        poll(lambda: alice.evaluate("Boolean(window.meetCall.media.video)"), what="the camera on")
        again = poll(lambda: followed_layers(alice), 15, "the layers still paused after camera off/on")
        assert_video_flowing(bob, [a], timeout=25)
        return {"rids": rids, "paused": paused, "before": before, "after": after, "again": again,
                "seen": alice.evaluate("window.layersSeen"), "errors": alice.errors + bob.errors}

    r = await run_scenario(scenario)
    print(f"layers messages {r['seen']}; alice sends {r['rids']}, pauses {r['paused']}")
    assert r["paused"] and "l" in r["rids"]
    grown = {rid: r["after"][rid]["frames"] - r["before"][rid]["frames"] for rid in r["after"]}
    assert all(grown[rid] == 0 for rid in r["paused"] if rid in grown), grown
    assert all(grown[rid] > 0 for rid in r["rids"]), grown
    assert r["again"] == r["rids"]
    assert r["errors"] == []


@pytest.mark.parametrize("config", ["off"], indirect=True)
async def test_mesh_camera_stays_one_layer(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice, bob = open_page(browser, base, "alice"), open_page(browser, base, "bob")
        join(alice, base, code)
        b = join(bob, base, code)
        assert_video_flowing(alice, [b])
        senders = poll(
            lambda: (s := camera_out(alice)) and s[0]["layers"] and s[0]["layers"][0]["width"] and s,
            what="the mesh camera going out",
        )
        return {"senders": senders, "errors": alice.errors + bob.errors}

    r = await run_scenario(scenario)
    (sender,) = r["senders"]
    assert sender["peer"] != "relay"  # a mesh connection
    assert [e["rid"] for e in sender["encodings"]] == [None] and sender["encodings"][0]["scale"] == 1, sender
    assert [layer["rid"] for layer in sender["layers"]] == [None], sender
    assert r["errors"] == []


# ---- a subscriber on a shaped path -------------------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Iterator[ShapedPath]:
    with shaped_path(tmp_path) as shaped:
        yield shaped


def shaped_config(tmp_path: Path, path: ShapedPath) -> Config:
    """The server and the relay on the veth's outer address: every browser reaches them there
    (the shaped one over the veth, the others over lo)."""
    return make_config(
        tmp_path,
        server={"host": path.server_address},
        auth={"mail_max_per_window": 50},
        rtc={"relay": "always", "host_addresses": [path.server_address]},
    )


def secure_args(base: str) -> list[str]:
    """Chromium's arguments with ``base`` (http://10.99.N.1:port) taken as a secure origin:
    only loopback addresses are, and getUserMedia needs one."""
    return [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={base}"]


def launch_shaped(browser: Any, path: ShapedPath, base: str) -> Any:
    """A second Chromium, inside the shaped namespace (same Playwright as ``browser``)."""
    return browser.browser_type.launch(
        executable_path=path.chromium, args=secure_args(base), timeout=TIMEOUT_MS
    )


def received(page: Any, peer: str) -> dict[str, Any]:
    """What the page receives now (RECEIVED_JS), once ``peer``'s camera is there."""
    return poll(
        lambda: (r := page.evaluate(RECEIVED_JS, peer)) and r["video"] and r, what=f"{peer}'s camera received"
    )


def receive_rate(page: Any, peer: str, seconds: float = 2.0) -> float:
    """Bits per second the page's relay connection receives (all its packets), over ``seconds``."""
    import time

    first = received(page, peer)
    time.sleep(seconds)  # a rate is over a window: two samples apart in time
    now = received(page, peer)
    return (
        8
        * (float(now["transport"]) - float(first["transport"]))
        / ((float(now["t"]) - float(first["t"])) / 1000)
    )


def selected_pair(page: Any) -> dict[str, Any]:
    """The addresses of the page's selected ICE candidate pair with the relay."""
    return page.evaluate(  # type: ignore[no-any-return]
        """async () => {
          const stats = await window.meetCall.relay.link.pc.getStats();
          let pair = null;
          stats.forEach((r) => { if (r.type === 'transport') pair = stats.get(r.selectedCandidatePairId); });
          const end = (id) => { const c = stats.get(id); return c ? c.address : null; };
          return pair ? {local: end(pair.localCandidateId), remote: end(pair.remoteCandidateId)} : null;
        }"""
    )


# Download a static file (~20 KB) through the page's own HTTP path: its rate in bit/s.
FETCH_RATE_JS = """async () => {
  const t = performance.now();
  const body = await (await fetch('/static/js/call/relay.js?' + Math.random(), {cache: 'no-store'})).arrayBuffer();
  return body.byteLength * 8 / ((performance.now() - t) / 1000);
}"""


def paused_notice(page: Any) -> bool:
    """Whether a tile shows the notice of a video the relay paused for this page's bandwidth."""
    return bool(page.locator(".tile-status:not([hidden])", has_text="Video paused").count())


class TestShapedPath:
    @pytest.fixture
    def config(self, tmp_path: Path, path: ShapedPath) -> Config:
        return shaped_config(tmp_path, path)

    async def test_a_token_bucket_on_the_veth_caps_what_the_shaped_subscriber_receives(
        self, server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, path: ShapedPath
    ) -> None:
        code = await make_users(client, outbox, "alice", "bob")
        base = server.url
        cap = 80_000  # well under what the relay sends a subscriber of one camera (≥ its low layer + audio)

        def scenario(browser: Any) -> dict[str, Any]:
            shaped_browser = launch_shaped(browser, path, base)
            try:
                alice, bob = open_page(browser, base, "alice"), open_page(shaped_browser, base, "bob")
                a = join(alice, base, code)
                join(bob, base, code)
                assert_video_flowing(bob, [a], timeout=25)

                def rate_where(check: Any, timeout: float, what: str) -> float:
                    def window() -> float:
                        rate = receive_rate(bob, a)
                        return rate if check(rate) else 0.0

                    return poll(window, timeout, what)

                rates = {"before": rate_where(lambda r: r > 1.5 * cap, 30, "bob receiving more than the cap")}
                with path.shaped(f"rate {cap // 1000}kbit burst 16kbit latency 50ms"):
                    rates["shaped"] = rate_where(lambda r: 0 < r < cap, 15, "bob receiving under the cap")
                    downloads = {"shaped": bob.evaluate(FETCH_RATE_JS)}
                    qdisc = path.stats()
                    # Not even alice's low layer fits next to her audio: the relay pauses her
                    # video for bob (tracks[].paused) and his tile says why it stands still.
                    poll(lambda: paused_notice(bob), 20, "bob's tile of alice saying her video is paused")
                # Unshaped, the path carries whatever is sent again: a download at full speed.
                downloads["after"] = bob.evaluate(FETCH_RATE_JS)
                rates["after"] = receive_rate(bob, a)
                # From ~70 kbit/s the estimate must double twice (probes that failed under the
                # cap wait up to 8 s): "by itself", not within the adaptive test's 20 s.
                poll(lambda: not paused_notice(bob), 60, "alice's video resumed for bob")
                return {
                    "downloads": downloads,
                    "rates": rates,
                    "qdisc": qdisc,
                    "address": bob.evaluate("location.host"),
                    "pair": selected_pair(bob),
                    "errors": alice.errors + bob.errors,
                }
            finally:
                shaped_browser.close()

        r = await run_scenario(scenario, secure_args(base))
        print(
            "the shaped subscriber receives (kbit/s): "
            + ", ".join(f"{k} {v / 1000:.0f}" for k, v in r["rates"].items())
        )
        print(f"the token bucket: {r['qdisc']}")
        print("downloads (kbit/s): " + ", ".join(f"{k} {v / 1000:.0f}" for k, v in r["downloads"].items()))
        assert r["qdisc"]["kind"] == "tbf" and r["qdisc"]["sent_bytes"] > 0, r["qdisc"]
        assert r["downloads"]["shaped"] < 1.2 * cap < 10 * cap < r["downloads"]["after"], r["downloads"]
        port = base.rsplit(":", 1)[1]
        assert r["address"] == f"{path.server_address}:{port}"  # the page and its socket through the veth
        assert r["pair"] == {"local": path.browser_address, "remote": path.server_address}  # and its media
        assert r["errors"] == []
